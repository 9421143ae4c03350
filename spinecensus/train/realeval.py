"""Evaluation of predicted segmentations against the partial expert masks of real MRI.

Per subject (canonical order ``[slice, SI, AP]``, see ``spinecensus.io``):

* **Dice of the annotated class** — body Dice on VB* scans, disc Dice on IVD scans.  The
  masks annotate only some levels (VB2: T11-L5; the sacrum and T10 are unlabelled but are
  vertebrae for our model), so the headline Dice is *restricted* to the annotated levels
  (:func:`restrict_to_annotated_levels`: predicted components touching an annotated
  structure, within the SI rows the annotation spans) (``*_dice``); the unrestricted
  value is kept as ``*_dice_raw``.  Our class 1 is the
  vertebral body only, like the VB masks, so no further restriction is needed.
* **Per-level detection** — an annotated structure is detected when one predicted instance
  of its class (from ``spinecensus.split.instances``, the pipeline's own instances; connected
  components when the prediction cannot be split) overlaps it with IoU > 0.5, the
  instances cut to the annotated rows as for the Dice.  IoU > 0.5
  implies that instance is its *own*: two merged structures cannot both reach it.
* **Split validity** — the thesis's criterion from ``split_instances`` on the prediction.
* **Level names** — small-FOV lumbar scans do not show C2, so counting from C2 does not
  apply; :func:`spinecensus.naming.labeling.names_up_from_sacrum` names upward from the sacrum
  when it is detected.
  Accuracy is scored on the annotated levels of VB2 / VB3 / IVD (VB1's levels are unknown).
  Misses (undetected or misnamed levels) are listed per subject.

Tables are pandas DataFrames (``subject_table``, ``level_table``) and a per-dataset summary
(:func:`summarise`) that :func:`markdown_table` renders.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cc3d
import numpy as np

from spinecensus.naming import labeling
from spinecensus.split.instances import SplitResult, split_instances
from spinecensus.train.realdata import BODY, DISC, LoadedSample

if TYPE_CHECKING:
    import pandas as pd

    from spinecensus.segment.model import SegmentationModel

#: IoU above which an annotated structure counts as detected by one predicted instance
DETECT_IOU = 0.5


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def restrict_to_reference(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Predicted voxels whose connected component (26-connectivity) touches ``ref``."""
    comp = cc3d.connected_components(np.asarray(pred, dtype=np.uint8), connectivity=26)
    hit = np.unique(comp[np.asarray(ref, dtype=bool) & (comp > 0)])
    return np.isin(comp, hit[hit > 0])


def annotated_rows(ref: np.ndarray) -> np.ndarray:
    """Boolean mask (shape of ``ref``, canonical ``[slice, SI, AP]``): the SI rows from the
    most cranial to the most caudal annotated voxel."""
    r = np.asarray(ref, dtype=bool)
    rows = np.nonzero(r.any(axis=(0, 2)))[0]
    band = np.zeros(r.shape, dtype=bool)
    if rows.size:
        band[:, rows[0] : rows[-1] + 1] = True
    return band


