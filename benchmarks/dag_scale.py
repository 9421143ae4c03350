"""Workflow scale at the thesis cohort size (10,833 subjects), synthetic.

1. Dry run: a sample sheet of N subjects whose images are symlinks to one small NIfTI file;
   time ``snakemake -n`` (parse + sheet validation + DAG of all jobs).  Target < 60 s.
2. Aggregation: N synthetic per-subject outputs (``summary.json`` + ``structures.parquet``
   with a whole spine's 47 rows each) aggregated into the four cohort tables by
   ``python -m spinecensus.census aggregate`` (the rule's command) in a subprocess; wall time
   and the subprocess's peak RSS.  Targets < 30 s and < 2 GB.

Usage: ``python benchmarks/dag_scale.py [--n 10833] [--workdir DIR] [--skip-dry-run]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spinecensus.anatomy import labels  # noqa: E402
from spinecensus.census import tables  # noqa: E402


def make_sheet(root: Path, n: int) -> Path:
    """Sheet of ``n`` subjects; every image is a symlink to one tiny NIfTI file."""
    import nibabel as nib

    data = root / "images"
    data.mkdir(parents=True, exist_ok=True)
    src = data / "template.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(8, dtype=np.float32).reshape(2, 2, 2), np.eye(4)), src)
    rng = np.random.default_rng(0)
    lines = ["subject\timage\tsex\tage\tsite"]
    for i in range(n):
        link = data / f"sub{i:05d}.nii.gz"
        if not link.exists():
            link.symlink_to(src.name)
        sex = "F" if rng.random() < 0.5 else "M"
        lines.append(f"sub{i:05d}\timages/{link.name}\t{sex}\t{rng.integers(20, 90)}\tsite{i % 3}")
    sheet = root / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sheet


def _child_cpu() -> float:
    """CPU seconds (user + system) of finished child processes: robust to a busy machine."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def dry_run(root: Path, sheet: Path) -> tuple[float, float, str]:
    (root / "config.yaml").write_text(
        (REPO / "config.yaml").read_text() + f"\n# benchmark override\nsamples: {sheet}\n"
    )
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(root), "--cores", "2", "-n", "--quiet", "rules"]  # fmt: skip
    t, cpu0 = time.perf_counter(), _child_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return dt, _child_cpu() - cpu0, proc.stdout


def make_subject_outputs(root: Path, n: int) -> tuple[Path, Path]:
    """Per-subject summary.json + structures.parquet (normal spine, 47 structures each)."""
    sub_dir = root / "subjects"
    names = labels.structures("normal")
    rng = np.random.default_rng(1)
    lines = ["subject\timage\tsex\tage\tanomaly"]
    for i in range(n):
        s = f"sub{i:05d}"
        d = sub_dir / s
        d.mkdir(parents=True, exist_ok=True)
        vols = rng.normal(20000, 3000, len(names))
        rows = [
            {"label": nm, "kind": labels.kind(nm), "region": labels.region(nm),
             "instance_id": k + 1, "voxel_count": int(v / 2), "volume_mm3": float(v),
             "centroid_x_mm": 0.0, "centroid_y_mm": float(k), "centroid_z_mm": float(-k),
             "confidence": None}
            for k, (nm, v) in enumerate(zip(names, vols, strict=True))
        ]  # fmt: skip
        tables.write_subject_structures(s, rows, d / "structures.parquet")
        status = "lumbarization" if i % 15 == 0 else "normal"
        summary = {"subject": s, "status": "ok", "transitional_status": status,
                   "split_valid": True, "n_vertebrae": 24, "n_discs": 23, "lumbar_count": 5,
                   "volumes_mm3": {r["label"]: r["volume_mm3"] for r in rows},
                   "first_visible_label": "C2", "last_visible_label": "S1",
                   "decided_by": "count", "qc_flags": []}  # fmt: skip
        (d / "summary.json").write_text(json.dumps(summary))
        lines.append(f"{s}\tx.nii.gz\t{'FM'[i % 2]}\t{20 + i % 70}\t{status}")
    sheet = root / "agg_samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sub_dir, sheet


def aggregate(root: Path, sub_dir: Path, sheet: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "spinecensus.census", "aggregate", "--subjects-dir",
           str(sub_dir), "--sheet", str(sheet), "--out", str(root / "tables"),
           "--config", json.dumps({"samples": str(sheet)})]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO)
    _, status, ru = os.wait4(proc.pid, 0)  # this child's own rusage (CPU, peak RSS)
    dt = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"aggregate failed ({proc.returncode})")
    return dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10833)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-dry-run", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="reuse per-subject files in --workdir")
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="dag_scale_"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"workdir {root}, n = {args.n} subjects (synthetic)")
    if not args.skip_dry_run:
        sheet = make_sheet(root, args.n)
        dt, cpu, out = dry_run(root, sheet)
        pairs = [ln.split() for ln in out.splitlines()]
        jobs = {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].isdigit()}
        print(f"snakemake -n: {dt:.1f} s wall, {cpu:.1f} s CPU (target < 60 s): jobs {jobs}")
    t = time.perf_counter()
    if args.reuse and (root / "agg_samples.tsv").exists():
        sub_dir, agg_sheet = root / "subjects", root / "agg_samples.tsv"
    else:
        sub_dir, agg_sheet = make_subject_outputs(root, args.n)
        print(f"wrote {args.n} synthetic per-subject outputs in {time.perf_counter() - t:.1f} s")
    dt, cpu, rss = aggregate(root, sub_dir, agg_sheet)
    import pyarrow.parquet as pq

    n_rows = pq.read_metadata(root / "tables" / "structures.parquet").num_rows
    print(f"aggregate: {dt:.1f} s wall, {cpu:.1f} s CPU (target < 30 s), "
          f"peak RSS {rss:.0f} MB (target < 2048 MB), {n_rows} structure rows")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
