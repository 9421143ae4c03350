"""What measuring morphometrics adds to the ``analyse`` batch job (synthetic).

The batch job as the workflow runs it, in this process: ``analyse_batch.analyse_batch`` on
the first ``--subjects`` subjects of the demo cohort (``--cohort-seed`` 2023, default
preset, no variants: ``config.yaml``'s ``synthetic`` block), their ground-truth semantic
masks standing in for the segmentation and their images drawn in the QC pictures.  Each
subject's ``summary.json`` records the analysis's wall time (``seconds``: split, label,
volumes, NIfTI and Parquet outputs, morphometrics, QC picture) and the part of it spent
measuring (``measure_s``, :func:`spinecensus.census.analyse_job.analyse`); the ratio
``sum(measure_s) / sum(seconds - measure_s)`` is what measuring adds to the job, both
from the same run.  A first subject, not counted, warms the imports (the job's first
subject pays them: ``--import-s`` reports how long importing the measuring modules takes
in a fresh interpreter).

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/morphometrics_speed.py --subjects 30``
(~1 min); ``--against DIR`` then runs the same on another checkout (``git worktree add DIR
<commit>``) in the same run, for a before/after on the same loaded machine.  Every
number is **synthetic**, on a machine shared with other jobs unless said.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.census.analyse_batch import analyse_batch
from spinecensus.synthetic.cohort import cohort_subject, subject_id
from spinecensus.synthetic.config import SyntheticConfig


def _write_inputs(seed: int, indices: range, root: Path) -> tuple[list[str], list[str], Path]:
    """Ground-truth semantic masks as the segment job's outputs, and the images."""
    seg = root / "seg"
    seg.mkdir()
    subjects, images = [], []
    cfg = SyntheticConfig.preset("default")
    for i in indices:
        sub = cohort_subject(seed, i, config=cfg)
        img, sem, _inst = sub.to_nifti()
        name = subject_id(i)
        nib.save(sem, seg / f"{name}.nii.gz")
        nib.save(img, root / f"{name}_img.nii.gz")
        subjects.append(name)
        images.append(str(root / f"{name}_img.nii.gz"))
    return subjects, images, seg


def _import_seconds(first_table: bool = False) -> float:
    """Wall time of importing the measuring modules in a fresh interpreter that has
    already imported what the analyse job imports before them; ``first_table``: and has
    written a first Arrow array, as the job does (``structures.parquet``) before it
    measures: pyarrow imports pandas there, so pandas then costs the measuring nothing."""
    pre = "import pyarrow; pyarrow.array([0.5]); " if first_table else ""
    code = (
        "import time, spinecensus.census.analyse_job, spinecensus.census.subject_analysis, "
        f"spinecensus.census.tables; {pre}t = time.perf_counter(); "
        "import spinecensus.measure.morphometrics, spinecensus.census.morphometrics_tables; "
        "print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def run(n: int, seed: int) -> dict[str, object]:
    """Analyse subjects 1..n of cohort ``seed`` in one batch (subject 0 warms up first)."""
    with tempfile.TemporaryDirectory() as td:
        root = Path(td)
        subjects, images, seg = _write_inputs(seed, range(n + 1), root)
        out = root / "out"
        analyse_batch(subjects[:1], seg, out, images[:1])  # imports, caches
        t0 = time.perf_counter()
        analyse_batch(subjects[1:], seg, out, images[1:])
        wall = time.perf_counter() - t0
        rows = [json.loads((out / s / "summary.json").read_text()) for s in subjects[1:]]
    seconds = np.array([r["seconds"] for r in rows])
    measure = np.array([r["measure_s"] for r in rows])
    bad = [r["subject"] for r in rows if r.get("status") != "ok"]
    return {"n": len(rows), "failed": bad, "batch_wall_s": wall, "seconds": seconds,
            "measure_s": measure}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=30, help="subjects in the batch")
    ap.add_argument("--cohort-seed", type=int, default=2023, help="the demo cohort's seed")
    ap.add_argument("--import-s", action="store_true", help="also time the imports")
    ap.add_argument("--against", metavar="DIR", help="then run this benchmark on the checkout DIR")
    args = ap.parse_args()
    r = run(args.subjects, args.cohort_seed)
    s, m = r["seconds"], r["measure_s"]
    print(f"demo cohort (seed {args.cohort_seed}, default preset), ground-truth masks, synthetic: "
          f"subjects 1-{args.subjects} in one analyse_batch call ({r['batch_wall_s']:.1f} s wall; "
          f"failed: {r['failed'] or 'none'})")  # fmt: skip
    print(f"per subject: analyse median {1000 * np.median(s):.0f} ms (mean {1000 * s.mean():.0f}), "
          f"measuring median {1000 * np.median(m):.1f} ms (mean {1000 * m.mean():.1f}, "
          f"max {1000 * m.max():.1f})")  # fmt: skip
    print(f"measuring adds {100 * m.sum() / (s - m).sum():.1f} % to the rest of the analysis "
          f"({100 * m.sum() / s.sum():.1f} % of the analysis time)")  # fmt: skip
    if args.import_s:
        print(f"importing the measuring modules after the job's own: {_import_seconds():.3f} s; "
              f"after the job's first Arrow table too: {_import_seconds(True):.3f} s")  # fmt: skip
    if args.against:
        # the same benchmark on another checkout (e.g. a git worktree of the previous
        # commit), right after this one on the same machine: an A/B in one run
        ref = Path(args.against).resolve()
        cmd = [
            sys.executable,
            str(ref / "benchmarks" / Path(__file__).name),
            "--subjects",
            str(args.subjects),
            "--cohort-seed",
            str(args.cohort_seed),
        ]
        cmd += ["--import-s"] if args.import_s else []  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(ref))
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ref, env=env)
        print(f"--- the same on {ref}:\n{out.stdout.rstrip()}")


if __name__ == "__main__":
    main()
