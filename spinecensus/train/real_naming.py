"""Cross-validated naming of the real scans (rule ``train_real_naming_evaluate``): each
fold's segmentation splits that fold's scans and the split is named several ways - the
sacrum rule, the fold's fine-tuned labeler (``spinecensus.train.real_labeler``) with and
without the sacrum as anchor, and baseline labelers - judged per level against the names
the masks state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from spinecensus.naming.labeler import label_split, label_with_model
from spinecensus.naming.vote import vote_log_probs
from spinecensus.split.instances import SplitResult
from spinecensus.train.real_data import LoadedSample, load_manifest
from spinecensus.train.real_labeler import RealLabelerConfig
from spinecensus.train.real_report import write_cv_evaluation
from spinecensus.train.real_splits import n_folds, split_subjects
from spinecensus.train.real_subject_eval import SubjectEval, evaluate_subject

log = logging.getLogger(__name__)


def labeler_namer(
    labeler: Any,
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    semantic: np.ndarray,
    sacrum_anchor: bool = True,
) -> Callable[[SplitResult], dict[int, str] | None]:
    """Names for a split of ``semantic`` as the cohort workflow gives them on a lumbar
    field of view with a labeler: the labeler's per-voxel vote inside the segmentation's
    foreground, a majority per instance, then ``labeler.label_split`` with
    ``field_of_view="lumbar"`` (where the sacrum rule recognises the sacrum, that
    instance is S1).  ``sacrum_anchor=False``: the
    labeler's names alone (no count), to show what the anchor adds."""
    votes = labeler.predict_structure_classes(image, spacing_mm, np.asarray(semantic) > 0)

    def name(split: SplitResult) -> dict[int, str] | None:
        if not split.n_instances:
            return None
        logp = vote_log_probs(split.instances, votes, split.n_instances)
        lab = label_split(split, logp, "lumbar") if sacrum_anchor else label_with_model(split, logp)
        return lab.id_to_name or None

    return name


#: how the evaluation names a split: the sacrum rule, or a labeler's votes
SACRUM_RULE = "sacrum rule"
REAL_LABELER = "real labeler"


def train_real_naming_evaluate(
    config: dict[str, Any] | None,
    segmentation_folds: dict[int, str | os.PathLike[str]],
    labeler_folds: dict[int, str | os.PathLike[str]],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    baseline_labelers: dict[str, str | os.PathLike[str]] | None = None,
) -> Any:
    """Cross-validated naming: fold ``k``'s segmentation weights segment fold ``k``'s
    validation scans (``real_splits.split_subjects``, as
    ``real_cv.train_real_cv_evaluate``) and each split is named several ways, one ``model``
    row each: the sacrum rule (:data:`SACRUM_RULE`); fold ``k``'s fine-tuned labeler
    (:data:`REAL_LABELER`, trained without these scans) as the workflow uses it, with the
    sacrum as anchor, and alone (``", no sacrum anchor"``); every ``baseline_labelers``
    entry (e.g. the shipped synthetic labeler, trained on no real scan) with the anchor.
    Dice and detection are the same in every row; only the names differ.  Writes the tables
    of ``real_report.write_evaluation``.
    """
    import pandas as pd
    import torch

    from spinecensus.segment.weights import load_model

    cfg = RealLabelerConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    k = n_folds(cfg.val_fraction)
    missing = sorted(set(range(k)) - set(segmentation_folds) | set(range(k)) - set(labeler_folds))
    if missing:
        raise ValueError(f"naming cross-validation needs weights for folds {missing}")
    samples = load_manifest(cfg.root)
    baselines = {
        name: load_model(path, device=cfg.device, threads=cfg.threads)
        for name, path in (baseline_labelers or {}).items()
    }
    subj, lev, md = [], [], []
    for fold in range(k):
        _, val = split_subjects(samples, cfg.val_fraction, cfg.seed, fold)
        seg = load_model(segmentation_folds[fold], device=cfg.device, threads=cfg.threads)
        lab = load_model(labeler_folds[fold], device=cfg.device, threads=cfg.threads)
        md.append(
            f"- fold {fold}: segmentation `{segmentation_folds[fold]}`, labeler "
            f"`{labeler_folds[fold]}` judged {', '.join(s.key for s in val)}"
        )
        namers: dict[str, tuple[Any, bool]] = {
            SACRUM_RULE: (None, True),
            REAL_LABELER: (lab, True),
            f"{REAL_LABELER}, no sacrum anchor": (lab, False),
            **{name: (model, True) for name, model in baselines.items()},
        }
        for s in val:
            for ev in _name_subject(s.load(), seg, namers, f"fold{fold}"):
                subj.append(ev.row)
                lev.extend(ev.levels)
        log.info("naming fold %d: %d subjects", fold, len(val))
    return write_cv_evaluation(
        pd.DataFrame(subj),
        pd.DataFrame(lev),
        f"# Real MRI naming, {k}-fold cross-validation (patient-level folds, seed {cfg.seed})",
        ["Each subject is segmented and named by fold models that did not train on it:", "", *md],
        out_table,
        out_markdown,
    )


def _name_subject(
    loaded: LoadedSample, seg: Any, namers: dict[str, tuple[Any, bool]], split_side: str
) -> list[SubjectEval]:
    """Segment one scan with ``seg`` and judge the split once per namer (name -> (labeler
    or None for the sacrum rule, whether the sacrum anchors the labeler's names))."""
    image = np.asarray(loaded.scan.data, dtype=np.float32)
    pred = seg.predict_semantic(image, loaded.spacing_mm)
    evals = []
    for name, (model, anchor) in namers.items():
        namer = (
            None if model is None else labeler_namer(model, image, loaded.spacing_mm, pred, anchor)
        )
        evals.append(evaluate_subject(loaded, pred, name, split_side, namer))
    return evals


__all__ = ["REAL_LABELER", "SACRUM_RULE", "labeler_namer", "train_real_naming_evaluate"]