def restrict_to_annotated_levels(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Predicted voxels that can be judged against a mask that names only some levels:
    those in a connected component touching ``ref`` (:func:`restrict_to_reference`) *and*
    within the annotated levels' SI rows (:func:`annotated_rows`).

    Why both: the predicted column is one connected object, so the component rule alone
    keeps the unannotated T10 above VB2's T11 and the sacrum below L5 and counts them as
    false positives (about 0.1 of body Dice on the validation scans).  The band is the
    rows' full extent, not the centroids, so the end levels' own voxels are all judged;
    the neighbours' voxels that reach into those rows (the tilted top of S1) still count
    against the prediction.
    """
    return restrict_to_reference(pred, ref) & annotated_rows(ref)


def iou_matrix(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """IoU between every reference id (rows, ``0..max``) and predicted id (columns).

    Vectorized: pair counts from one ``np.bincount`` over ``ref * n_pred + pred``.
    """
    r = np.asarray(ref, dtype=np.int64).ravel()
    p = np.asarray(pred, dtype=np.int64).ravel()
    nr, npd = int(r.max()) + 1, int(p.max()) + 1
    inter = np.bincount(r * npd + p, minlength=nr * npd).reshape(nr, npd).astype(float)
    size_r = inter.sum(1)
    size_p = inter.sum(0)
    union = size_r[:, None] + size_p[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    iou[0, :] = 0.0
    iou[:, 0] = 0.0
    return iou


@dataclass
class SubjectEval:
    """Evaluation of one subject: a table row and its per-level rows."""

    row: dict[str, Any]
    levels: list[dict[str, Any]]


def evaluate_subject(
    sample: LoadedSample,
    pred: np.ndarray,
    model_name: str = "",
    split_side: str = "",
    namer: Callable[[SplitResult], dict[int, str] | None] | None = None,
) -> SubjectEval:
    """Compare a predicted semantic mask (0/1/2, canonical) with the sample's partial mask.

    ``namer`` names the split's instances (id -> level); default: upward from the sacrum
    (``labeling.names_up_from_sacrum``), what a lumbar scan gets without a labeler.
    """
    meta = sample.meta
    (cls,) = tuple(meta.labeled_classes)
    kind = "vertebra" if cls == BODY else "disc"
    ref = np.asarray(sample.instances)
    ref_bin = ref > 0
    pred = np.asarray(pred)
    pred_c = pred == cls
    d_raw = dice(pred_c, ref_bin)
    d_res = dice(restrict_to_annotated_levels(pred_c, ref_bin), ref_bin)
    # split_instances itself refuses hopelessly fragmented predictions quickly
    split = split_instances(np.asarray(pred, dtype=np.uint8), sample.spacing_mm)
    if split.n_instances:
        inst = np.where(
            np.isin(split.instances, np.asarray(split.ids_of(kind), dtype=np.int64)),
            split.instances,
            0,
        )
        from_sacrum = labeling.names_up_from_sacrum(split.kinds, split.voxel_counts)
        names = namer(split) if namer is not None else from_sacrum
    else:
        inst = cc3d.connected_components(pred_c.astype(np.uint8), connectivity=26)
        names = from_sacrum = None
    # judged where the mask judges (as the Dice): a predicted instance of an unannotated
    # neighbour's territory - the whole sacrum for VB1's lowest annotated body, S1 - does not
    # count against the level
    iou = iou_matrix(ref, np.where(annotated_rows(ref_bin), inst, 0))
    level_rows: list[dict[str, Any]] = []
    misses: list[str] = []
    for rid in sorted(meta.level_names):
        if rid >= iou.shape[0] or not (ref == rid).any():
            continue
        best = int(np.argmax(iou[rid])) if iou.shape[1] > 1 else 0
        best_iou = float(iou[rid, best]) if best else 0.0
        detected = best_iou > DETECT_IOU
        level = meta.level_names[rid]
        predicted = names.get(best) if (names and best) else None
        correct = bool(meta.levels_known and predicted == level) if meta.levels_known else None
        level_rows.append(
            {
                "model": model_name,
                "dataset": meta.dataset,
                "subject": meta.key,
                "split": split_side,
                "level": level,
                "kind": kind,
                "detected": bool(detected),
                "iou": best_iou,
                "predicted_name": predicted,
                "name_correct": correct,
            }
        )
        if not detected:
            misses.append(f"{level}: not detected (IoU {best_iou:.2f})")
        elif meta.levels_known and not correct:
            misses.append(f"{level}: named {predicted}" if predicted else f"{level}: not named")
    n_ref = len(level_rows)
    n_det = sum(r["detected"] for r in level_rows)
    if n_ref and n_det == 0:
        plural = "vertebral bodies" if kind == "vertebra" else "discs"
        misses = [f"none of the {n_ref} annotated {plural} detected"]
    named = [r for r in level_rows if r["name_correct"] is not None]
    row: dict[str, Any] = {
        "model": model_name,
        "dataset": meta.dataset,
        "subject": meta.key,
        "split": split_side,
        "annotated": kind,
        "body_dice": d_res if cls == BODY else math.nan,
        "body_dice_raw": d_raw if cls == BODY else math.nan,
        "disc_dice": d_res if cls == DISC else math.nan,
        "disc_dice_raw": d_raw if cls == DISC else math.nan,
        "n_annotated": n_ref,
        "n_detected": n_det,
        "detection_rate": n_det / n_ref if n_ref else math.nan,
        "split_valid": bool(split.valid),
        "invalid_reason": split.invalid_reason or "",
        "n_pred_vertebrae": split.n_vertebrae,
        "n_pred_discs": split.n_discs,
        # the sacrum rule found a sacrum (whoever named the levels)
        "sacrum_anchor": from_sacrum is not None,
        "levels_known": meta.levels_known,
        "n_named_correct": sum(bool(r["name_correct"]) for r in named),
        # a wrong name (an epidemiologist's silent error) apart from no name (a visible miss)
        "n_named_wrong": sum(
            r["predicted_name"] is not None and not r["name_correct"] for r in named
        ),
        "label_accuracy": (
            sum(bool(r["name_correct"]) for r in named) / len(named) if named else math.nan
        ),
        "misses": "; ".join(misses),
    }
    return SubjectEval(row, level_rows)


def evaluate_model(
    model: SegmentationModel,
    samples: Iterable[LoadedSample],
    model_name: str,
    split_side: str = "validation",
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Predict every sample with ``model`` (``predict_semantic``: the spine column's
    pieces, as the pipeline does) and evaluate.

    Returns ``(subject_table, level_table, predictions)`` (predictions keyed by subject, for
    QC figures).
    """
    import pandas as pd

    rows, levels, preds = [], [], {}
    # the pipeline's cleaned prediction (model.spine_column) where the model
    # offers it: what a user's cohort run would split and name
    predict = getattr(model, "predict_semantic", model.predict)
    for s in samples:
        pred = predict(np.asarray(s.scan.data, dtype=np.float32), s.spacing_mm)
        ev = evaluate_subject(s, pred, model_name, split_side)
        rows.append(ev.row)
        levels.extend(ev.levels)
        preds[s.meta.key] = pred
    return pd.DataFrame(rows), pd.DataFrame(levels), preds


#: ``dataset`` of the pooled rows :func:`summarise` adds with ``pooled=True``
POOLED = "all real"


def summarise(subjects: pd.DataFrame, pooled: bool = False) -> pd.DataFrame:
    """Per (model, dataset) summary: mean Dice, detection %, split validity %, label
    accuracy on the named levels (only subjects whose levels are known), the share of
    levels given a wrong name (the rest of the misses stay unnamed), misses.

    ``pooled``: add one row per model over every real subject (dataset :data:`POOLED`;
    synthetic rows left out): Dice means over the subjects annotated for that class,
    detection and naming pooled over levels.
    """
    import pandas as pd

    if pooled:
        real = subjects[subjects["dataset"] != "synthetic"].assign(dataset=POOLED)
        subjects = pd.concat([subjects, real], ignore_index=True)
    out = []
    for (model, dataset), g in subjects.groupby(["model", "dataset"], sort=False):
        known = g[g["levels_known"].astype(bool)]
        n_named = int(known["n_annotated"].sum())
        out.append(
            {
                "model": model,
                "dataset": dataset,
                "n_subjects": len(g),
                "body_dice": g["body_dice"].mean(),
                "disc_dice": g["disc_dice"].mean(),
                "body_dice_raw": g["body_dice_raw"].mean(),
                "disc_dice_raw": g["disc_dice_raw"].mean(),
                "detected_pct": (
                    100.0 * g["n_detected"].sum() / g["n_annotated"].sum()
                    if g["n_annotated"].sum() > 0
                    else math.nan
                ),
                "split_valid_pct": 100.0 * g["split_valid"].astype(float).mean(),
                "sacrum_anchor_pct": 100.0 * g["sacrum_anchor"].astype(float).mean(),
                "label_accuracy_pct": (
                    100.0 * known["n_named_correct"].sum() / n_named if n_named else math.nan
                ),
                # older tables lack the column: unknown, not zero
                "misnamed_pct": (
                    100.0 * known["n_named_wrong"].sum() / n_named
                    if n_named and "n_named_wrong" in known
                    else math.nan
                ),
                # the pooled row repeats no miss: each is listed under its dataset
                "misses": ""
                if dataset == POOLED
                else " | ".join(f"{r.subject}: {r.misses}" for r in g.itertuples() if r.misses),
            }
        )
    return pd.DataFrame(out)


def markdown_table(summary: pd.DataFrame, with_misses: bool = False) -> str:
    """Render :func:`summarise` output as a markdown table (NaN shown as ``-``)."""

    def fmt(v: Any, pct: bool = False) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:.1f}" if pct else f"{v:.3f}"
        return str(v)

    cols = [
        ("model", "model", False),
        ("dataset", "dataset", False),
        ("n_subjects", "n", False),
        ("body_dice", "body Dice", False),
        ("disc_dice", "disc Dice", False),
        ("body_dice_raw", "body Dice (unrestricted)", False),
        ("disc_dice_raw", "disc Dice (unrestricted)", False),
        ("detected_pct", "detected %", True),
        ("split_valid_pct", "split valid %", True),
        ("sacrum_anchor_pct", "sacrum found %", True),
        ("label_accuracy_pct", "levels named correctly %", True),
        ("misnamed_pct", "levels named wrongly %", True),
    ]
    if with_misses:
        cols.append(("misses", "misses", False))
    lines = [
        "| " + " | ".join(c[1] for c in cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    for r in summary.to_dict("records"):
        lines.append("| " + " | ".join(fmt(r[k], pct) for k, _, pct in cols) + " |")
    return "\n".join(lines)


def qc_png(sample: LoadedSample, pred: np.ndarray, path: str, title: str = "") -> None:
    """Mid-sagittal slice: image, expert mask (contour) and prediction (colour) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spinecensus.io import atomic_path

    img = np.asarray(sample.scan.data, dtype=np.float32)
    fg = sample.instances.reshape(len(img), -1).any(1)
    k = int(np.median(np.nonzero(fg)[0])) if fg.any() else len(img) // 2
    vmax = float(np.percentile(img, 99.5))
    fig, axs = plt.subplots(1, 2, figsize=(8, 4.5))
    for ax in axs:
        ax.imshow(img[k], cmap="gray", vmin=0, vmax=vmax)
        ax.axis("off")
    axs[0].contour(sample.instances[k] > 0, levels=[0.5], colors="yellow", linewidths=0.8)
    axs[0].set_title(f"{sample.meta.key} expert ({next(iter(sample.meta.labeled_classes))})")
    axs[1].imshow(np.ma.masked_equal(pred[k], 0), cmap="bwr", vmin=1, vmax=2, alpha=0.45)
    axs[1].contour(sample.instances[k] > 0, levels=[0.5], colors="yellow", linewidths=0.6)
    axs[1].set_title(title or "prediction (blue body, red disc)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


__all__ = [
    "POOLED",
    "dice",
    "evaluate_model",
    "evaluate_subject",
    "iou_matrix",
    "markdown_table",
    "qc_png",
    "restrict_to_reference",
    "summarise",
]
