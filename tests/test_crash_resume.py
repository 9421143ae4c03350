"""Crash safety: SIGKILL the workflow midway, resume, get the same tables (end to end,
synthetic data).

The workflow runs on a sheet of tiny synthetic subjects (``ground_truth`` masks) with one
core, so jobs run one at a time.  Once a few subjects are analysed, the whole process group
(Snakemake and its running job) is killed with SIGKILL, the stale lock is removed
(``--unlock``, what a user does after a crash) and the run is resumed with
``--rerun-incomplete``.  Checks:

* the final tables equal those of an uninterrupted run of the same cohort (data compared
  without timing columns; key/value metadata compared without the creation time);
* no subject finished before the kill is computed again: its ``summary.json`` (which
  holds its own timing, so a recomputation changes it) keeps its bytes and mtime, the
  benchmark files of the analyse jobs (one per batch) that were not in flight keep theirs,
  and no completed segmentation batch is redone.  Only subjects of the job in flight (an
  analyse job covers a batch) may be recomputed;
* nothing half-written survives under a final output name: every existing per-subject
  output parses after the kill.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from spinecensus.census.batches import batch_of, make_batches

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from test_failures_workflow import (  # noqa: E402
    REPO,
    good_synthetic_rows,
    snakemake,
    stable,
    write_config,
    write_sheet,
)

pytestmark = pytest.mark.e2e

N_SUBJECTS = 8
KILL_AFTER = 3  # analysed subjects before the kill


def _incomplete_outputs(workdir: Path) -> set[str]:
    """Output paths Snakemake marked incomplete (jobs in flight at the kill).

    Markers are ``.snakemake/incomplete/<urlsafe-base64 of the path>``, split into
    ``@``-prefixed chunks when longer than a file name may be.
    """
    base = workdir / ".snakemake" / "incomplete"
    out: set[str] = set()
    if not base.exists():
        return out
    for p in base.rglob("*"):
        if p.is_file() and p.name != "migration_underway":
            parts = [s.lstrip("@") for s in p.relative_to(base).parts]
            try:
                out.add(base64.urlsafe_b64decode("".join(parts)).decode())
            except (ValueError, UnicodeDecodeError):
                continue
    return out


def _subject_of(path: str) -> str | None:
    parts = Path(path).parts
    return parts[parts.index("subjects") + 1] if "subjects" in parts else None


def _stamp(p: Path) -> tuple[int, bytes]:
    return (p.stat().st_mtime_ns, p.read_bytes())


def _meta(path: Path) -> dict[str, str]:
    meta = pq.read_schema(path).metadata or {}
    return {
        k.decode(): v.decode()
        for k, v in meta.items()
        if k.startswith(b"spinecensus.") and b"created" not in k
    }


def test_sigkill_midway_then_resume(tmp_path: Path) -> None:
    """SIGKILL to the process group midway + --rerun-incomplete: tables identical to an
    uninterrupted run, finished subjects not recomputed (synthetic)."""
    data = tmp_path / "data"
    rows = good_synthetic_rows(data, n=N_SUBJECTS, seed=11)
    sheet = write_sheet(tmp_path / "samples.tsv", rows)
    ref, work = tmp_path / "ref", tmp_path / "work"
    write_config(ref, sheet, subjects_per_job=2)
    write_config(work, sheet, subjects_per_job=2)
    snakemake(ref)

    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--cores", "1"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    with open(tmp_path / "run1.log", "w") as log:
        # own session = own process group: the kill reaches Snakemake and its job
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        subjects_dir = work / "results" / "subjects"
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(subjects_dir.glob("*/summary.json"))) >= KILL_AFTER:
                break
            time.sleep(0.05)
        assert proc.poll() is None, (
            "workflow ended before the kill: " + (tmp_path / "run1.log").read_text()[-2000:]
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    res = work / "results"
    assert not (res / "tables" / "subjects.parquet").exists(), "killed too late (not midway)"

    in_flight = _incomplete_outputs(work)
    in_flight_subjects = {s for s in map(_subject_of, in_flight) if s}
    # one core: at most one job in flight; an analyse job covers one batch of 2 subjects
    assert len(in_flight_subjects) <= 2
    batch = batch_of(make_batches([r["subject"] for r in rows], 2))
    in_flight_batches = {batch[s] for s in in_flight_subjects}
    done = {}
    for summary in sorted(subjects_dir.glob("*/summary.json")):
        json.loads(summary.read_text())  # complete JSON, never half-written
        done[summary.parent.name] = _stamp(summary)
    for parquet in subjects_dir.glob("*/structures.parquet"):
        pq.read_table(parquet)  # readable
    assert KILL_AFTER <= len(done) < N_SUBJECTS
    benches = {p: _stamp(p) for p in (res / "benchmarks" / "analyse").glob("*.tsv")}
    batches = {
        p.parent.name: _stamp(p)
        for p in (res / "segmentation").glob("b*/batch.json")
        if not any(f.rstrip("/").endswith(f"segmentation/{p.parent.name}") for f in in_flight)
    }

    snakemake(work, "--unlock", timeout=120)
    snakemake(work, "--rerun-incomplete")

    recomputed = {s for s, st in done.items() if _stamp(subjects_dir / s / "summary.json") != st}
    print(f"done before kill: {sorted(done)}; in flight: {sorted(in_flight)}; "
          f"recomputed: {sorted(recomputed)}; batches kept: {sorted(batches)}")  # fmt: skip
    assert recomputed <= in_flight_subjects, (recomputed, in_flight_subjects)
    for p, st in benches.items():  # results/benchmarks/analyse/<batch>.tsv
        if p.stem not in in_flight_batches:
            assert _stamp(p) == st, p
    for name, st in batches.items():
        assert _stamp(res / "segmentation" / name / "batch.json") == st, name

    for table in ("subjects", "structures", "prevalence", "failures"):
        got = res / "tables" / f"{table}.parquet"
        want = ref / "results" / "tables" / f"{table}.parquet"
        pd.testing.assert_frame_equal(
            stable(pd.read_parquet(got)), stable(pd.read_parquet(want)), check_dtype=False
        )
        assert _meta(got) == _meta(want), table
    assert len(pd.read_parquet(res / "tables" / "subjects.parquet")) == N_SUBJECTS
