"""Accuracy of ``measure_subject`` against planted truth (every number is **synthetic**).

Two modes:

* ``--phantoms`` (default): random columns of three lumbar-sized bodies and the two discs
  between them (``tests/body_phantom.py``): the middle body wedged (0-45 % anterior loss)
  with central endplate depressions of 0-4 mm, the column tilted -30..30 deg in the
  sagittal plane and rotated -8..8 deg about the superior-inferior and -4..4 deg about the
  antero-posterior axis, drawn on three grids.  Prints, per grid, the median and maximum
  absolute error of the anterior / middle / posterior heights (mm) of bodies and of discs
  against the drawn corners, and the maximum endplate-tilt error (degrees).
* ``--cohort N``: the ground-truth instance masks of a seeded cohort of the generator
  (``spinecensus.synthetic``, variants ``fracture`` and ``disc_narrowing`` at the given
  rates) measured against each subject's ``truth.json``
  (:func:`spinecensus.synthetic.truth.truth_json`): body heights (median and 95th
  percentile absolute error, mm), lordosis and kyphosis (degrees), the Genant grade of
  every planted fracture (exact or not) and of every undeformed body, disc heights (for
  information).  Prints the acceptance of issue 21 (heights <= 0.5 mm median and <= 1.0 mm
  95th percentile, lordosis within 2 deg, grade exact for >= 95 % of planted fractures,
  no grade >= 2 on an undeformed body) and each planted fracture's row.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/morphometrics_accuracy.py --trials 6
--seed 0`` (phantoms) or ``... --cohort 40 --seed 21 --fracture-rate 0.3`` (~1 s per
default-preset subject on one core).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from body_phantom import Level, build  # noqa: E402

from spinecensus.measure.morphometrics import measure_subject  # noqa: E402
from spinecensus.synthetic.cohort import cohort_subject  # noqa: E402
from spinecensus.synthetic.config import SyntheticConfig  # noqa: E402
from spinecensus.synthetic.truth import truth_json  # noqa: E402

GRIDS = ((3.0, 0.5, 0.5), (4.0, 1.0, 1.0), (4.5, 1.25, 1.25))
HEIGHTS = ["height_anterior_mm", "height_middle_mm", "height_posterior_mm"]
TILTS = ["endplate_superior_deg", "endplate_inferior_deg"]


def _errors(spacing, trials: int, rng: np.random.Generator):
    body, disc, tilt = [], [], []
    for _ in range(trials):
        loss, c_sup, c_inf = rng.uniform(0, 0.45), rng.uniform(0, 4), rng.uniform(0, 4)
        levels = [
            Level("L1", c_sup=1.0, c_inf=1.5),
            Level("L2", ha=27 * (1 - loss), c_sup=c_sup, c_inf=c_inf),
            Level("L3", hp=26, ha=28, c_sup=1.5, c_inf=1.5),
        ]
        inst, names, truth = build(
            levels,
            spacing,
            tau0_deg=rng.uniform(-30, 30),
            rot_si_deg=rng.uniform(-8, 8),
            rot_ap_deg=rng.uniform(-4, 4),
        )
        table = measure_subject(inst, names, spacing)[0].set_index("label")
        for name, h in truth.heights.items():
            err = table.loc[name, HEIGHTS].to_numpy(float) - np.array(h)
            (disc if "-" in name else body).append(err)
            tilt.append(table.loc[name, TILTS].to_numpy(float) - np.array(truth.tilt[name]))
    return np.abs(body), np.abs(disc), np.abs(tilt)


def _cohort_records(n: int, seed: int, rates: dict[str, float], preset: str, inplane=None):
    """Per subject of the cohort: (id, truth.json dict, measured table indexed by label,
    alignment dict, spacing); ``inplane`` (lo, hi) mm overrides the preset's in-plane
    spacing (a resolution experiment)."""
    cfg = SyntheticConfig.preset(preset)
    if inplane:
        cfg = replace(cfg, inplane_spacing_mm=tuple(inplane))
    for i in range(n):
        sub = cohort_subject(seed, i, config=cfg, variant_rates=rates)
        truth = truth_json(sub.instances, sub.id_to_name, sub.truth)
        table, spine = measure_subject(sub.instances, sub.id_to_name, sub.spacing_mm)
        yield sub.subject, truth, table.set_index("label"), spine, sub.spacing_mm


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if x.size else float("nan")


def cohort_accuracy(n: int, seed: int, rates: dict[str, float], preset: str, inplane=None) -> dict:
    """Errors of ``measure_subject`` against ``truth.json`` over a generated cohort."""
    body, disc, angles, planted, undeformed = [], [], [], [], []
    for sid, truth, table, spine, spacing in _cohort_records(n, seed, rates, preset, inplane):
        fractured = {f["level"] for f in truth["fractures"]}
        for name, t in truth["vertebrae"].items():
            got = table.loc[name, HEIGHTS].to_numpy(float)
            body.append(got - np.array([t[h] for h in HEIGHTS]))
            grade = table.loc[name, "genant_grade"]
            grade = -1 if grade is pd.NA else int(grade)
            row = (sid, name, t["genant_grade"], grade, t["height_reduction"],
                   table.loc[name, "height_reduction"], max(spacing[1:]))  # fmt: skip
            (planted if name in fractured else undeformed).append(row)
        for name, t in truth["discs"].items():
            disc.append(table.loc[name, HEIGHTS].to_numpy(float) - [t[h] for h in HEIGHTS])
        for key in ("lordosis_deg", "kyphosis_deg"):
            if truth[key] is not None and spine[key] is not None:
                angles.append((key, spine[key] - truth[key], truth[key]))
    return {"body": np.array(body), "disc": np.array(disc), "angles": angles,
            "planted": planted, "undeformed": undeformed}  # fmt: skip


def print_cohort(res: dict, n: int, seed: int, rates: dict[str, float], preset: str) -> None:
    body = np.abs(res["body"])
    untraced = int((~np.isfinite(body).all(axis=1)).sum())
    body = body[np.isfinite(body).all(axis=1)]
    disc = np.abs(res["disc"])
    disc = disc[np.isfinite(disc).all(axis=1)]
    lord = np.abs([e for k, e, _ in res["angles"] if k == "lordosis_deg"])
    kyph = np.abs([e for k, e, _ in res["angles"] if k == "kyphosis_deg"])
    planted_lord = [a for k, _, a in res["angles"] if k == "lordosis_deg"]
    planted, undeformed = res["planted"], res["undeformed"]
    exact = sum(r[2] == r[3] for r in planted)
    high = sum(r[3] >= 2 for r in undeformed)
    print(f"synthetic, preset {preset}, n = {n} subjects, seed {seed}, rates {rates}")
    print("| measure | n | median abs error | 95th pct | max | target | met |")
    print("|---|---|---|---|---|---|---|")
    flat = body.ravel()
    print(f"| body heights (Ha, Hm, Hp), mm | {flat.size} | {np.median(flat):.2f} | "
          f"{_pct(flat, 95):.2f} | {flat.max():.2f} | <= 0.5 / <= 1.0 | "
          f"{np.median(flat) <= 0.5 and _pct(flat, 95) <= 1.0} |")  # fmt: skip
    for k, h in enumerate(("Ha", "Hm", "Hp")):
        print(f"| body {h}, mm | {body.shape[0]} | {np.median(body[:, k]):.2f} | "
              f"{_pct(body[:, k], 95):.2f} | {body[:, k].max():.2f} | | |")  # fmt: skip
    print(f"| lordosis, deg | {lord.size} | {np.median(lord):.2f} | {_pct(lord, 95):.2f} | "
          f"{lord.max():.2f} | <= 2 each | {bool((lord <= 2).all())} ({int((lord <= 2).sum())}"
          f"/{lord.size}) |")  # fmt: skip
    if kyph.size:
        print(f"| kyphosis, deg | {kyph.size} | {np.median(kyph):.2f} | {_pct(kyph, 95):.2f} | "
              f"{kyph.max():.2f} | | |")  # fmt: skip
    print(f"| disc heights (Ha, Hm, Hp), mm | {disc.size} | {np.median(disc):.2f} | "
          f"{_pct(disc.ravel(), 95):.2f} | {disc.max():.2f} | | |")  # fmt: skip
    print(f"| planted fractures: grade exact | {len(planted)} | {exact} "
          f"({100 * exact / max(len(planted), 1):.0f} %) | | | >= 95 % | "
          f"{exact >= 0.95 * len(planted)} |")  # fmt: skip
    print(f"| undeformed bodies: measured grade >= 2 | {len(undeformed)} | {high} | | | 0 | "
          f"{high == 0} |")  # fmt: skip
    ones = sum(r[3] == 1 for r in undeformed)
    truth_ones = sum(r[2] == 1 for r in undeformed)
    print(f"\nbodies in view not measured (NaN): {untraced}; undeformed bodies graded 1: {ones} "
          f"measured, {truth_ones} by the drawn heights")  # fmt: skip
    print(f"planted lordosis {min(planted_lord):.1f}-{max(planted_lord):.1f} deg")
    red = np.abs([r[5] - r[4] for r in planted])
    if red.size:
        print(f"planted fractures' reduction error (|measured - truth|, fraction): median "
              f"{np.median(red):.3f}, 95th pct {_pct(red, 95):.3f}, "
              f"max {red.max():.3f}")  # fmt: skip
    for g in (1, 2, 3):
        rows = [r for r in planted if r[2] == g]
        if rows:
            print(f"  grade {g}: {sum(r[2] == r[3] for r in rows)}/{len(rows)} exact")
    print(
        "planted fractures (subject, level, truth grade, measured grade, truth reduction, "
        "measured reduction, in-plane voxel mm):"
    )
    for r in planted:
        flag = "" if r[2] == r[3] else "  <- differs"
        print(f"  {r[0]} {r[1]}: {r[2]} {r[3]} {r[4]:.3f} {r[5]:.3f} {r[6]:.2f}{flag}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=6, help="random columns per grid")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cohort", type=int, default=0, metavar="N",
                    help="measure N generated subjects against truth.json instead")  # fmt: skip
    ap.add_argument("--fracture-rate", type=float, default=0.3)
    ap.add_argument("--narrowing-rate", type=float, default=0.2)
    ap.add_argument("--preset", default="default", choices=("default", "tiny", "varied"))
    ap.add_argument("--inplane-mm", type=float, nargs=2, metavar=("LO", "HI"),
                    help="override the preset's in-plane spacing range (mm)")  # fmt: skip
    args = ap.parse_args()
    if args.cohort:
        rates = {"fracture": args.fracture_rate, "disc_narrowing": args.narrowing_rate}
        res = cohort_accuracy(args.cohort, args.seed, rates, args.preset, args.inplane_mm)
        preset = args.preset + (f", in-plane {args.inplane_mm} mm" if args.inplane_mm else "")
        print_cohort(res, args.cohort, args.seed, rates, preset)
        return
    rng = np.random.default_rng(args.seed)
    print(f"synthetic, {args.trials} columns per grid (3 bodies + 2 discs), seed {args.seed}")
    print("grid (mm) | bodies median / max (Ha, Hm, Hp) | discs median / max | tilt max (deg)")
    for spacing in GRIDS:
        body, disc, tilt = _errors(spacing, args.trials, rng)
        print(
            f"{spacing} | {np.median(body, 0).round(2)} / {body.max(0).round(2)} | "
            f"{np.median(disc, 0).round(2)} / {disc.max(0).round(2)} | {tilt.max():.2f}"
        )


if __name__ == "__main__":
    main()
