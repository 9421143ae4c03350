"""Morphometrics from the model's masks against expert masks (real MRI) and planted truth
(synthetic): issue 21's honest figures, written up in ``docs/morphometrics_agreement.md``.

* ``--real [ROOT]``: every scan of ``../shared/data/real``.  Morphometrics
  (:func:`spinecensus.measure.morphometrics.measure_subject`) of (a) the expert mask, its
  bodies or discs as instances named by the dataset's levels (VB1 states none: each expert
  body takes the name of its paired model instance), and (b) the model's masks as the
  workflow of ``config/real.yaml`` makes them (``load_checked`` -> ``segmentation_real.pt``
  ``predict_semantic`` -> ``labeling_real.pt`` votes -> ``analyse_semantic`` with
  ``field_of_view="lumbar"``).  An expert structure is paired with the model instance of its
  kind overlapping it with IoU > 0.5 (``real_subject_eval.DETECT_IOU``, the model cut to the
  annotated rows as the real evaluation judges it), so a pair never hangs on the naming.
  Per measure, dataset and side of the weights' training split (sidecar
  ``real_train_subjects``: "trained on" / "held out"): Bland-Altman bias (model - expert)
  and 95 % limits (bias +- 1.96 SD); a PNG grid of the plots.
* ``--synthetic N``: the seeded cohort of ``benchmarks/morphometrics_accuracy.py`` (default
  preset, ``fracture`` and ``disc_narrowing``) segmented by the shipped ``segmentation.pt``
  through the default workflow's path (``predict_semantic`` -> ``analyse_semantic``, count
  labeling from C2), paired with ``truth.json`` by level name as the tables report them:
  the accuracy table's error figures.  Every number of this part is **synthetic**.

Run: ``OMP_NUM_THREADS=2 .venv/bin/python benchmarks/morphometrics_agreement.py --real
--png docs/morphometrics_agreement.png`` and ``... --synthetic 40 --seed 21``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from spinecensus.anatomy import labels as anatomy
from spinecensus.measure.morphometrics import measure_subject
from spinecensus.train.real_data import DEFAULT_ROOT

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "spinecensus" / "weights"
HEIGHTS = DISC_MEASURES = ("height_anterior_mm", "height_middle_mm", "height_posterior_mm")
BODY_MEASURES = (*HEIGHTS, "depth_mm", "genant_grade")
#: the four lumbar segments whose angles add up to the L1-L5 angle (L1 superior to L5
#: superior endplate); lordosis proper needs S1's superior endplate, in no expert mask
L1_L5 = ("L1-L2", "L2-L3", "L3-L4", "L4-L5")


class BlandAltman(NamedTuple):
    """Agreement of paired measurements: ``n`` pairs, ``bias`` = mean of (model - expert),
    ``sd`` of the differences (ddof 1), limits ``lower`` / ``upper`` = bias -+ 1.96 SD
    (units of the measure; NaN SD and limits below two pairs)."""

    n: int
    bias: float
    sd: float
    lower: float
    upper: float


def bland_altman(reference: Iterable[float], other: Iterable[float]) -> BlandAltman:
    """Bland-Altman bias and 95 % limits of agreement of ``other - reference`` (Bland JM,
    Altman DG, Lancet 1986;1(8476):307-310): pairs with a NaN on either side are dropped."""
    a = np.asarray(list(reference), dtype=float)
    b = np.asarray(list(other), dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"unpaired measurements: {a.shape} vs {b.shape}")
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    if d.size == 0:
        return BlandAltman(0, math.nan, math.nan, math.nan, math.nan)
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
    return BlandAltman(int(d.size), bias, sd, bias - 1.96 * sd, bias + 1.96 * sd)


def _pairs(ref: np.ndarray, inst: np.ndarray, ids: list[int]) -> dict[int, int]:
    """Expert id -> model instance id (of ``ids``) overlapping it with IoU > DETECT_IOU,
    the model's instances cut to the expert mask's annotated rows (a whole predicted
    sacrum against a partly annotated one would fail the IoU for no fault of the body)."""
    from spinecensus.train.real_metrics import annotated_rows, iou_matrix
    from spinecensus.train.real_subject_eval import DETECT_IOU

    cut = np.where(annotated_rows(ref > 0) & np.isin(inst, ids), inst, 0)
    iou = iou_matrix(ref, cut)
    best = iou.argmax(axis=1)
    return {r: int(best[r]) for r in range(1, iou.shape[0]) if iou[r, best[r]] > DETECT_IOU}


def _row_values(table: pd.DataFrame, name: str | None, measures: Iterable[str]) -> dict:
    if name is None or name not in table.index:
        return {m: math.nan for m in measures}
    return {m: _num(None if pd.isna(v := table.loc[name, m]) else v) for m in measures}


def _segments(names: Mapping[int, str], pairs: Mapping[int, int], model_names: Mapping[int, str]):
    """(expert segment key, model segment key) of consecutive paired expert vertebrae."""
    ids = sorted(r for r in pairs if r in names and anatomy.is_vertebra(names[r]))
    out = []
    for up, low in zip(ids[:-1], ids[1:], strict=False):
        mu, ml = model_names.get(pairs[up]), model_names.get(pairs[low])
        if low == up + 1 and mu and ml:
            out.append((f"{names[up]}-{names[low]}", f"{mu}-{ml}"))
    return out


def real_subject_rows(sample: Any, segmenter: Any, labeler: Any, side: str) -> list[dict]:
    """Paired measurements (one row per structure and measure) of one real scan."""
    from spinecensus.census.subject_analysis import analyse_semantic
    from spinecensus.io.checks import load_checked
    from spinecensus.train.real_data import BODY

    meta, ref = sample, np.asarray(sample.load().instances)
    scan = load_checked(meta.image)
    if scan.data.shape != ref.shape:
        raise ValueError(f"{meta.key}: image {scan.data.shape} vs mask {ref.shape}")
    sem = segmenter.predict_semantic(scan.data, scan.spacing_mm)
    votes = labeler.predict_structure_classes(scan.data, scan.spacing_mm, np.asarray(sem) > 0)
    a = analyse_semantic(np.asarray(sem), scan, labeler_votes=votes, field_of_view="lumbar")
    kind = "vertebra" if BODY in meta.labeled_classes else "disc"
    inst, model_names = a.split.instances, dict(a.labeling.id_to_name)
    pairs = _pairs(ref, inst, list(a.split.ids_of(kind)))
    if meta.levels_known:
        names = {r: n for r, n in meta.level_names.items() if (ref == r).any()}
    else:  # VB1: no stated levels; the paired model instance's name
        names = {r: model_names[m] for r, m in pairs.items() if m in model_names}
    exp_t, exp_s = measure_subject(ref, names, scan.spacing_mm)
    mod_t, mod_s = measure_subject(inst, model_names, scan.spacing_mm)
    exp_t, mod_t = exp_t.set_index("label"), mod_t.set_index("label")
    base = {"dataset": meta.dataset, "subject": meta.key, "side": side}
    measures = BODY_MEASURES if kind == "vertebra" else DISC_MEASURES
    wedge = "body_wedge_deg" if kind == "vertebra" else "disc_wedge_deg"
    rows = []
    for r in sorted(meta.level_names):
        if not (ref == r).any():
            continue
        m = pairs.get(r)
        e_name, m_name = names.get(r), model_names.get(m) if m else None
        ev = _row_values(exp_t, e_name, (*measures, wedge))
        mv = _row_values(mod_t, m_name, (*measures, wedge))
        for k in (*measures, wedge):
            rows.append({**base, "level": e_name or meta.level_names[r], "kind": kind,
                         "measure": k if k != wedge else "wedge_deg", "paired": m is not None,
                         "model_name": m_name, "expert": ev[k], "model": mv[k]})  # fmt: skip
    return rows + _angle_rows(base, names, pairs, model_names, exp_s, mod_s)


def _num(x: float | None) -> float:
    return math.nan if x is None else float(x)


def _angle_rows(base: dict, names: Mapping[int, str], pairs: Mapping[int, int],
                model_names: Mapping[int, str], exp_s: dict, mod_s: dict) -> list:  # fmt: skip
    """Rows of the angles (degrees): each paired segment, the L1-L5 angle where the expert
    has all of L1-L2 ... L4-L5, and the lordosis (NaN where a side has none)."""

    def row(kind: str, measure: str, level: str, model_name: str | None, e, m) -> dict:
        return {**base, "level": level, "kind": kind, "measure": measure, "paired": True,
                "model_name": model_name, "expert": _num(e), "model": _num(m)}  # fmt: skip

    seg_e, seg_m = exp_s["segment_angles_deg"], mod_s["segment_angles_deg"]
    segs = _segments(names, pairs, model_names)
    got = {ek: (seg_e.get(ek), seg_m.get(mk)) for ek, mk in segs}
    rows = [row("segment", "segment_angle_deg", ek, mk, *got[ek]) for ek, mk in segs]
    if all(got.get(s, (None, None))[0] is not None for s in L1_L5):
        mo = [got[s][1] for s in L1_L5]
        e, m = sum(got[s][0] for s in L1_L5), None if None in mo else sum(mo)
        rows.append(row("spine", "l1_l5_angle_deg", "L1-L5", "L1-L5", e, m))
    return [*rows, row("spine", "lordosis_deg", "spine", None, exp_s["lordosis_deg"],
                       mod_s["lordosis_deg"])]  # fmt: skip


def run_real(root: Path, threads: int) -> pd.DataFrame:
    """All scans of the manifest at ``root``: the paired rows of every scan."""
    from spinecensus.segment.weights import load_model
    from spinecensus.train.real_data import load_manifest

    seg_w, lab_w = WEIGHTS / "segmentation_real.pt", WEIGHTS / "labeling_real.pt"
    seg = load_model(seg_w, threads=threads, batch_size=16, task="segmentation")
    lab = load_model(lab_w, threads=threads, batch_size=16, task="labeling")
    # the real scans the weights trained on, as their sidecar records them
    sidecar = json.loads(seg_w.with_suffix(".json").read_text())
    trained = set(sidecar["training"]["real_train_subjects"])
    rows = []
    for s in load_manifest(root):
        t = time.perf_counter()
        side = "trained on" if s.key in trained else "held out"
        rows.extend(real_subject_rows(s, seg, lab, side))
        print(f"{s.key} ({side}): {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return pd.DataFrame(rows)


def real_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per measure x kind x dataset x side (and pooled over the datasets): n scans, n paired
    structures, Bland-Altman n, bias and limits (model - expert); not the grades."""
    df = df[df.measure != "genant_grade"]
    out = []
    keys = ["measure", "kind", "dataset", "side"]
    for key, g in pd.concat([df, df.assign(dataset="all")]).groupby(keys, sort=False):
        ba = bland_altman(g["expert"], g["model"])._asdict()
        out.append({**dict(zip(keys, key, strict=True)), "scans": g["subject"].nunique(),
                    "structures": len(g), **ba})  # fmt: skip
    return pd.DataFrame(out)


