"""Segmentation Dice per image contrast on synthetic subjects rendered in the named
appearances of :mod:`spinecensus.synthetic.appearance` (issue 20's "synthetic test sets in
named contrasts"): does a model read shape, or one contrast?

Every contrast renders the *same* subjects (same seeds, same anatomy and label map), so the
rows differ only in appearance.  The ``default`` row is the demo's fixed T2 rendering; ``t2``,
``t1``, ``water``, ``fat`` and ``inverted`` are rendered from the tissue label map alone.
All figures are **synthetic**.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from spinecensus.train.metrics import dice_per_class

#: the contrasts judged, in table order (``default`` = the demo's rendering)
NAMED_CONTRASTS: tuple[str, ...] = ("default", "t2", "t1", "water", "fat", "inverted")
#: first subject seed of the contrast test set; disjoint from every training range
#: (``train.subjects``: 0-899,999 + 900,000 evaluation; real study 700,000 / 800,000;
#: ``benchmarks/seg_thin_discs.py`` 800,000-800,029 / 900,000-900,019)
EVAL_SEED0 = 970_000


def contrast_dice(
    weights: str | os.PathLike[str],
    contrasts: Sequence[str] = NAMED_CONTRASTS,
    n_subjects: int = 3,
    seed0: int = EVAL_SEED0,
    preset: str = "default",
    precision: str = "fp32",
) -> pd.DataFrame:
    """Vertebral-body and disc Dice of ``weights`` on ``n_subjects`` synthetic subjects
    (seeds ``seed0 ..``, ``preset``) rendered in each of ``contrasts``.

    Returns one row per (contrast, seed): ``contrast``, ``seed``, ``dice_vertebra``,
    ``dice_disc`` (Dice over the whole volume, canonical voxel order; NaN where a class is
    absent from both prediction and truth).
    """
    from spinecensus import synthetic
    from spinecensus.segment.weights import load_model

    model = load_model(weights, precision=precision)
    base = synthetic.SyntheticConfig.preset(preset)
    rows = []
    for contrast in contrasts:
        cfg = replace(base, appearance=contrast)
        for seed in range(seed0, seed0 + n_subjects):
            sub = synthetic.generate_subject(seed, config=cfg)
            pred = model.predict_semantic(sub.image, sub.spacing_mm)
            dice = dice_per_class(pred, np.asarray(sub.semantic), [1, 2])
            rows.append(
                {"contrast": contrast, "seed": seed, "dice_vertebra": dice[1], "dice_disc": dice[2]}
            )
    return pd.DataFrame(rows)


def contrast_summary(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Mean and minimum Dice per contrast (rows in :data:`NAMED_CONTRASTS` order)."""
    order = {c: i for i, c in enumerate(NAMED_CONTRASTS)}
    g = per_subject.groupby("contrast", sort=False)
    out = pd.DataFrame({
        "n": g.size(),
        "dice_vertebra_mean": g["dice_vertebra"].mean(),
        "dice_vertebra_min": g["dice_vertebra"].min(),
        "dice_disc_mean": g["dice_disc"].mean(),
        "dice_disc_min": g["dice_disc"].min(),
    })  # fmt: skip
    return out.sort_index(key=lambda idx: idx.map(lambda c: order.get(c, len(order))))


__all__ = ["EVAL_SEED0", "NAMED_CONTRASTS", "contrast_dice", "contrast_summary"]
