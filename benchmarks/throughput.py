"""Workflow throughput A/B: a baseline commit against the working tree, on one fresh synthetic
demo cohort, in one run on the same machine.

What it does:

1. checks the baseline commit out into a ``git worktree`` under ``/tmp`` (kept for reuse;
   the project's ``.venv`` is shared: jobs find each side's package through ``PYTHONPATH``);
2. generates a fresh synthetic cohort of ``--n`` subjects once (``spinecensus synth`` of the
   baseline, ``--seed``), which both sides then read as a sample sheet, so synthesis is not
   timed and both analyse the same images;
3. runs the whole workflow of each side on it (its own ``config.yaml``, only ``samples`` and
   ``results`` set) ``--rounds`` times, interleaved A B, B A, ... so that a load change on a
   shared machine hits both sides alike;
4. prints per side: subjects per minute (best wall time of its rounds), compute share =
   (inference + split/label/measure compute seconds) / (segment + analyse job wall seconds,
   Snakemake ``benchmark:`` files), start-up share, and peak RSS per job (MB); then the ratio
   of subjects per minute, how many transitional statuses are identical, and the largest
   relative difference of a structure volume between the sides (target: within 0.5 %).

Usage::

    .venv/bin/python benchmarks/throughput.py [--n 8] [--rounds 1] [--cores 2]
        [--baseline 13b97d2] [--workdir DIR]
    .venv/bin/python benchmarks/throughput.py --results results [--wall 612]  # one run

Timings of a shared machine are only comparable within one run; every number is on
synthetic data.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _bench_rows(folder: Path) -> list[dict[str, str]]:
    """The single row of every Snakemake benchmark file in ``folder``."""
    rows = []
    for f in sorted(folder.glob("*.tsv")):
        with open(f) as fh:
            got = list(csv.DictReader(fh, delimiter="\t"))
        if got:
            rows.append(got[0])
    return rows


def _col(rows: list[dict[str, str]], column: str) -> list[float]:
    return [float(r[column]) for r in rows if r.get(column) not in (None, "", "NA")]


def _batch_timings(results: Path) -> dict[str, float]:
    """Inference, model load and segment start-up seconds from every ``batch.json``."""
    out = {"inference_s": 0.0, "model_load_s": 0.0, "seg_startup_s": 0.0}
    for f in sorted((results / "segmentation").glob("*/batch.json")):
        info = json.loads(f.read_text())
        out["model_load_s"] += info.get("model_load_s") or 0.0
        out["seg_startup_s"] += info.get("process_age_at_start_s") or 0.0
        out["inference_s"] += sum(r.get("inference_s", 0.0) for r in info["subjects"])
    return out


def analyse_run(results: Path, wall_s: float | None) -> dict[str, float]:
    """Where a run's job time went (module docstring); ``wall_s`` gives subjects/min."""
    bench = results / "benchmarks"
    seg_rows, ana_rows = _bench_rows(bench / "segment"), _bench_rows(bench / "analyse")
    t = _batch_timings(results)
    split = ana_startup = 0.0
    n = n_ok = 0
    for f in sorted((results / "subjects").glob("*/summary.json")):
        s = json.loads(f.read_text())
        n += 1
        n_ok += s.get("status") == "ok"
        split += s.get("compute_s") or 0.0
        # per-subject jobs: the process age; batch jobs: each subject's share of it
        ana_startup += s.get("process_age_at_start_s") or 0.0
    job_s = sum(_col(seg_rows, "s")) + sum(_col(ana_rows, "s"))
    startup = t["seg_startup_s"] + t["model_load_s"] + ana_startup
    res = {
        "subjects": n,
        "subjects_ok": n_ok,
        "segment_jobs": len(seg_rows),
        "analyse_jobs": len(ana_rows),
        "segment_job_s": sum(_col(seg_rows, "s")),
        "analyse_job_s": sum(_col(ana_rows, "s")),
        "inference_s": t["inference_s"],
        "split_label_measure_s": split,
        "startup_s": startup,
        "compute_share": (t["inference_s"] + split) / job_s if job_s else float("nan"),
        "startup_share": startup / job_s if job_s else float("nan"),
        "peak_rss_segment_mb": max(_col(seg_rows, "max_rss"), default=float("nan")),
        "peak_rss_analyse_mb": max(_col(ana_rows, "max_rss"), default=float("nan")),
    }
    if wall_s:
        res["wall_s"] = wall_s
        res["subjects_per_min"] = 60.0 * n / wall_s
    return res


def baseline_worktree(commit: str) -> Path:
    """A detached ``git worktree`` of ``commit`` under /tmp (created once, then reused)."""
    sha = subprocess.run(["git", "rev-parse", commit], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    path = Path(tempfile.gettempdir()) / f"spinecensus_base_{sha[:10]}"
    if not (path / "Snakefile").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=REPO,
                       check=True, capture_output=True)  # fmt: skip
    return path


def _env(repo: Path) -> dict[str, str]:
    """Job environment of one side: its package first on PYTHONPATH, one OpenMP thread
    by default (each job sets torch's threads itself)."""
    return dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


def make_cohort(repo: Path, out: Path, n: int, seed: int) -> Path:
    """Synthetic demo cohort of ``n`` subjects by ``repo``'s generator; its samples.tsv."""
    if not (out / "samples.tsv").exists():
        cmd = [sys.executable, "-m", "spinecensus.census", "synth", "--out", str(out),
               "--n", str(n), "--seed", str(seed), "--workers", "2"]  # fmt: skip
        subprocess.run(cmd, cwd=repo, env=_env(repo), check=True, capture_output=True)
    return out / "samples.tsv"


