"""Demo throughput: subjects per minute and where the wall time goes (synthetic cohort).

Runs the workflow on the synthetic demo cohort (or reads an existing ``results`` folder) and
splits the jobs' wall time (Snakemake ``benchmark:`` files) of the per-cohort work into

* compute — model inference (``segment``: per-subject ``inference_s``) plus splitting,
  labeling and measuring (``analyse``: ``compute_s``), timed inside the package functions;
* start-up — interpreter start and imports before the function ran (process age at entry)
  plus the model load (once per batch);
* the rest — reading/writing NIfTI, QC PNGs, Parquet, JSON.

Target: compute >= 60 % of the segment + analyse job time (with ``method: model``).

Usage::

    python benchmarks/throughput.py --run [--n 200] [--method model] [--cores 2]
    python benchmarks/throughput.py --results results --wall 612   # an existing run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _bench_seconds(folder: Path, column: str = "s") -> list[float]:
    """One value per job from Snakemake benchmark files (``s`` wall, ``cpu_time`` CPU)."""
    out = []
    for f in sorted(folder.glob("*.tsv")):
        with open(f) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows and rows[0].get(column) not in (None, "", "NA"):
            out.append(float(rows[0][column]))
    return out


def analyse_run(results: Path, wall_s: float | None) -> dict[str, float]:
    seg_jobs = _bench_seconds(results / "benchmarks" / "segment")
    ana_jobs = _bench_seconds(results / "benchmarks" / "analyse")
    inference = model_load = seg_startup = seg_io = 0.0
    n_seg = 0
    for f in sorted((results / "segmentation").glob("*/batch.json")):
        info = json.loads(f.read_text())
        model_load += info.get("model_load_s") or 0.0
        seg_startup += info.get("process_age_at_start_s") or 0.0
        for r in info["subjects"]:
            n_seg += 1
            inference += r.get("inference_s", 0.0)
            seg_io += r.get("read_s", 0.0) + r.get("write_s", 0.0)
    split = ana_startup = ana_total = 0.0
    n_ok = n = 0
    for f in sorted((results / "subjects").glob("*/summary.json")):
        s = json.loads(f.read_text())
        n += 1
        n_ok += s.get("status") == "ok"
        split += s.get("compute_s") or 0.0
        ana_startup += s.get("process_age_at_start_s") or 0.0
        ana_total += s.get("seconds") or 0.0
    job_s = sum(seg_jobs) + sum(ana_jobs)
    startup = seg_startup + ana_startup + model_load
    res = {
        "subjects": n,
        "subjects_ok": n_ok,
        "segment_jobs": len(seg_jobs),
        "analyse_jobs": len(ana_jobs),
        "segment_job_s": sum(seg_jobs),
        "analyse_job_s": sum(ana_jobs),
        "inference_s": inference,
        "split_label_measure_s": split,
        "startup_s": startup,
        "model_load_s": model_load,
        "compute_share": (inference + split) / job_s if job_s else float("nan"),
        "startup_share": (seg_startup + ana_startup + model_load) / job_s
        if job_s
        else float("nan"),
    }
    # CPU seconds of every job: on a busy shared machine wall times inflate, CPU does not;
    # sum / cores estimates the run's wall time on idle cores
    bench = results / "benchmarks"
    cpu = {
        "segment": sum(_bench_seconds(bench / "segment", "cpu_time")),
        "analyse": sum(_bench_seconds(bench / "analyse", "cpu_time")),
    }
    for name in ("synthesize", "aggregate", "cohort_qc"):
        f = bench / f"{name}.tsv"
        if f.exists():
            cpu[name] = sum(float(r["cpu_time"]) for r in csv.DictReader(open(f), delimiter="\t"))
    for k, v in cpu.items():
        res[f"cpu_{k}_s"] = v
    res["cpu_total_s"] = sum(cpu.values())
    if wall_s:
        res["wall_s"] = wall_s
        res["subjects_per_min"] = 60.0 * n / wall_s
    return res


def run_demo(args: argparse.Namespace) -> tuple[Path, float]:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="throughput_"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["synthetic"]["n"] = args.n
    cfg["segmentation"]["method"] = args.method
    if args.weights:
        cfg["segmentation"]["weights"] = str(Path(args.weights).resolve())
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(work), "--cores", str(args.cores), "--keep-going",
           "--rerun-incomplete"]  # fmt: skip
    # time the cohort work only: synthesize first, then the timed run
    subprocess.run([*cmd, "synthesize"], check=True, capture_output=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return work / "results", wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="store_true", help="run the synthetic demo workflow first")
    ap.add_argument("--results", type=Path, default=REPO / "results")
    ap.add_argument("--wall", type=float, default=None, help="wall seconds of that run")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--method", default="model", choices=("model", "ground_truth"))
    ap.add_argument("--weights", default="")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    if args.run:
        results, wall = run_demo(args)
    else:
        results, wall = args.results, args.wall
    r = analyse_run(results, wall)
    print(f"results: {results} (synthetic cohort, method {args.method if args.run else '?'})")
    for k, v in r.items():
        print(f"  {k:24s} {v:.3f}" if isinstance(v, float) else f"  {k:24s} {v}")
    print(f"compute share {100 * r['compute_share']:.1f} % of segment+analyse job time "
          f"(target >= 60 %), start-up {100 * r['startup_share']:.1f} %")  # fmt: skip
    if "subjects_per_min" in r:
        print(f"throughput {r['subjects_per_min']:.1f} subjects/min on {args.cores} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
