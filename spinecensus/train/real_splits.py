"""Patient-level train / validation splits and cross-validation folds of the real scans.

Subjects are split by *patient group* (``RealSample.group``, see
``spinecensus.train.real_data``): never slices of one subject, nor two exams of one patient,
on both sides.
"""

from __future__ import annotations

import numpy as np

from spinecensus.train.real_data import RealSample


def split_subjects(
    samples: list[RealSample], val_fraction: float = 0.34, seed: int = 0, fold: int = 0
) -> tuple[list[RealSample], list[RealSample]]:
    """Subject-level (patient-group-level) train / validation split, stratified by dataset.

    Within each dataset the patient groups are shuffled with ``seed`` and cut into
    :func:`n_folds` consecutive blocks of ``max(1, round(val_fraction * n_groups))`` groups
    (the last block takes the rest; none when a dataset has a single group).  Block
    ``fold`` is the validation side, so the folds ``0 .. n_folds - 1`` together validate
    every subject exactly once (cross-validation); fold 0 is the historical split.  All
    exams of one group land on one side, so no patient contributes slices to both training
    and validation.
    """
    k = n_folds(val_fraction)
    if not 0 <= fold < k:
        raise ValueError(f"fold {fold} outside 0..{k - 1} (val_fraction {val_fraction})")
    rng = np.random.default_rng(seed)
    train: list[RealSample] = []
    val: list[RealSample] = []
    for dataset in sorted({s.dataset for s in samples}):
        groups = sorted({s.group for s in samples if s.dataset == dataset})
        order = rng.permutation(len(groups))
        n_val = 0 if len(groups) < 2 else max(1, int(round(val_fraction * len(groups))))
        block = order[fold * n_val : (fold + 1) * n_val if fold < k - 1 else len(groups)]
        val_groups = {groups[i] for i in block}
        for s in samples:
            if s.dataset == dataset:
                (val if s.group in val_groups else train).append(s)
    return train, val


def n_folds(val_fraction: float) -> int:
    """Number of cross-validation folds that a validation share ``val_fraction`` implies
    (``round(1 / val_fraction)``, at least 2): 0.34 -> 3."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    return max(2, int(round(1 / val_fraction)))


def check_split(train: list[RealSample], val: list[RealSample]) -> None:
    """Raise ``ValueError`` if a subject or a patient group is on both sides."""
    both = {s.group for s in train} & {s.group for s in val}
    if both:
        raise ValueError(f"patient groups on both sides of the split: {sorted(both)}")


__all__ = ["check_split", "n_folds", "split_subjects"]
