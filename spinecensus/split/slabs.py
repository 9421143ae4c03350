"""Assigning vertebra voxels to the slabs between consecutive disc planes (steps 4-5 of the
split, see ``split.instances``).

Slab s lies between disc s-1 and disc s (slab 0 above the first disc, slab K below the
last).  A voxel is judged only against its *neighbouring* planes: the nearest disc
centroid ``j`` says which two slabs are candidates and the sign of plane ``j`` picks one
(then one check against the other neighbouring plane).  A far, tilted plane (a cervical
disc in a strongly bent spine) therefore never cuts lumbar voxels.  An inner slab with
(almost) no vertebra voxels means its two discs are pieces of one; tiny end slabs are
stray voxels unless they are a vertebra cut by the FOV.
"""

from __future__ import annotations

import numpy as np

from spinecensus.split.ordering import OrderedPlanes

#: an inner slab (between two discs) holding under this fraction of the median slab's
#: vertebra voxels is no vertebra: the two discs are pieces of one (a real scan's model
#: output splits a disc around a sliver of a few hundred voxels).  The smallest true
#: vertebra, C3, holds about a third of the median one.
MIN_INNER_SLAB_FRACTION = 0.1

#: rows of the matrix product are processed in chunks to bound peak memory (voxels)
_CHUNK = 1 << 18


def assign_slabs(
    v_mm: np.ndarray, c: np.ndarray, n: np.ndarray, offs: np.ndarray
) -> tuple[np.ndarray, int]:
    """Slab index (0..K) of each vertebra voxel (``v_mm``: (3, M) mm) for ordered discs.

    Plane j is ``{x : x . n_j = offs_j}`` (``offs = c . n`` unless shifted).
    Slab s lies between disc s-1 and disc s (slab 0 above the first disc, slab K below
    the last).  One matrix product per chunk, ``[c | n]^T @ x``, gives every voxel's
    (shifted) squared distance to every disc centroid and its signed distance to every
    disc plane: both the nearest centroid and the plane sides come from it.  The
    (2K, M) layout keeps the per-disc rows contiguous (fast argmax over discs, cheap
    gathers).  Returns the slabs and the number of voxels still on the wrong side of a
    neighbouring plane after one correction step.
    """
    k = len(c)
    wt = np.concatenate([c, n], axis=0).astype(np.float32)  # (2K, 3)
    c2h = (0.5 * (c.astype(np.float32) ** 2).sum(1))[:, None]
    offs = offs.astype(np.float32)
    m_all = v_mm.shape[1]
    out = np.empty(m_all, dtype=np.int32)
    bad = 0
    for lo in range(0, m_all, _CHUNK):
        x = v_mm[:, lo : lo + _CHUNK]
        m = x.shape[1]
        p = wt @ x  # (2K, m): the one product for centroid distances and plane sides
        # nearest centroid: argmin |x - c|^2 = argmax (x.c - |c|^2 / 2), in place
        near_score = p[:k]
        near_score -= c2h
        near = np.argmax(near_score, axis=0)
        # signed distance (mm, + = caudal) of each voxel to plane j, read from the product
        flat = p.reshape(-1)
        ar = np.arange(m, dtype=np.intp) + k * m

        def sd(j: np.ndarray, flat: np.ndarray = flat, ar: np.ndarray = ar, m: int = m):
            return flat[j * m + ar] - offs[j]

        s = near + (sd(near) >= 0)
        # one check against the other neighbouring plane (voxel beyond it -> move over)
        lower, upper = np.minimum(s, k - 1), np.maximum(s - 1, 0)
        s = s + ((s < k) & (sd(lower) >= 0)) - ((s > 0) & (sd(upper) < 0))
        lower, upper = np.minimum(s, k - 1), np.maximum(s - 1, 0)
        bad += int(np.count_nonzero(((s < k) & (sd(lower) >= 0)) | ((s > 0) & (sd(upper) < 0))))
        out[lo : lo + m] = s
    return out, bad


def slabs_of(v_mm: np.ndarray, planes: OrderedPlanes) -> tuple[np.ndarray, int, np.ndarray]:
    """Slab of each vertebra voxel, the crossing-voxel count (:func:`assign_slabs`) and the
    voxels per slab ``(K + 1,)``; no vertebra voxels give empty slabs."""
    k = len(planes)
    if v_mm.shape[1]:
        slab, n_bad = assign_slabs(v_mm, planes.centroid, planes.normal, planes.offset)
        slab_cnt = np.bincount(slab, minlength=k + 1)
    else:
        slab, n_bad = np.zeros(0, dtype=np.int32), 0
        slab_cnt = np.zeros(k + 1, dtype=np.int64)
    return slab, n_bad, slab_cnt


def first_empty_inner_slab(slab_cnt: np.ndarray, fragment_voxels: int) -> int | None:
    """The first inner slab ``s`` (1..K-1, between disc s-1 and disc s) holding (almost) no
    vertebra voxels (see :data:`MIN_INNER_SLAB_FRACTION`), else None."""
    k = len(slab_cnt) - 1
    inner = slab_cnt[1:k]  # slab s (1..K-1) between disc s-1 and disc s
    tiny = inner < max(fragment_voxels, MIN_INNER_SLAB_FRACTION * np.median(slab_cnt[slab_cnt > 0]))
    if not np.any(tiny):
        return None
    return int(np.flatnonzero(tiny)[0]) + 1


def absorb_stray_end_slabs(
    slab: np.ndarray,
    slab_cnt: np.ndarray,
    v_mm: np.ndarray,
    v_border: np.ndarray,
    planes: OrderedPlanes,
    fragment_voxels: int,
) -> np.ndarray:
    """Move stray end-slab voxels into the neighbouring vertebra (``slab`` in place);
    returns the new voxels per slab.

    Tiny end slabs (under ``fragment_voxels``: stray voxels above the first / below the
    last disc) are no vertebra, unless they lie on the array border (``v_border``) *and*
    reach beyond the end disc's far surface (half its thickness past the plane): then they
    are a vertebra cut by the FOV.  Voxels just past the plane are the near-side vertebra
    leaking across a slightly mis-tilted plane (e.g. of a disc itself cut by the FOV).
    """
    k = len(planes)
    c, n, sd_n = planes.centroid, planes.normal, planes.sd_normal
    for end, into, disc in ((0, 1, 0), (k, k - 1, k - 1)):
        if not 0 < slab_cnt[end] < fragment_voxels:
            continue
        sel_end = slab == end
        depth = np.abs(n[disc] @ v_mm[:, sel_end] - c[disc] @ n[disc]).max()
        real = v_border[sel_end].any() and depth > 2.0 * sd_n[disc]
        if not real:
            slab[sel_end] = into
    return np.bincount(slab, minlength=k + 1)