def plot_real(df: pd.DataFrame, png: Path) -> None:
    """One Bland-Altman panel per measure: x mean of the two, y model - expert; filled
    markers held-out scans, hollow trained-on ones; lines: held-out bias and limits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [m for m in dict.fromkeys(df.measure) if m not in ("lordosis_deg", "genant_grade")]
    kinds = ("vertebra", "disc", "segment", "spine")
    groups = [(m, k) for k in kinds for m in measures if ((df.measure == m) & (df.kind == k)).any()]
    cols = 4
    fig, axes = plt.subplots(
        math.ceil(len(groups) / cols), cols, figsize=(16, 3.6 * math.ceil(len(groups) / cols))
    )
    colours = {"VB1": "tab:blue", "VB2": "tab:orange", "VB3": "tab:green", "IVD": "tab:red"}
    for ax, (m, k) in zip(axes.ravel(), groups, strict=False):
        g = df[(df.measure == m) & (df.kind == k)].dropna(subset=["expert", "model"])
        for (ds, side), h in g.groupby(["dataset", "side"]):
            held = side == "held out"
            ax.scatter((h.expert + h.model) / 2, h.model - h.expert, s=14,
                       edgecolors=colours[ds], facecolors=colours[ds] if held else "none",
                       label=f"{ds} {side}")  # fmt: skip
        ba = bland_altman(*(g.loc[g.side == "held out", c] for c in ("expert", "model")))
        for y, style in ((ba.bias, "-"), (ba.lower, "--"), (ba.upper, "--")):
            if math.isfinite(y):
                ax.axhline(y, color="k", lw=0.8, ls=style)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{'body' if k == 'vertebra' else k}: {m}", fontsize=9)
        ax.set_xlabel("mean of expert and model", fontsize=8)
        ax.set_ylabel("model - expert", fontsize=8)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    fig.suptitle("Real MRI (../shared/data/real): model (segmentation_real.pt) vs expert masks; "
                 "lines: held-out bias and 95 % limits")  # fmt: skip
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def synthetic_records(n: int, seed: int, rates: dict[str, float], threads: int):
    """Per subject of the seeded cohort: (truth.json dict, model table by label, model
    alignment, spacing, names right): the shipped default weights, count labeling."""
    from spinecensus.census.subject_analysis import analyse_semantic
    from spinecensus.io import scan_from_image
    from spinecensus.io.checks import check_scan
    from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS, load_model
    from spinecensus.synthetic.cohort import cohort_subject
    from spinecensus.synthetic.config import SyntheticConfig
    from spinecensus.synthetic.truth import truth_json
    from spinecensus.train.real_metrics import iou_matrix

    model = load_model(DEFAULT_SEGMENTATION_WEIGHTS, threads=threads, batch_size=16,
                       task="segmentation")  # fmt: skip
    cfg = SyntheticConfig.preset("default")
    for i in range(n):
        t = time.perf_counter()
        sub = cohort_subject(seed, i, config=cfg, variant_rates=rates)
        truth = truth_json(sub.instances, sub.id_to_name, sub.truth)
        scan = check_scan(scan_from_image(sub.to_nifti(cfg.storage_axcodes)[0], path=sub.subject),
                          path=sub.subject)  # fmt: skip
        a = analyse_semantic(np.asarray(model.predict_semantic(scan.data, scan.spacing_mm)), scan)
        names = dict(a.labeling.id_to_name)
        table, spine = measure_subject(a.split.instances, names, scan.spacing_mm)
        # a name is right when its instance overlaps the truth instance of that name most
        iou = iou_matrix(np.asarray(sub.instances), a.split.instances)
        right = all(sub.id_to_name.get(int(iou[:, m].argmax())) == nm for m, nm in names.items())
        print(f"{sub.subject}: {time.perf_counter() - t:.1f} s, names right {right}",
              file=sys.stderr)  # fmt: skip
        yield sub.subject, truth, table.set_index("label"), spine, scan.spacing_mm, right


def synthetic_errors(records: Iterable[tuple]) -> dict[str, Any]:
    """Errors against truth.json paired by name: body / disc height errors (NaN rows where
    the model has no measured structure of that name), angle errors, planted and undeformed
    bodies' (truth grade, measured grade or -1), subjects whose names were all right."""
    body, disc, angles, planted, undeformed, right = [], [], [], [], [], []
    for sid, truth, table, spine, _sp, ok in records:
        right.append(ok)
        fractured = {f["level"] for f in truth["fractures"]}
        for name, t in truth["vertebrae"].items():
            got = _row_values(table, name, HEIGHTS)
            body.append([got[h] - t[h] for h in HEIGHTS] + [ok])
            g = _row_values(table, name, ["genant_grade"])["genant_grade"]
            row = (sid, name, t["genant_grade"], -1 if math.isnan(g) else int(g))
            (planted if name in fractured else undeformed).append(row)
        for name, t in truth["discs"].items():
            got = _row_values(table, name, HEIGHTS)
            disc.append([got[h] - t[h] for h in HEIGHTS])
        for key in ("lordosis_deg", "kyphosis_deg"):
            if truth[key] is not None:
                angles.append((key, _num(spine[key]) - truth[key], ok))
    arrays = {"body": np.array(body, dtype=float), "disc": np.array(disc, dtype=float)}
    return {**arrays, "angles": angles, "planted": planted, "undeformed": undeformed,
            "right": right}  # fmt: skip


