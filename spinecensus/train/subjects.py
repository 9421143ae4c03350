"""The synthetic subjects of a training run: disjoint seed ranges, the anomaly drawn per
subject, and generating a subject from its seed (``spinecensus.synthetic``).

Subject seeds: expert subset ``seed*1_000_000 + i``, cohort ``seed*1_000_000 + 100_000 + i``,
evaluation ``seed*1_000_000 + 900_000 + i`` - disjoint, so nothing is evaluated on training
subjects.  A subject is never stored: every step regenerates it from its seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spinecensus.train.config import TrainConfig

EXPERT_OFFSET = 0
COHORT_OFFSET = 100_000
EVAL_OFFSET = 900_000


def _synthetic_config(cfg: TrainConfig) -> Any:
    from spinecensus import synthetic

    return synthetic.SyntheticConfig.preset(cfg.synthetic_preset)


def subject_seed(cfg: TrainConfig, offset: int, i: int) -> int:
    return int(cfg.seed) * 1_000_000 + offset + int(i)


def anomaly_for(cfg: TrainConfig, seed: int) -> str:
    """Anomaly drawn at the configured prevalences (seeded per subject)."""
    u = np.random.default_rng([seed, 7]).random()
    if u < cfg.lumbarization:
        return "lumbarization"
    if u < cfg.lumbarization + cfg.sacralization:
        return "sacralization"
    return "normal"


def make_subject(cfg: TrainConfig, seed: int, anomaly: str | None = None) -> Any:
    from spinecensus import synthetic

    return synthetic.generate_subject(
        seed, anomaly=anomaly or anomaly_for(cfg, seed), config=_synthetic_config(cfg)
    )
