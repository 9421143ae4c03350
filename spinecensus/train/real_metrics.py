"""Overlap measures of a predicted mask against a partial expert mask of real MRI.

The masks annotate only some levels (VB2: T11-L5; the sacrum and T10 are unlabelled but are
vertebrae for our model), so a prediction is judged only where the mask judges it
(:func:`restrict_to_annotated_levels`).  Canonical order ``[slice, SI, AP]``
(``spinecensus.io``).
"""

from __future__ import annotations

import cc3d
import numpy as np


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


__all__ = [
    "annotated_rows",
    "dice",
    "iou_matrix",
    "restrict_to_annotated_levels",
    "restrict_to_reference",
]