def _stat_row(label: str, err: np.ndarray, extra: str = "") -> str:
    e = np.abs(err[np.isfinite(err)])
    missing = int((~np.isfinite(err)).sum())
    if e.size == 0:
        return f"| {label} | 0 | | | | {missing} |{extra}"
    return (f"| {label} | {e.size} | {np.median(e):.2f} | {np.percentile(e, 95):.2f} | "
            f"{e.max():.2f} | {missing} |{extra}")  # fmt: skip


def print_synthetic(res: dict[str, Any], n: int, seed: int, rates: dict[str, float]) -> None:
    body, disc = res["body"], res["disc"]
    print(f"synthetic, default preset, n = {n} subjects, seed {seed}, rates {rates}, shipped "
          f"segmentation.pt; names all right in {sum(res['right'])}/{n} subjects")  # fmt: skip
    print("| measure | n measured | median abs error | 95th pct | max | not measured |")
    print("|---|---|---|---|---|---|")
    print(_stat_row("body heights (Ha, Hm, Hp), mm", body[:, :3].ravel()))
    for k, h in enumerate(("Ha", "Hm", "Hp")):
        print(_stat_row(f"body {h}, mm", body[:, k]))
    named = body[body[:, 3] == 1, :3].ravel()
    print(_stat_row("body heights, subjects named right, mm", named))
    for key in ("lordosis_deg", "kyphosis_deg"):
        err = np.array([e for k, e, _ in res["angles"] if k == key])
        ok = np.abs(err[np.isfinite(err)])
        print(_stat_row(f"{key[:-4]}, deg", err,
                        f" within 2 deg: {int((ok <= 2).sum())}/{ok.size}"))  # fmt: skip
    print(_stat_row("disc heights (Ha, Hm, Hp), mm", disc.ravel()))
    p, u = res["planted"], res["undeformed"]
    exact = sum(r[2] == r[3] for r in p)
    print(f"| planted fractures: grade exact | {len(p)} | {exact} "
          f"({100 * exact / max(len(p), 1):.0f} %) | | | {sum(r[3] < 0 for r in p)} |")  # fmt: skip
    print(f"| undeformed bodies: measured grade >= 2 | {len(u)} | {sum(r[3] >= 2 for r in u)} "
          f"| | | {sum(r[3] < 0 for r in u)} |")  # fmt: skip
    for r in p:
        print(f"  planted {r[0]} {r[1]}: truth grade {r[2]}, measured {r[3]}"
              + ("" if r[2] == r[3] else "  <- differs"))  # fmt: skip


