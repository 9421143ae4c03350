"""The cohort workflow on a real one-node SLURM cluster through `--profile profiles/slurm`.

Synthetic data: a tiny generated cohort (preset `tiny`, ground-truth segmentation path). The
cluster (see slurm_cluster.py) has partitions `cpu` and `gpu` with 2 fake GPUs and a submit
policy that rejects GPU requests outside `gpu` and GPU-less jobs inside it, so a run that
succeeds proves the profile routes every job correctly. The only overrides of the shipped
profile are the cluster-specific ones in `test_profile/` (2-core node, fast status polling).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import REPO, run_snakemake, scancel_workdir

pytestmark = pytest.mark.slurm

TEST_PROFILE = Path(__file__).parent / "test_profile"
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs", "profiles")
# A 4-subject cohort segmented in 2 batches: 2 GPU jobs, 4 analyses in one group job.
COHORT_CONFIG = """\
synthetic:
  n: 4
  seed: 7
  preset: tiny
segmentation:
  method: ground_truth
  subjects_per_job: 2
  threads: 1
  mem_mb: 1000
  runtime: 10
"""
# Run-specific columns that legitimately differ between two runs of the same cohort.
VOLATILE = re.compile(r"(time|date|created|host|duration|seconds|path|log)", re.IGNORECASE)


def _copy_workflow(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dst / name)
    return dst


def _slurm_args(*extra: str) -> list[str]:
    # --workflow-profile none: otherwise snakemake also loads profiles/default (the local
    # profile) as "workflow profile", whose values override those of --profile.
    return [
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--profile",
        str(TEST_PROFILE),
        "--workflow-profile",
        "none",
        *extra,
    ]


def _tables(results: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for f in sorted((results / "tables").glob("*.parquet")):
        df = pd.read_parquet(f)
        df = df[[c for c in df.columns if not VOLATILE.search(c)]]
        key = [c for c in ("subject", "label", "status", "stratum") if c in df.columns]
        out[f.name] = df.sort_values(key).reset_index(drop=True) if key else df
    return out


def test_cluster_rejects_misrouted_gpu_job(slurm_cluster, tmp_path):
    """The fixture's submit policy is live: a GPU request in partition cpu fails at sbatch."""
    res = subprocess.run(
        ["sbatch", "-p", "cpu", "--gpus=1", "--wrap", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert res.returncode != 0 and "partition is 'cpu'" in res.stderr
    res = subprocess.run(
        ["sbatch", "-p", "gpu", "--wrap", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert res.returncode != 0 and "requires a GPU" in res.stderr


def test_workflow_on_slurm_matches_local(slurm_cluster, tmp_path):
    """Synthetic cohort: same tables via SLURM as locally; segmentation ran in partition gpu."""
    cfg = tmp_path / "cohort.yaml"
    cfg.write_text(COHORT_CONFIG)
    local = _copy_workflow(tmp_path / "local")
    cuda = tmp_path / "cuda.yaml"  # device cuda: the segment rule requests gpu=1
    cuda.write_text("segmentation:\n  device: cuda\n")
    work = _copy_workflow(tmp_path / "slurm")
    # The local reference run goes alongside the SLURM run: the latter mostly waits on
    # status polls, so together they take little more than the SLURM run alone.
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(
            run_snakemake,
            ["--profile", "profiles/default", "--cores", "1", "--configfile", str(cfg)],
            local,
            timeout_s=200,
            log=tmp_path / "local.log",
        )
        try:
            run = run_snakemake(
                _slurm_args("--configfile", str(cfg), str(cuda)),
                work,
                timeout_s=240,
                log=tmp_path / "slurm.log",
            )
        finally:
            scancel_workdir(slurm_cluster, work)
        local_result = local_run.result()
    assert local_result.returncode == 0, local_result.output[-4000:]
    assert run.returncode == 0, run.output[-4000:]
    local_seconds = local_result.seconds

    # Same result tables (run-specific columns aside).
    got, want = _tables(work / "results"), _tables(local / "results")
    assert set(got) >= {
        "structures.parquet",
        "subjects.parquet",
        "prevalence.parquet",
        "failures.parquet",
    }
    assert set(got) == set(want)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name], check_dtype=False, obj=name)

    # What SLURM ran (squeue --states=all; no accounting DB).
    jobs = slurm_cluster.jobs(work)
    assert jobs and all(j["state"] == "COMPLETED" for j in jobs), jobs
    seg = [j for j in jobs if j["comment"].startswith("rule_segment")]
    assert len(seg) == 2, jobs  # 2 batches of 2 subjects
    for j in seg:
        assert j["partition"] == "gpu", j
        assert "TresPerJob=gres:gpu:1" in slurm_cluster.show_job(j["id"])
    others = [j for j in jobs if j not in seg]
    assert all(j["partition"] == "cpu" for j in others), others
    for j in others:
        assert "gpu" not in slurm_cluster.show_job(j["id"]).split("TresPerJob=")[-1][:20]
    # The 4 per-subject analyses went to ONE group job, not 4 jobs; tables + figures to one.
    assert len([j for j in jobs if "analyse" in j["comment"]]) == 1, jobs
    assert len([j for j in jobs if "aggregate" in j["comment"]]) == 1, jobs
    assert len(jobs) == 5, jobs  # synthesize, 2 x segment, analyses, tables
    print(
        f"\nlocal run: {local_seconds:.1f} s; SLURM run: {run.seconds:.1f} s, "
        f"{len(jobs)} SLURM jobs: " + ", ".join(f"{j['comment']}@{j['partition']}" for j in jobs)
    )


FLAKY = """\
# fails on its first attempt, succeeds on the second (marker file)
rule flaky:
    output: "flaky.txt"
    shell:
        '''
        if [ ! -e attempt1.marker ]; then
            touch attempt1.marker; echo "failing on purpose" >&2; exit 3
        fi
        echo "job=${{SLURM_JOB_ID:-}} partition=${{SLURM_JOB_PARTITION:-}}" > {output}
        '''
"""


def test_failed_job_is_resubmitted_with_more_memory(slurm_cluster, tmp_path):
    """The profile's `retries` gives a NEW sbatch with attempt-2 resources (not an in-job retry)."""
    (tmp_path / "Snakefile").write_text(FLAKY)
    try:
        run = run_snakemake(_slurm_args(), tmp_path, timeout_s=150, log=tmp_path / "sm.log")
    finally:
        scancel_workdir(slurm_cluster, tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    assert "Error in rule flaky" in run.output  # attempt 1 is reported
    jobs = sorted(slurm_cluster.jobs(tmp_path), key=lambda j: int(j["id"]))
    # default-resources mem_mb: 2000 * attempt
    assert [(j["state"], j["mem"]) for j in jobs] == [("FAILED", "2000M"), ("COMPLETED", "4000M")]
    assert (tmp_path / "flaky.txt").read_text().startswith(f"job={jobs[1]['id']} ")
