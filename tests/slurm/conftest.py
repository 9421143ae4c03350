"""Fixtures for the SLURM tests: one real one-node cluster per session, hard-timeout snakemake runs.

The cluster needs root and Debian packages (installed on demand with apt-get, as in CI). Without
them every test here is skipped with the reason; with them a failure to start is an error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cluster import ClusterUnavailable, SlurmCluster, running_cluster, unavailable_reason  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the whole directory, with the reason, where SLURM cannot be provided."""
    reason = unavailable_reason()
    plugin_missing = _plugin_missing()
    if reason is None and plugin_missing is None:
        return
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
    try:
        with running_cluster(state) as cluster:
            yield cluster
    except ClusterUnavailable as err:
        if "not started by this fixture" in str(err):
            pytest.skip(f"SLURM test: {err}")
        raise


@dataclass
class Run:
    """Outcome of one snakemake call."""

    returncode: int
    output: str
    seconds: float


def run_snakemake(args: list[str], cwd: Path, timeout_s: float, log: Path) -> Run:
    """Run snakemake in its own process group; on timeout kill the whole group (jobs included).

    The main snakemake spawns sbatch/squeue children; killing only the parent would leave them,
    so the group is killed. SLURM jobs it submitted are cancelled by the caller via scancel.
    """
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PATH=f"{SNAKEMAKE.parent}:{os.environ.get('PATH', '')}")
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(SNAKEMAKE), *args], cwd=cwd, stdout=fh,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = -9
    out = log.read_text(errors="replace")
    if rc == -9:
        out += f"\n[test] snakemake killed after {timeout_s}s hard timeout\n"
    return Run(rc, out, time.monotonic() - t0)


def scancel_workdir(cluster: SlurmCluster, workdir: Path) -> None:
    """Cancel still-queued/running jobs of `workdir` (after a timeout) so they do not linger."""
    ids = [j["id"] for j in cluster.jobs(workdir) if j["state"] in ("PENDING", "RUNNING")]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
