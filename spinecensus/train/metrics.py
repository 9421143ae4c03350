"""Scores of a prediction against ground truth: Dice per class and level-name accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def dice_per_class(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """Dice per class id (classes absent from both give NaN), vectorised with bincount."""
    n = int(max(np.max(pred, initial=0), np.max(truth, initial=0), max(classes, default=0))) + 1
    p = np.bincount(pred.ravel(), minlength=n).astype(np.float64)
    t = np.bincount(truth.ravel(), minlength=n).astype(np.float64)
    both = np.bincount(pred.ravel()[pred.ravel() == truth.ravel()], minlength=n).astype(float)
    out = {}
    for c in classes:
        den = p[c] + t[c]
        out[int(c)] = float(2 * both[c] / den) if den > 0 else math.nan
    return out


def name_accuracy(
    pred_instances: np.ndarray,
    pred_names: dict[int, str],
    true_instances: np.ndarray,
    true_names: dict[int, str],
) -> float:
    """Fraction of ground-truth structures whose best-overlapping predicted instance carries
    the same name (instances matched by voxel overlap; no overlap = wrong)."""
    t = np.asarray(true_instances, dtype=np.int64).ravel()
    p = np.asarray(pred_instances, dtype=np.int64).ravel()
    m = (t > 0) & (p > 0)
    if not true_names:
        return math.nan
    nt, np_ = int(t.max()) + 1, int(p.max()) + 1
    overlap = np.bincount(t[m] * np_ + p[m], minlength=nt * np_).reshape(nt, np_)
    best = overlap.argmax(axis=1)
    correct = [
        overlap[tid].max() > 0 and pred_names.get(int(best[tid])) == name
        for tid, name in true_names.items()
    ]
    return float(np.mean(correct))
