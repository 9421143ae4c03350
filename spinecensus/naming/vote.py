"""The labeler's vote as per-instance log-probabilities over the 49 union names
(``labels.all_names()``), and the map from a schema name or a labeler's own classes onto
those union columns.

The lumbosacral discs of the normal / sacralization variants (``L5-S1``, ``L4-S1``) are no
column of the union: they are learned and voted as its ``L6-S1`` column ("the disc above
the sacrum", :data:`COLUMN_ALIASES`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinecensus.anatomy import labels

#: schema names that are no column of the 49-name union (``labels.all_names()``): the
#: lumbosacral disc of the normal / sacralization variants.  The labeler is trained with
#: every lumbosacral disc in the union's ``L6-S1`` column ("the disc above the sacrum",
#: ``union_column``), so that column scores them; with several columns listed the
#: score would be their log-sum-exp (probabilities add).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "L5-S1": ("L6-S1",),
    "L4-S1": ("L6-S1",),
}


def union_column(name: str) -> str:
    """The union column (``labels.all_names()``) a schema name is learned and voted as:
    the name itself, or for the lumbosacral discs absent from the union its
    :data:`COLUMN_ALIASES` column (``"L6-S1"``, "the disc above the sacrum")."""
    return COLUMN_ALIASES.get(name, (name,))[0]


def vote_log_probs(
    instances: np.ndarray, class_map: np.ndarray, n_instances: int | None = None, alpha: float = 1.0
) -> np.ndarray:
    """Per-instance log-probabilities from a labeler's per-voxel vote (majority labeling).

    Args:
        instances: instance ids (0 = background), any shape.
        class_map: same shape; the labeler's per-voxel structure class, ``j + 1`` =
            ``labels.all_names()[j]`` (0 = no vote).
        n_instances: number of rows (default: the largest id).
        alpha: additive (Laplace) smoothing, so a name no voxel voted for is unlikely, not
            impossible, and the consistent-sequence DP can still choose it.

    Returns:
        ``(n_instances, 49)`` float64, row ``i`` = instance ``i + 1``: ``log((votes + alpha) /
        (total + 49 alpha))``; an instance without votes gets the uniform distribution.
        Vectorised with one ``bincount``.
    """
    inst = np.asarray(instances).ravel().astype(np.int64)
    cls = np.asarray(class_map).ravel().astype(np.int64)
    if inst.shape != cls.shape:
        raise ValueError(f"instances and class_map differ in size: {inst.size} vs {cls.size}")
    c = len(labels.all_names())
    n = int(inst.max(initial=0)) if n_instances is None else int(n_instances)
    keep = (inst > 0) & (inst <= n) & (cls > 0) & (cls <= c)
    votes = (
        np.bincount((inst[keep] - 1) * c + (cls[keep] - 1), minlength=n * c)
        .reshape(n, c)
        .astype(float)
    )
    return np.log((votes + alpha) / (votes.sum(axis=1, keepdims=True) + alpha * c))


#: log-probability of a union column the labeler has no channel for (a thesis 45- or
#: 47-class model has no L6, the 45-class one no L5 either): finite, so sums and ``exp`` in
#: the sequence search stay defined, and low enough that no sequence through it can win
ABSENT_COLUMN_LOG_PROB = -1.0e4


def union_indices(classes: Sequence[str]) -> np.ndarray:
    """Column of ``labels.all_names()`` that each structure class is learned and voted as
    (:func:`union_column`), -1 for a name outside the schema; int64, one per class."""
    column = {n: j for j, n in enumerate(labels.all_names())}
    return np.array([column.get(union_column(n), -1) for n in classes], dtype=np.int64)


def to_union_columns(log_probs: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Per-instance log-probabilities over a labeler's own structure classes, as the 49
    union columns :func:`consistent_sequence` reads.

    ``classes`` names the columns of ``log_probs`` (the model's classes without the
    background).  The union labeler passes through unchanged.  A thesis 45/47/49-class
    model's names map through :func:`union_column` (its ``L5-S1`` or ``L4-S1`` disc onto the
    union's ``L6-S1``, channels landing on one column add up), and columns it has no
    channel for get :data:`ABSENT_COLUMN_LOG_PROB`.

    Raises:
        ValueError: the widths differ, or no class is a structure of the schema (e.g. the
            ``class<k>`` placeholders of an ONNX file of unknown layout).
    """
    union = list(labels.all_names())
    lp = np.asarray(log_probs, dtype=float)
    names = list(classes)
    if lp.ndim != 2 or lp.shape[1] != len(names):
        raise ValueError(f"log_probs of shape {lp.shape} do not match {len(names)} classes")
    if names == union:
        return lp
    target = union_indices(names)
    if not (target >= 0).any():
        raise ValueError(f"no labeler class names a structure of the schema: {names[:3]}...")
    out = np.full((lp.shape[0], len(union)), ABSENT_COLUMN_LOG_PROB)
    for k in np.flatnonzero(target >= 0):  # over <= 49 classes, not voxels
        out[:, target[k]] = np.logaddexp(out[:, target[k]], lp[:, k])
    return out