def run_side(repo: Path, sheet: Path, work: Path, cores: int) -> tuple[Path, float, float]:
    """The whole workflow of ``repo`` on ``sheet`` in ``work``: (results folder, wall s, CPU
    s of every process of the run: Snakemake and its jobs, user + system)."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    cfg.update(samples=str(sheet), results="results")
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
           "--directory", str(work), "--configfile", str(work / "config.yaml"),
           "--cores", str(cores), "--quiet", "rules"]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=_env(repo), capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{repo}: workflow failed\n{proc.stderr[-3000:]}")
    # waited-for descendants: Snakemake and every job it ran
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return work / "results", wall, cpu


def compare_tables(a: Path, b: Path) -> dict[str, float]:
    """Statuses identical (count) and the largest relative volume difference of a structure
    present on both sides; structures present on one side only are counted."""
    import pandas as pd

    sa = pd.read_parquet(a / "tables" / "subjects.parquet").set_index("subject")
    sb = pd.read_parquet(b / "tables" / "subjects.parquet").set_index("subject")
    both = sa.index.intersection(sb.index)
    same = int((sa.loc[both, "transitional_status"] == sb.loc[both, "transitional_status"]).sum())
    va = pd.read_parquet(a / "tables" / "structures.parquet")[["subject", "label", "volume_mm3"]]
    vb = pd.read_parquet(b / "tables" / "structures.parquet")[["subject", "label", "volume_mm3"]]
    m = va.merge(vb, on=["subject", "label"], how="outer", suffixes=("_a", "_b"), indicator=True)
    paired = m[m["_merge"] == "both"]
    rel = (paired["volume_mm3_b"] - paired["volume_mm3_a"]).abs() / paired["volume_mm3_a"]
    return {
        "subjects": len(both),
        "statuses_identical": same,
        "structures_paired": len(paired),
        "structures_one_side_only": int((m["_merge"] != "both").sum()),
        "max_rel_volume_diff": float(rel.max()) if len(rel) else 0.0,
    }


def _print_side(name: str, r: dict[str, float], cores: int) -> None:
    print(f"{name}: {r['subjects_per_min']:.2f} subjects/min on {cores} cores "
          f"(wall {r['wall_s']:.1f} s, {r['subjects']} subjects, {r['subjects_ok']} ok); "
          f"compute share {100 * r['compute_share']:.1f} %, start-up "
          f"{100 * r['startup_share']:.1f} % of segment+analyse job time; jobs: "
          f"{r['segment_jobs']} segment, {r['analyse_jobs']} analyse; peak RSS per job "
          f"segment {r['peak_rss_segment_mb']:.0f} MB, analyse {r['peak_rss_analyse_mb']:.0f} MB; "
          f"CPU s of the whole run {r['cpu_run_s']:.1f}")  # fmt: skip


def ab(args: argparse.Namespace) -> int:
    base = baseline_worktree(args.baseline)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="throughput_ab_"))
    sheet = make_cohort(base, work / "cohort", args.n, args.seed)
    sides = {"baseline": base, "new": REPO}
    runs: dict[str, list[tuple[Path, float, float]]] = {k: [] for k in sides}
    for k in range(args.rounds):
        order = list(sides) if k % 2 == 0 else list(sides)[::-1]
        for name in order:
            run = run_side(sides[name], sheet, work / name / f"round{k}", args.cores)
            runs[name].append(run)
            print(f"round {k}: {name} {run[1]:.1f} s wall, {run[2]:.1f} s CPU", flush=True)
    best = {name: min(r, key=lambda rw: rw[1]) for name, r in runs.items()}
    stats = {name: analyse_run(res, wall) for name, (res, wall, _) in best.items()}
    for name, (_, _, cpu) in best.items():
        stats[name]["cpu_run_s"] = cpu
    print(f"\nA/B on {args.n} synthetic subjects (seed {args.seed}), baseline "
          f"{args.baseline} ({base}) vs working tree ({REPO}), {args.rounds} round(s), "
          "best wall of each:")  # fmt: skip
    for name in sides:
        _print_side(name, stats[name], args.cores)
    ratio = stats["new"]["subjects_per_min"] / stats["baseline"]["subjects_per_min"]
    cpu_ratio = stats["baseline"]["cpu_run_s"] / stats["new"]["cpu_run_s"]
    cmp = compare_tables(best["baseline"][0], best["new"][0])
    print(
        f"ratio new / baseline: {ratio:.2f}x subjects per minute (wall); {cpu_ratio:.2f}x "
        "subjects per CPU second of the whole run (load-independent on a shared machine)"
    )
    print(f"statuses identical: {cmp['statuses_identical']} of {cmp['subjects']}; structures "
          f"paired {cmp['structures_paired']}, on one side only {cmp['structures_one_side_only']}; "
          f"largest volume difference {100 * cmp['max_rel_volume_diff']:.3f} % "
          "(target: within 0.5 %)")  # fmt: skip
    print(f"work folder: {work}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8, help="subjects of the fresh cohort")
    ap.add_argument("--seed", type=int, default=2023)
    ap.add_argument("--rounds", type=int, default=1, help="runs per side, interleaved")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--baseline", default="13b97d2", help="commit to compare against")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--results", type=Path, default=None, help="analyse one existing run")
    ap.add_argument("--wall", type=float, default=None, help="wall seconds of that run")
    args = ap.parse_args()
    if args.results is None:
        return ab(args)
    r = analyse_run(args.results, args.wall)
    for k, v in r.items():
        print(f"  {k:24s} {v:.3f}" if isinstance(v, float) else f"  {k:24s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
