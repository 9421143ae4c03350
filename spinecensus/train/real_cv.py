"""Cross-validated evaluation of the per-fold real-MRI models (rule
``train_real_cv_evaluate``): every real subject judged by the fold model that never trained
on it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from spinecensus.train.real_data import load_manifest
from spinecensus.train.real_report import write_cv_evaluation
from spinecensus.train.real_run_config import RealRunConfig
from spinecensus.train.real_splits import check_split, n_folds, split_subjects
from spinecensus.train.real_subject_eval import evaluate_model

log = logging.getLogger(__name__)


def train_real_cv_evaluate(
    config: dict[str, Any] | None,
    fold_weights: dict[int, str | os.PathLike[str]],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    baseline: dict[str, str | os.PathLike[str]] | None = None,
    model_name: str = "cross_validated",
) -> Any:
    """Cross-validated evaluation: fold ``f``'s weights predict fold ``f``'s validation
    subjects (``real_splits.split_subjects(..., fold=f)``), so every real subject is judged by a
    model that never trained on it.

    ``fold_weights`` must name every fold ``0 .. n_folds - 1``.  ``baseline`` models (e.g.
    the synthetic-only weights, which trained on no real scan) are evaluated on every subject
    beside them.  Writes ``out_table`` (Parquet, one row per subject and model; ``split`` =
    ``fold<k>`` or ``all``), ``<stem>_levels.parquet``, ``<stem>_summary.parquet`` (per
    dataset and pooled over all real subjects) and ``out_markdown``.  Returns the summary.
    """
    import pandas as pd
    import torch

    from spinecensus.segment.weights import load_model

    cfg = RealRunConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    k = n_folds(cfg.val_fraction)
    missing = sorted(set(range(k)) - set(fold_weights))
    if missing:
        raise ValueError(f"cross-validation needs weights for folds {missing} (of 0..{k - 1})")
    samples = load_manifest(cfg.root)
    # each scan read once: the folds share them out, the baselines judge them all
    loaded = {s.key: s.load() for s in samples}
    subj, lev, folds_md = [], [], []
    for fold in range(k):
        train, val = split_subjects(samples, cfg.val_fraction, cfg.seed, fold)
        check_split(train, val)
        model = load_model(fold_weights[fold], device=cfg.device, threads=cfg.threads)
        s_df, l_df, _ = evaluate_model(
            model, [loaded[s.key] for s in val], model_name, f"fold{fold}"
        )
        subj.append(s_df)
        lev.append(l_df)
        folds_md.append(f"- fold {fold}: `{fold_weights[fold]}` judged "
                        f"{', '.join(s.key for s in val)}")  # fmt: skip
        log.info("evaluated fold %d (%d subjects)", fold, len(val))
    for name, path in (baseline or {}).items():
        model = load_model(path, device=cfg.device, threads=cfg.threads)
        s_df, l_df, _ = evaluate_model(model, list(loaded.values()), name, "all")
        subj.insert(0, s_df)
        lev.insert(0, l_df)
        log.info("evaluated baseline %s", name)
    return write_cv_evaluation(
        pd.concat(subj, ignore_index=True),
        pd.concat(lev, ignore_index=True),
        f"# Real MRI, {k}-fold cross-validation (patient-level folds, seed {cfg.seed})",
        ["Each subject is judged by the fold model that did not train on it:", "", *folds_md],
        out_table,
        out_markdown,
    )


__all__ = ["train_real_cv_evaluate"]
