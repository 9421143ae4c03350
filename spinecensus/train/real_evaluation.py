"""Evaluation of the real-MRI study's models (rule ``train_real_evaluate``): each model on
the validation subjects of the patient-level split and on fresh synthetic subjects.

Per-subject judging is ``spinecensus.train.real_subject_eval``; the tables and the report are
written by ``spinecensus.train.real_report``.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.naming import sacrum
from spinecensus.split.instances import split_instances
from spinecensus.train.real_metrics import dice
from spinecensus.train.real_qc import qc_png
from spinecensus.train.real_report import summarise, write_evaluation
from spinecensus.train.real_run_config import (
    SYNTH_EVAL_OFFSET,
    RealRunConfig,
    load_real_split,
    synthetic_subject,
)
from spinecensus.train.real_subject_eval import evaluate_model

log = logging.getLogger(__name__)


def train_real_evaluate(
    config: dict[str, Any] | None,
    weights: dict[str, str | os.PathLike[str]],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    qc_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Evaluate models on the validation subjects (and fresh synthetic subjects).

    Writes ``out_table`` (Parquet: one row per subject and model, incl. synthetic rows),
    ``<out_table stem>_levels.parquet`` (one row per annotated level), ``<stem>_summary
    .parquet`` and ``out_markdown`` (per-dataset summary with misses).  Returns the summary.
    """
    import pandas as pd
    import torch

    from spinecensus.segment.weights import load_model

    cfg = RealRunConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    _train, val = load_real_split(cfg)
    subj, lev = [], []
    for name, path in weights.items():
        model = load_model(path, device=cfg.device, threads=cfg.threads)
        s_df, l_df, preds = evaluate_model(model, val, name, "validation")
        s_df = pd.concat([s_df, pd.DataFrame(synthetic_dice(model, cfg, name))])
        subj.append(s_df)
        lev.append(l_df)
        if qc_dir is not None:
            for s in val:
                qc_png(s, preds[s.meta.key], str(Path(qc_dir) / f"{name}_{s.meta.key}.png"), name)
        log.info("evaluated %s", name)
    subjects = pd.concat(subj, ignore_index=True)
    levels = pd.concat(lev, ignore_index=True)
    summary = summarise(subjects)
    header = [
        "# Real MRI evaluation (validation subjects; `synthetic` rows: fresh synthetic subjects)",
        "",
        f"Validation subjects: {', '.join(s.meta.key for s in val)}. "
        f"Config size `{cfg.size}`, seed {cfg.seed}.",
    ]
    write_evaluation(subjects, levels, summary, out_table, out_markdown, header)
    return summary


def synthetic_dice(model: Any, cfg: RealRunConfig, model_name: str) -> list[dict[str, Any]]:
    """Body and disc Dice on fresh synthetic subjects (never used in training); rows for the
    evaluation table, dataset ``synthetic``."""
    rows = []
    for i in range(cfg.n_synthetic_eval):
        sd = cfg.seed * 1_000_000 + SYNTH_EVAL_OFFSET + i
        sub = synthetic_subject(cfg, sd)
        predict = getattr(model, "predict_semantic", model.predict)
        pred = predict(np.asarray(sub.image, dtype=np.float32), sub.spacing_mm)
        sem = np.asarray(sub.semantic)
        split = split_instances(np.asarray(pred, dtype=np.uint8), sub.spacing_mm)
        anchor = sacrum.names_up_from_sacrum(split.kinds, split.voxel_counts)
        rows.append(
            {
                "model": model_name,
                "dataset": "synthetic",
                "subject": f"synthetic_{sd}",
                "split": "evaluation",
                "annotated": "vertebra+disc",
                "body_dice": dice(pred == 1, sem == 1),
                "disc_dice": dice(pred == 2, sem == 2),
                "body_dice_raw": dice(pred == 1, sem == 1),
                "disc_dice_raw": dice(pred == 2, sem == 2),
                "n_annotated": 0,
                "n_detected": 0,
                "split_valid": bool(split.valid),
                "invalid_reason": split.invalid_reason or "",
                "n_pred_vertebrae": split.n_vertebrae,
                "n_pred_discs": split.n_discs,
                "sacrum_anchor": anchor is not None,
                "levels_known": False,
                "n_named_correct": 0,
                "n_named_wrong": 0,
                "label_accuracy": math.nan,
                "misses": "",
            }
        )
    return rows


__all__ = ["synthetic_dice", "train_real_evaluate"]
