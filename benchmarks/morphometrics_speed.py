"""What measuring morphometrics would add to the ``analyse`` job (synthetic).

Per subject: the ``analyse`` job's own work in-process (``analyse_job.analyse``: split,
label, volumes, NIfTI and JSON outputs, QC PNG) and ``morphometrics.measure_subject`` on
the instances and labels that job wrote, CPU time (``time.process_time``, one thread) and
wall time, best of ``--repeat`` for the measurement; and, with ``--process``, the wall time
of the whole job as the workflow runs it (``python -m spinecensus.census analyse``: a fresh
interpreter, imports included).  The first subject warms the imports and is not counted.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/morphometrics_speed.py --preset
default --seeds 11 12 13 [--process]``.  Every number is **synthetic**.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.census.analyse_job import analyse
from spinecensus.io import load_mask
from spinecensus.measure.cli import read_labels
from spinecensus.measure.morphometrics import measure_subject
from spinecensus.synthetic import SyntheticConfig, generate_subject


def _timed(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def _one(seed: int, cfg: SyntheticConfig, root: Path, repeat: int, process: bool) -> dict:
    subject = f"S{seed}"
    s = generate_subject(seed, "normal", cfg, subject=subject)
    img, sem, _inst = s.to_nifti()
    seg, out = root / f"seg{seed}", root / f"out{seed}"
    seg.mkdir()
    nib.save(sem, seg / f"{subject}.nii.gz")
    nib.save(img, root / f"{subject}_img.nii.gz")
    image = str(root / f"{subject}_img.nii.gz")
    summary, a_cpu, a_wall = _timed(lambda: analyse(subject, seg, out, image=image))
    if summary.get("status") != "ok":
        raise RuntimeError(f"{subject}: analyse failed: {summary.get('error')}")
    scan = load_mask(out / "instances.nii.gz")
    names = read_labels(out / "labels.json")
    runs = [
        _timed(lambda: measure_subject(scan.data, names, scan.spacing_mm)) for _ in range(repeat)
    ]
    row = {
        "seed": seed,
        "shape": scan.data.shape,
        "analyse_cpu": a_cpu,
        "analyse_wall": a_wall,
        "measure_cpu": min(r[1] for r in runs),
        "measure_wall": min(r[2] for r in runs),
    }
    if process:
        job_out = str(root / f"job{seed}")
        cmd = [sys.executable, "-m", "spinecensus.census", "analyse", "--subject", subject,
               "--seg-dir", str(seg), "--image", image, "--out", job_out]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        row["job_wall"] = time.perf_counter() - t0
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", help="synthetic preset: default | tiny")
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--process", action="store_true", help="also time the job as a process")
    args = ap.parse_args()
    cfg = SyntheticConfig.preset(args.preset)
    with tempfile.TemporaryDirectory() as td:
        _one(args.seeds[0] + 1000, cfg, Path(td), 1, False)  # warm the imports
        rows = [_one(seed, cfg, Path(td), args.repeat, args.process) for seed in args.seeds]
    print(f"preset {args.preset}, synthetic, n={len(rows)} (seeds {args.seeds})")
    for r in rows:
        line = (
            f"seed {r['seed']} {r['shape']}: analyse cpu {r['analyse_cpu']:.3f} s "
            f"wall {r['analyse_wall']:.3f} s; measure cpu {r['measure_cpu']:.3f} s "
            f"wall {r['measure_wall']:.3f} s; ratio cpu {r['measure_cpu'] / r['analyse_cpu']:.3f}"
        )
        if "job_wall" in r:
            line += f"; job process wall {r['job_wall']:.2f} s"
        print(line)
    m = np.array([r["measure_cpu"] for r in rows])
    a = np.array([r["analyse_cpu"] for r in rows])
    print(f"total: measure / analyse CPU = {m.sum() / a.sum():.3f}")
    if all("job_wall" in r for r in rows):
        j = np.array([r["job_wall"] for r in rows])
        print(f"total: measure wall / job process wall = "
              f"{sum(r['measure_wall'] for r in rows) / j.sum():.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
