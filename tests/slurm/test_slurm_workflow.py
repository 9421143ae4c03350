"""The cohort workflow on a real one-node SLURM cluster with the README's cluster command.

Synthetic data: a tiny generated cohort (preset `tiny`, ground-truth segmentation path). The
cluster (see slurm_cluster.py) has partitions `cpu` and `gpu` with 2 fake GPUs and a submit
policy that rejects GPU requests outside `gpu` and GPU-less jobs inside it, so a run that
succeeds proves the profile routes every job correctly. Each test works on a copy of the
workflow as a user would: the cohort's settings go into the copy's config.yaml, the test
cluster's site settings (`test_profile/config.yaml`: 2-core node, fast status polling) into
the copy's profiles/slurm/config.yaml, the README's set-up step links that profile as the
user's `slurm` (a private XDG_CONFIG_HOME), and the run is the README's command verbatim.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml
from slurm_cluster import REPO, SNAKEMAKE, run_snakemake, scancel_workdir

pytestmark = pytest.mark.slurm

SITE_SETTINGS = Path(__file__).parent / "test_profile" / "config.yaml"
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs", "profiles")
# The README's cluster command (docs/cluster.md), run verbatim after its set-up step.
README_CLUSTER_COMMAND = "snakemake --profile slurm"
# A 4-subject cohort segmented in 2 batches: 2 GPU jobs, 4 analyses in one group job.
COHORT_CONFIG = {
    "synthetic": {"n": 4, "seed": 7, "preset": "tiny"},
    "segmentation": {
        "method": "ground_truth",
        "subjects_per_job": 2,
        "threads": 1,
        "mem_mb": 1000,
        "runtime": 10,
    },
}
# Run-specific columns that legitimately differ between two runs of the same cohort.
VOLATILE = re.compile(r"(time|date|created|host|duration|seconds|path|log)", re.IGNORECASE)


def _merge_yaml(path: Path, overrides: dict) -> None:
    """Edit a YAML file as a user would: nested keys of ``overrides`` replace its values."""
    data = yaml.safe_load(path.read_text()) or {}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _copy_workflow(dst: Path, config: dict | None = None) -> Path:
    """A copy of the workflow with the cohort ``config`` and the test cluster's site settings."""
    dst.mkdir(parents=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dst / name)
    if config and (dst / "config.yaml").exists():
        _merge_yaml(dst / "config.yaml", config)
    _merge_yaml(
        dst / "profiles" / "slurm" / "config.yaml", yaml.safe_load(SITE_SETTINGS.read_text())
    )
    return dst


def _link_profile(work: Path, xdg: Path) -> dict[str, str]:
    """The README's set-up step (`make slurm-profile` = `spinecensus slurm-profile` in the
    repository root), into a private XDG_CONFIG_HOME; returns the environment to run with."""
    env = {"XDG_CONFIG_HOME": str(xdg)}
    res = subprocess.run(
        [str(SNAKEMAKE.parent / "spinecensus"), "slurm-profile"],
        cwd=work,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (xdg / "snakemake" / "slurm").resolve() == (work / "profiles" / "slurm").resolve()
    return env


def test_readme_states_the_cluster_command():
    readme = (REPO / "README.md").read_text()
    assert "make slurm-profile" in readme and README_CLUSTER_COMMAND in readme


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
    local = _copy_workflow(tmp_path / "local", COHORT_CONFIG)
    # device cuda: the segment rule requests gpu=1
    cuda = {**COHORT_CONFIG, "segmentation": {**COHORT_CONFIG["segmentation"], "device": "cuda"}}
    work = _copy_workflow(tmp_path / "slurm", cuda)
    env = _link_profile(work, tmp_path / "xdg")
    # The local reference run goes alongside the SLURM run: the latter mostly waits on
    # status polls, so together they take little more than the SLURM run alone.
    with ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(
            run_snakemake, ["--cores", "1"], local, timeout_s=200, log=tmp_path / "local.log"
        )
        try:
            run = run_snakemake(
                README_CLUSTER_COMMAND.split()[1:],
                work,
                timeout_s=240,
                log=tmp_path / "slurm.log",
                env=env,
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
    shutil.copytree(REPO / "profiles" / "slurm", tmp_path / "profiles" / "slurm")
    _merge_yaml(
        tmp_path / "profiles" / "slurm" / "config.yaml", yaml.safe_load(SITE_SETTINGS.read_text())
    )
    env = _link_profile(tmp_path, tmp_path / "xdg")
    try:
        run = run_snakemake(
            README_CLUSTER_COMMAND.split()[1:],
            tmp_path,
            timeout_s=150,
            log=tmp_path / "sm.log",
            env=env,
        )
    finally:
        scancel_workdir(slurm_cluster, tmp_path)
    assert run.returncode == 0, run.output[-4000:]
    assert "Error in rule flaky" in run.output  # attempt 1 is reported
    jobs = sorted(slurm_cluster.jobs(tmp_path), key=lambda j: int(j["id"]))
    # default-resources mem_mb: 2000 * attempt
    assert [(j["state"], j["mem"]) for j in jobs] == [("FAILED", "2000M"), ("COMPLETED", "4000M")]
    assert (tmp_path / "flaky.txt").read_text().startswith(f"job={jobs[1]['id']} ")
