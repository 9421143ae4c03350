"""Shared pytest fixtures.

``synthetic_tiny``: a few small synthetic whole-spine subjects of each anomaly (coarse
``SyntheticConfig.tiny()`` grid, generated once per session), keyed by anomaly.
"""

from __future__ import annotations

import pytest

from spinecensus.synthetic import (
    ANOMALIES,
    SyntheticConfig,
    SyntheticSubject,
    generate_subject,
)

#: seeds of the shared synthetic subjects (per anomaly)
TINY_SEEDS = (11, 12)


@pytest.fixture(scope="session")
def synthetic_tiny() -> dict[str, list[SyntheticSubject]]:
    """Synthetic subjects {anomaly: [subject, ...]} (2 per anomaly, tiny preset).

    Treat them as read-only: they are shared by every test in the session.
    """
    cfg = SyntheticConfig.tiny()
    return {
        anomaly: [
            generate_subject(seed, anomaly, cfg, subject=f"T{anomaly[0].upper()}{seed}")
            for seed in TINY_SEEDS
        ]
        for anomaly in ANOMALIES
    }


@pytest.fixture(scope="session")
def synthetic_subjects(synthetic_tiny) -> list[SyntheticSubject]:
    """The ``synthetic_tiny`` subjects as one flat list (normal, lumbarization, sacralization)."""
    return [s for subs in synthetic_tiny.values() for s in subs]
