"""Evaluation of a predicted segmentation against the partial expert mask of one real scan.

Per subject (canonical order ``[slice, SI, AP]``, see ``spinecensus.io``):

* **Dice of the annotated class** — body Dice on VB* scans, disc Dice on IVD scans.  The
  masks annotate only some levels (VB2: T11-L5; the sacrum and T10 are unlabelled but are
  vertebrae for our model), so the headline Dice is *restricted* to the annotated levels
  (``real_metrics.restrict_to_annotated_levels``: predicted components touching an annotated
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
  apply; :func:`spinecensus.naming.sacrum.names_up_from_sacrum` names upward from the sacrum
  when it is detected.
  Accuracy is scored on the annotated levels of VB2 / VB3 / IVD (VB1's levels are unknown).
  Misses (undetected or misnamed levels) are listed per subject.

The rows become pandas DataFrames (``subject_table``, ``level_table``), summarised per
dataset by ``spinecensus.train.real_report``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cc3d
import numpy as np

from spinecensus.naming import sacrum
from spinecensus.split.instances import SplitResult, split_instances
from spinecensus.train.real_data import BODY, DISC, LoadedSample, RealSample
from spinecensus.train.real_metrics import (
    annotated_rows,
    dice,
    iou_matrix,
    restrict_to_annotated_levels,
)

if TYPE_CHECKING:
    import pandas as pd

    from spinecensus.segment.predict import SegmentationModel

#: IoU above which an annotated structure counts as detected by one predicted instance
DETECT_IOU = 0.5


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
    (``sacrum.names_up_from_sacrum``), what a lumbar scan gets without a labeler.
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
    inst, names, from_sacrum = _named_instances(split, pred_c, kind, namer)
    # judged where the mask judges (as the Dice): a predicted instance of an unannotated
    # neighbour's territory - the whole sacrum for VB1's lowest annotated body, S1 - does not
    # count against the level
    iou = iou_matrix(ref, np.where(annotated_rows(ref_bin), inst, 0))
    context = {"model": model_name, "dataset": meta.dataset, "subject": meta.key,
               "split": split_side}  # fmt: skip
    level_rows, misses = _judge_levels(meta, ref, iou, names, kind, context)
    n_ref = len(level_rows)
    n_det = sum(r["detected"] for r in level_rows)
    if n_ref and n_det == 0:
        plural = "vertebral bodies" if kind == "vertebra" else "discs"
        misses = [f"none of the {n_ref} annotated {plural} detected"]
    row: dict[str, Any] = {
        **context,
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
        **_naming_columns(meta, level_rows),
        "misses": "; ".join(misses),
    }
    return SubjectEval(row, level_rows)


def _named_instances(
    split: SplitResult,
    pred_c: np.ndarray,
    kind: str,
    namer: Callable[[SplitResult], dict[int, str] | None] | None,
) -> tuple[np.ndarray, dict[int, str] | None, dict[int, str] | None]:
    """The predicted instances of ``kind`` (the split's ids; connected components of the
    predicted class ``pred_c`` when nothing could be split), their names (``namer``'s, else
    the sacrum rule's) and the sacrum rule's names (None where it found no sacrum)."""
    if split.n_instances:
        inst = np.where(
            np.isin(split.instances, np.asarray(split.ids_of(kind), dtype=np.int64)),
            split.instances,
            0,
        )
        from_sacrum = sacrum.names_up_from_sacrum(split.kinds, split.voxel_counts)
        names = namer(split) if namer is not None else from_sacrum
    else:
        inst = cc3d.connected_components(pred_c.astype(np.uint8), connectivity=26)
        names = from_sacrum = None
    return inst, names, from_sacrum


def _judge_levels(
    meta: RealSample,
    ref: np.ndarray,
    iou: np.ndarray,
    names: dict[int, str] | None,
    kind: str,
    context: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per annotated level (``context`` columns first): detected by its best
    predicted instance (IoU > :data:`DETECT_IOU`), and the name that instance got; plus the
    misses (undetected, misnamed or unnamed levels)."""
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
                **context,
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
    return level_rows, misses


def _naming_columns(meta: RealSample, level_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Naming columns of a subject row, over the levels whose names are known."""
    named = [r for r in level_rows if r["name_correct"] is not None]
    return {
        "levels_known": meta.levels_known,
        "n_named_correct": sum(bool(r["name_correct"]) for r in named),
        # a wrong name (an epidemiologist's silent error) apart from no name (a visible miss)
        "n_named_wrong": sum(
            r["predicted_name"] is not None and not r["name_correct"] for r in named
        ),
        "label_accuracy": (
            sum(bool(r["name_correct"]) for r in named) / len(named) if named else math.nan
        ),
    }


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
    # the pipeline's cleaned prediction (postprocess.spine_column) where the model
    # offers it: what a user's cohort run would split and name
    predict = getattr(model, "predict_semantic", model.predict)
    for s in samples:
        pred = predict(np.asarray(s.scan.data, dtype=np.float32), s.spacing_mm)
        ev = evaluate_subject(s, pred, model_name, split_side)
        rows.append(ev.row)
        levels.extend(ev.levels)
        preds[s.meta.key] = pred
    return pd.DataFrame(rows), pd.DataFrame(levels), preds


__all__ = ["DETECT_IOU", "SubjectEval", "evaluate_model", "evaluate_subject"]
