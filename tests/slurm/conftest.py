"""Fixtures for the SLURM tests: one real one-node cluster per session, hard-timeout snakemake runs.

The cluster needs root and Debian packages (installed on demand with apt-get, as in CI). Without
them (or with SPINECENSUS_SKIP_SLURM=1, for root workstations that should not get SLURM
installed and /etc/slurm written) every test here is skipped with the reason -- except in CI
(``CI=true``), where a cluster that cannot be provided fails the tests instead: CI must run
them. A failure of the daemons to start is an error everywhere.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import (  # noqa: E402
    SNAKEMAKE,
    ClusterUnavailable,
    SlurmCluster,
    running_cluster,
    unavailable_reason,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the whole directory, with the reason, where SLURM cannot be provided (outside CI;
    in CI the fixture then fails with the reason)."""
    reason = unavailable_reason()
    plugin_missing = _plugin_missing()
    if reason is None and plugin_missing is None:
        return
    if in_ci() and reason != "SPINECENSUS_SKIP_SLURM is set":
        return  # the fixture raises with the reason
    for item in items:
        if item.get_closest_marker("slurm") is not None:
            item.add_marker(pytest.mark.skip(reason=f"SLURM test: {reason or plugin_missing}"))


def _plugin_missing() -> str | None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm not installed (pip install -e '.[workflow]')"
    if not SNAKEMAKE.exists():
        return f"no snakemake next to {sys.executable}"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running one-node cluster (partitions cpu*, gpu; 2 fake GPUs), stopped by pid at the end."""
    state = tmp_path_factory.mktemp("slurm-state")
    problem = _plugin_missing()
    if problem is not None:
        raise ClusterUnavailable(problem)
    reason = unavailable_reason()
    if reason is not None:
        raise ClusterUnavailable(reason)  # outside CI, collection skipped these tests already
    try:
        with running_cluster(state) as cluster:
            yield cluster
    except ClusterUnavailable as err:
        if err.skip and not in_ci():  # a property of this machine, not a fault of the fixture
            pytest.skip(f"SLURM test: {err}")
        raise
