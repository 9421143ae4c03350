"""Disc components and their fitted planes (steps 1-2 of the split, see ``split.instances``).

Disc connected components (``cc3d``, 26-connectivity); per component the count, first and
second moments of its voxels' coordinates **in mm** (so anisotropic spacing does not tilt
the planes), and from them one batched ``np.linalg.eigh``: the eigenvector of the smallest
eigenvalue (the disc's thinnest direction) is the plane normal.  Moments are additive, so
components merged into one disc are refitted from their summed moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinecensus.split.voxels import BoxFrame, unravel


@dataclass
class DiscPlane:
    """A fitted disc plane: centroid (mm, array axes * spacing) and unit normal pointing
    caudally; ``thickness_mm`` is 4 x the std along the normal (≈ full disc height)."""

    centroid_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    voxel_count: int
    thickness_mm: float


def disc_moments(
    labels: np.ndarray, coords: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label count, first and (uncentred) second moments via ``np.bincount``.

    ``labels`` in ``0..n-1`` (one per voxel), ``coords`` (3, M) mm.  Returns counts (n,),
    sums (n, 3), sums of outer products (n, 3, 3), all float64 (small arrays).
    """
    cnt = np.bincount(labels, minlength=n).astype(np.float64)
    s1 = np.stack([np.bincount(labels, coords[a], minlength=n) for a in range(3)], axis=1)
    s2 = np.empty((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            s2[:, a, b] = s2[:, b, a] = np.bincount(labels, coords[a] * coords[b], minlength=n)
    return cnt, s1, s2


def fit_planes(
    cnt: np.ndarray, s1: np.ndarray, s2: np.ndarray, spacing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centroids (K, 3), unit normals (K, 3), std along the normal and a flatness flag.

    Each voxel is treated as a uniform box (covariance + spacing²/12), so a disc of a
    single voxel or a single slice still has a well-defined, spacing-aware shape.  A disc
    is *flat* when its thinnest variance is clearly below the middle one (< 0.5x); for a
    non-flat blob the eigenvector is arbitrary and the caller uses the curve tangent.
    """
    c = s1 / cnt[:, None]
    cov = s2 / cnt[:, None, None] - c[:, :, None] * c[:, None, :]
    cov = cov + np.diag(spacing**2 / 12.0)[None]
    w, v = np.linalg.eigh(cov)  # ascending eigenvalues: column 0 = thinnest direction
    flat = w[:, 0] < 0.5 * w[:, 1]
    return c, v[:, :, 0], np.sqrt(np.maximum(w[:, 0], 0.0)), flat


@dataclass
class DiscComponents:
    """The disc voxels of the box, by connected component.

    Attributes:
        lin: flat indices of the disc voxels into the box.
        idx: their box indices, one array per axis.
        component: component (``0..n-1``) of each disc voxel (intp).
        mm: ``(3, M)`` float32 box-centred mm coordinates of the disc voxels.
        count, sum_mm, sum_sq_mm2: :func:`disc_moments` per component.
        cut: per component, on an array face across its own thin direction (cut by the FOV).
        keep: per component, a disc (defines a plane) rather than a stray fragment.
    """

    lin: np.ndarray
    idx: tuple[np.ndarray, ...]
    component: np.ndarray
    mm: np.ndarray
    count: np.ndarray
    sum_mm: np.ndarray
    sum_sq_mm2: np.ndarray
    cut: np.ndarray
    keep: np.ndarray


def find_disc_components(
    disc_cc: np.ndarray,
    n_cc: int,
    d_lin: np.ndarray,
    frame: BoxFrame,
    fragment_voxels: int,
    min_disc_voxels: int | None,
) -> DiscComponents:
    """Moments of the disc components (``disc_cc``: ``n_cc`` labelled components of the
    box; ``d_lin``: the disc voxels' flat box indices) and which of them are discs.

    Components below ``min_disc_voxels`` are stray fragments (default: ``max(fragment_voxels,
    10 % of the median size of the non-fragment components)``), unless cut by the FOV.
    """
    d_idx = unravel(d_lin, disc_cc.shape)
    d_lab = disc_cc.reshape(-1)[d_lin].astype(np.intp) - 1
    d_mm = frame.to_mm(d_idx)
    cnt, s1, s2 = disc_moments(d_lab, d_mm.astype(np.float64), n_cc)
    if min_disc_voxels is None:
        big = cnt[cnt >= fragment_voxels]
        min_disc_voxels = int(max(fragment_voxels, 0.1 * np.median(big))) if big.size else 0
    # a component on an array face across its own thin direction is a disc cut by the
    # field of view (its thinnest direction is then the cut), not a stray fragment: kept
    # from ``fragment_voxels // 5`` voxels on, its plane borrows a neighbour's normal.  Touching the
    # lateral faces (sagittal slices) does not count: the face is then along the disc.
    d_border = frame.on_border(d_idx)
    border_ax = np.stack(
        [np.bincount(d_lab[d_border[:, a]], minlength=n_cc) > 0 for a in range(3)], axis=1
    )
    _, own_n, _, _ = fit_planes(cnt, s1, s2, frame.spacing)
    cut = np.any(border_ax & (np.abs(own_n) > 0.5), axis=1)
    keep = (cnt >= max(min_disc_voxels, 1)) | (cut & (cnt >= max(2, fragment_voxels // 5)))
    return DiscComponents(d_lin, d_idx, d_lab, d_mm, cnt, s1, s2, cut, keep)


def group_moments(
    discs: DiscComponents, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Summed moments per disc group (``group``: group id per component, -1 = fragment):
    count (G,), sums (G, 3), sums of outer products (G, 3, 3), and whether any of the
    group's components is cut by the FOV (G,)."""
    ng = int(group.max()) + 1
    sel = group >= 0
    g_cnt = np.bincount(group[sel], discs.count[sel], minlength=ng)
    g_s1 = np.stack(
        [np.bincount(group[sel], discs.sum_mm[sel, a], minlength=ng) for a in range(3)], 1
    )
    g_s2 = np.zeros((ng, 3, 3))
    np.add.at(g_s2, group[sel], discs.sum_sq_mm2[sel])
    g_cut = np.bincount(group[sel], discs.cut[sel], minlength=ng) > 0
    return g_cnt, g_s1, g_s2, g_cut