def _markdown(summary: pd.DataFrame) -> str:
    head = "measure | kind | dataset | side | scans | paired | both measured | bias | 95 % limits"
    lines = [f"| {head} |", "|---" * 9 + "|"]
    for r in summary.itertuples():
        lim = f"{r.lower:.2f} to {r.upper:.2f}" if math.isfinite(r.lower) else ""
        bias = f"{r.bias:.2f}" if math.isfinite(r.bias) else ""
        cells = (r.measure, r.kind, r.dataset, r.side, r.scans, r.structures, r.n, bias, lim)
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def report_real(df: pd.DataFrame) -> str:
    """The Bland-Altman table, the unpaired expert structures and the naming disagreements."""
    unpaired = df[~df.paired].drop_duplicates(["subject", "level"])
    named = df[df.paired & df.kind.isin(["vertebra", "disc"]) & (df.dataset != "VB1")]
    named = named.drop_duplicates(["subject", "level"])
    wrong = named[named.model_name != named.level]
    miss = sorted(unpaired.subject + ":" + unpaired.level)
    renamed = sorted(wrong.subject + ":" + wrong.level + "->" + wrong.model_name.astype(str))
    grades = df[df.paired & (df.measure == "genant_grade")].fillna(-1)
    cross = pd.crosstab(grades.expert.astype(int), grades.model.astype(int))
    return (f"{_markdown(real_summary(df[df.paired]))}\n\nexpert structures without a model "
            f"instance (IoU <= 0.5): {len(unpaired)} {miss}\npaired structures named "
            f"otherwise by the model: {len(wrong)} of {len(named)} {renamed}\nGenant grade "
            f"(-1 = none), expert rows x model columns:\n{cross}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", nargs="?", const=str(DEFAULT_ROOT),
                    metavar="ROOT", help="the real part (default ../shared/data/real)")  # fmt: skip
    ap.add_argument("--png", type=Path, help="Bland-Altman grid PNG of the real part")
    ap.add_argument("--csv", type=Path, help="write the real part's paired rows here")
    ap.add_argument("--from-csv", type=Path, help="report (and draw) a saved --csv instead")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--fracture-rate", type=float, default=0.3)
    ap.add_argument("--narrowing-rate", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.real or args.from_csv:
        df = (
            pd.read_csv(args.from_csv) if args.from_csv else run_real(Path(args.real), args.threads)
        )
        if args.csv:
            df.to_csv(args.csv, index=False)
        print(report_real(df))
        if args.png:
            plot_real(df[df.paired], args.png)
    if args.synthetic:
        rates = {"fracture": args.fracture_rate, "disc_narrowing": args.narrowing_rate}
        recs = synthetic_records(args.synthetic, args.seed, rates, args.threads)
        print_synthetic(synthetic_errors(recs), args.synthetic, args.seed, rates)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
