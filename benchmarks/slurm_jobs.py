"""How many SLURM jobs the cohort workflow submits, with and without the profile's job grouping.

Dry runs (`snakemake -n --profile profiles/slurm`) of the synthetic cohort at the given sizes,
once with profiles/slurm as shipped and once with its `groups`/`group-components` removed. A
submitted job is a group job or an ungrouped non-local job (the dry run lists both). No cluster
is needed: the plugin is loaded but nothing is submitted.

    .venv/bin/python benchmarks/slurm_jobs.py            # 100 and 10833 subjects
    .venv/bin/python benchmarks/slurm_jobs.py 100 1000
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
            "--workflow-profile",
            "none",
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


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="slurm-jobs-") as tmp:
        work = Path(tmp) / "wf"
        work.mkdir()
        for name in WORKFLOW_FILES:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, work / name)
            else:
                shutil.copy2(src, work / name)
        grouped = REPO / "profiles" / "slurm"
        ungrouped = Path(tmp) / "slurm-nogroups"
        shutil.copytree(grouped, ungrouped)
        prof = yaml.safe_load((grouped / "config.yaml").read_text())
        for key in ("groups", "group-components"):
            prof.pop(key, None)
        (ungrouped / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))

        print("| subjects | grouping | SLURM jobs | by rule/group | dry run (s) |")
        print("| ---: | --- | ---: | --- | ---: |")
        for n in sizes:
            for label, profile in (("none", ungrouped), ("profiles/slurm", grouped)):
                total, per, seconds = dry_run(work, profile, n)
                detail = ", ".join(f"{k} {v}" for k, v in per.items())
                print(f"| {n} | {label} | {total} | {detail} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 10833])
