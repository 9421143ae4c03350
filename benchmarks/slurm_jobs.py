"""How many SLURM jobs the cohort workflow submits, with and without the profile's job grouping.

Dry runs (`snakemake -n --profile profiles/slurm`) of the synthetic cohort at the given sizes,
once with profiles/slurm as shipped and once with its `groups`/`group-components` removed. A
submitted job is a group job or an ungrouped non-local job (the dry run lists both). No cluster
is needed: the plugin is loaded but nothing is submitted.

    .venv/bin/python benchmarks/slurm_jobs.py            # 100 and 10833 subjects
    .venv/bin/python benchmarks/slurm_jobs.py 100 1000
    .venv/bin/python benchmarks/slurm_jobs.py --run 100 [SUBJECTS_PER_JOB]   # real runs (root)

`--run N` starts the one-node test cluster of tests/slurm (root, Debian), runs a synthetic `tiny`
cohort of N subjects through profiles/slurm with and without grouping (plus the test cluster's
overrides, tests/slurm/test_profile), and locally, and prints the SLURM jobs squeue recorded and
the wall times.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "envs")
LOCAL_RULES = {"all"}


def count_jobs(dry_run_output: str) -> tuple[int, dict[str, int]]:
    """(submitted SLURM jobs, {rule or group: jobs}) from a dry run's job listing.

    Ungrouped jobs start with `rule NAME:` at column 0; group jobs with `Group job NAME`
    (their member rules are indented and not counted again).
    """
    per: dict[str, int] = {}
    for m in re.finditer(r"^(?:rule (\w+):|\[[^\]]*\] Group job (\w+) )", dry_run_output, re.M):
        name = m.group(1) or f"group {m.group(2)}"
        if name not in LOCAL_RULES:
            per[name] = per.get(name, 0) + 1
    return sum(per.values()), per


def dry_run(work: Path, profile: Path, n: int) -> tuple[int, dict[str, int], float]:
    cfg = work / f"n{n}.yaml"
    cfg.write_text(yaml.safe_dump({"synthetic": {"n": n}}))
    t0 = time.perf_counter()
    res = subprocess.run(
        [
            str(SNAKEMAKE),
            "-n",
            "--profile",
            str(profile),
            "--configfile",
            str(cfg),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"dry run failed for n={n}:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    total, per = count_jobs(res.stdout + res.stderr)
    return total, per, seconds


def _prepare(tmp: Path) -> tuple[Path, Path, Path]:
    """A copy of the workflow, profiles/slurm as shipped, and a copy without its grouping."""
    work = tmp / "wf"
    work.mkdir(parents=True)
    for name in (*WORKFLOW_FILES, "profiles"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name)
        else:
            shutil.copy2(src, work / name)
    grouped = REPO / "profiles" / "slurm"
    ungrouped = tmp / "slurm-nogroups"
    shutil.copytree(grouped, ungrouped)
    prof = yaml.safe_load((grouped / "config.yaml").read_text())
    for key in ("groups", "group-components"):
        prof.pop(key, None)
    (ungrouped / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return work, grouped, ungrouped


def dry_runs(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="slurm-jobs-") as tmp:
        work, grouped, ungrouped = _prepare(Path(tmp))
        print("| subjects | grouping | SLURM jobs | by rule/group | dry run (s) |")
        print("| ---: | --- | ---: | --- | ---: |")
        for n in sizes:
            for label, profile in (("none", ungrouped), ("profiles/slurm", grouped)):
                total, per, seconds = dry_run(work, profile, n)
                detail = ", ".join(f"{k} {v}" for k, v in per.items())
                print(f"| {n} | {label} | {total} | {detail} | {seconds:.1f} |", flush=True)


def real_runs(n: int, subjects_per_job: int) -> None:
    """Run a synthetic `tiny` cohort on the one-node test cluster (root; tests/slurm) with and
    without grouping, and locally; print wall times and the SLURM jobs squeue recorded."""
    sys.path.insert(0, str(REPO / "tests" / "slurm"))
    from slurm_cluster import run_snakemake, running_cluster, scancel_workdir

    test_profile = REPO / "tests" / "slurm" / "test_profile"
    with tempfile.TemporaryDirectory(prefix="slurm-jobs-") as tmp_s:
        tmp = Path(tmp_s)
        cfg = tmp / "cohort.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "synthetic": {"n": n, "seed": 7, "preset": "tiny"},
                    "segmentation": {
                        "method": "ground_truth",
                        "subjects_per_job": subjects_per_job,
                        "threads": 1,
                        "mem_mb": 1000,
                        "runtime": 10,
                        "device": "cuda",
                    },
                }
            )
        )
        _, grouped, ungrouped = _prepare(tmp / "profiles-src")
        print(f"| run ({n} subjects, synthetic tiny) | SLURM jobs | by rule/group | wall (s) |")
        print("| --- | ---: | --- | ---: |")
        with running_cluster(tmp / "state") as cluster:
            for label, profile in (
                ("SLURM, no grouping", ungrouped),
                ("SLURM, profiles/slurm", grouped),
            ):
                work, _, _ = _prepare(
                    tmp / label.replace(" ", "_").replace(",", "").replace("/", "_")
                )
                args = [
                    "--profile",
                    str(profile),
                    "--profile",
                    str(test_profile),
                    "--configfile",
                    str(cfg),
                ]
                try:
                    run = run_snakemake(args, work, timeout_s=1800, log=work / "snakemake.log")
                finally:
                    scancel_workdir(cluster, work)
                if run.returncode != 0:
                    raise SystemExit(run.output[-3000:])
                jobs = cluster.jobs(work)
                per: dict[str, int] = {}
                for j in jobs:
                    key = re.sub(r"_wildcards_.*", "", j["comment"]).removeprefix("rule_")
                    per[key] = per.get(key, 0) + 1
                detail = ", ".join(f"{k} {v}" for k, v in per.items())
                print(f"| {label} | {len(jobs)} | {detail} | {run.seconds:.1f} |", flush=True)
        work, _, _ = _prepare(tmp / "local")
        cfg_local = tmp / "local.yaml"
        local_cfg = yaml.safe_load(cfg.read_text())
        local_cfg["segmentation"]["device"] = "cpu"
        cfg_local.write_text(yaml.safe_dump(local_cfg))
        run = run_snakemake(
            ["--cores", "2", "--configfile", str(cfg_local)],
            work,
            timeout_s=1800,
            log=work / "snakemake.log",
        )
        if run.returncode != 0:
            raise SystemExit(run.output[-3000:])
        print(f"| local, --cores 2 | - | - | {run.seconds:.1f} |")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        n = int(argv[1]) if len(argv) > 1 else 4
        real_runs(n, subjects_per_job=int(argv[2]) if len(argv) > 2 else 25)
    else:
        dry_runs([int(a) for a in argv] or [100, 10833])


if __name__ == "__main__":
    main(sys.argv[1:])
