"""Semantic mask -> ordered vertebra and disc instances, by planes through the discs.

This is the thesis's splitting method (Gliwa 2023), written fully vectorized:

1. Disc connected components (``cc3d``, 26-connectivity).  Components below
   ``min_disc_voxels`` are stray fragments (real masks carry 1-7 voxel bits): they do not
   define planes; their voxels join the nearest kept disc so that the instances still
   cover the mask.
2. Per disc, centroid and second moments from ``np.bincount`` over the disc voxels'
   coordinates **in mm** (so anisotropic spacing does not tilt the planes), then one
   batched ``np.linalg.eigh``: the eigenvector of the smallest eigenvalue (the disc's
   thinnest direction) is the plane normal.
3. Order along the spine from a curve through the disc centroids, not from an array axis:
   the longest path (diameter) of the centroids' minimum spanning tree is the spine
   curve; every centroid is sorted by its arc-length position on it.  The curve end
   lying further along ``cranial_direction`` is the top.  Normals are flipped to point
   caudally along the local curve tangent.  Nothing depends on which array axis is which,
   so flips/permutations of the axes give the same instances (the caller passes the
   cranial direction in the array's own axes; canonical order: ``(0, -1, 0)``).
4. Vertebra voxels (only their ``np.nonzero`` coordinates, never full grids) are
   assigned to slabs with ONE matrix product against ``[centroids | normals]``: it yields
   both the squared distances to every disc centroid and the signed distances to every
   disc plane.  A voxel is judged only against its *neighbouring* planes: the nearest disc
   centroid ``j`` says which two slabs are candidates and the sign of plane ``j`` picks
   one (then one check against the other neighbouring plane).  A far, tilted plane (a
   cervical disc in a strongly bent spine) therefore never cuts lumbar voxels.
5. Slabs with (almost) no vertebra voxels between two discs mean one disc was cut into
   two components: those are merged (moments are additive) and the planes refitted.
6. Instance ids run cranio-caudally, vertebrae and discs interleaved as they occur.

Field-of-view edges (small-FOV scans, crops): a disc component on an array face across
its own thin direction and under half its neighbour's size is a disc *cut* by the FOV.
It is kept (from ``fragment_voxels // 5`` voxels), borrows the neighbouring disc's normal
(its own thinnest direction is the cut) and splits at its outer edge, so only voxels
beyond the visible disc form the cut vertebra there.  End slabs under ``fragment_voxels``
voxels are stray voxels and join the neighbouring vertebra, unless they lie on the array
border beyond the end disc's far surface (a vertebra cut by the FOV).  The end
instances' piece count is not judged when they touch the border.  On synthetic crops
(``crop_fov``, V = 5-15) every whole vertebra is recovered exactly; in a few percent of
crops a sliver of a few voxels that the ground truth keeps as its own instance is merged
into its neighbour.

Validity (the thesis's criterion, reported, never raised): every vertebra instance is one
connected piece (pieces under ``fragment_voxels`` ignored) lying between two consecutive
discs, and no disc touches two non-adjacent vertebrae.  A mask without discs is
"unsplittable" (``valid=False``, no instances) rather than an exception.

Axes: the input is any 3-D array with ``spacing_mm`` in the same axis order; the package
calls it with canonical order (slice, superior->inferior, anterior->posterior).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np

from spinecensus.io import InputError

#: cranial direction in canonical array axes: axis 1 runs superior -> inferior
CANONICAL_CRANIAL: tuple[float, float, float] = (0.0, -1.0, 0.0)
UNSPLITTABLE_NO_DISCS = "unsplittable: no intervertebral discs found"
UNSPLITTABLE_EMPTY = "unsplittable: empty mask (no vertebra or disc voxels)"
#: a spine has at most 24 discs (C2-C3 .. L6-S1); far more disc components means the mask is
#: not a spine segmentation (e.g. a failed model on a non-spine image).  Refusing early also
#: bounds the work: the merge loop below refits planes once per merge.
MAX_DISC_COMPONENTS = 48

#: an inner slab (between two discs) holding under this fraction of the median slab's
#: vertebra voxels is no vertebra: the two discs are pieces of one (a real scan's model
#: output splits a disc around a sliver of a few hundred voxels).  The smallest true
#: vertebra, C3, holds about a third of the median one.
MIN_INNER_SLAB_FRACTION = 0.1

#: rows of the matrix product are processed in chunks to bound peak memory (voxels)
_CHUNK = 1 << 18


@dataclass
class DiscPlane:
    """A fitted disc plane: centroid (mm, array axes * spacing) and unit normal pointing
    caudally; ``thickness_mm`` is 4 x the std along the normal (≈ full disc height)."""

    centroid_mm: tuple[float, float, float]
    normal: tuple[float, float, float]
    voxel_count: int
    thickness_mm: float


@dataclass
class SplitResult:
    """Outcome of :func:`split_instances`.

    Attributes:
        instances: uint16 array shaped like the input; ids ``1..N`` cranio-caudal,
            vertebrae and discs interleaved as they occur, 0 background.
        kinds: ``kinds[id - 1]`` is ``"vertebra"`` or ``"disc"``.
        valid: the thesis's validity (see module docstring).
        invalid_reason: why not valid (several reasons joined by ``"; "``), else None.
        voxel_counts: ``voxel_counts[id - 1]`` voxels per instance.
        centroids_mm: ``(N, 3)`` centroid per instance in mm, array axes * spacing
            (voxel index times spacing, no origin), same axis order as the input.
        disc_planes: one :class:`DiscPlane` per disc instance, cranial first.
        spacing_mm: the spacing used.
        n_fragment_voxels: voxels of stray disc fragments merged into the nearest disc.
        n_crossing_voxels: vertebra voxels lying on the wrong side of a neighbouring plane
            even after the nearest-disc rule (a sign of a bad mask).
    """

    instances: np.ndarray
    kinds: list[str]
    valid: bool
    invalid_reason: str | None
    voxel_counts: list[int] = field(default_factory=list)
    centroids_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    disc_planes: list[DiscPlane] = field(default_factory=list)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    n_fragment_voxels: int = 0
    n_crossing_voxels: int = 0

    @property
    def n_instances(self) -> int:
        return len(self.kinds)

    @property
    def n_vertebrae(self) -> int:
        return sum(k == "vertebra" for k in self.kinds)

    @property
    def n_discs(self) -> int:
        return sum(k == "disc" for k in self.kinds)

    def ids_of(self, kind: str) -> list[int]:
        """Instance ids (1-based) of one kind, cranial first."""
        return [i + 1 for i, k in enumerate(self.kinds) if k == kind]


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Bounding box of the non-zero voxels (three 1-D reductions, no full-grid index)."""
    out = []
    for ax in range(3):
        other = tuple(a for a in range(3) if a != ax)
        hit = np.flatnonzero(np.any(mask, axis=other))
        if hit.size == 0:
            return None
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return out[0], out[1], out[2]


def _moments(
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


def _planes(
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


def _order_along_curve(c: np.ndarray, cranial: np.ndarray) -> np.ndarray:
    """Cranio-caudal order of points ``c`` (K, 3, mm) along the curve they lie on.

    The curve is the diameter path of the points' Euclidean minimum spanning tree (robust
    to curvature: no single axis is assumed).  Points off that path are placed by their
    projection onto the nearest path segment.  The end further along ``cranial`` first.
    """
    k = len(c)
    if k == 1:
        return np.zeros(1, dtype=np.intp)
    from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path

    d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    # csgraph treats 0 as "no edge": coincident centroids still need an edge
    mst = minimum_spanning_tree(d + 1e-6 * (1 - np.eye(k)))
    dist, pred = shortest_path(mst, directed=False, return_predecessors=True)
    a = int(np.argmax(dist[0]))
    b = int(np.argmax(dist[a]))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[a, path[-1]]))
    path_idx = np.asarray(path[::-1], dtype=np.intp)  # a ... b
    pts = c[path_idx]
    if len(pts) == 1:  # all points coincide
        t = c @ cranial * -1.0
    else:
        seg0, seg1 = pts[:-1], pts[1:]
        seg = seg1 - seg0
        seg_len = np.linalg.norm(seg, axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg_len)])
        rel = c[:, None, :] - seg0[None]  # (K, S, 3)
        u = np.clip((rel * seg[None]).sum(-1) / np.maximum(seg_len**2, 1e-12), 0.0, 1.0)
        foot = seg0[None] + u[..., None] * seg[None]
        err = ((c[:, None, :] - foot) ** 2).sum(-1)
        best = np.argmin(err, axis=1)
        t = cum[best] + u[np.arange(k), best] * seg_len[best]
        t[path_idx] = cum  # path points exactly at their own arc length
    order = np.argsort(t, kind="stable")
    if (c[order[-1]] - c[order[0]]) @ cranial > 0:  # last is more cranial: reverse
        order = order[::-1]
    return order


def _orient_normals(
    c: np.ndarray, n: np.ndarray, trusted: np.ndarray, cranial: np.ndarray
) -> np.ndarray:
    """Flip normals (ordered discs) to point caudally along the local curve tangent.

    Untrusted discs (not flat, or truncated by the field of view, whose thinnest
    direction is then the cut rather than the disc) take the normal of the nearest
    trusted disc in the order, or the curve tangent when there is none.
    """
    k = len(c)
    if k == 1:
        tangent = -cranial[None, :]
    else:
        nxt = np.concatenate([c[1:], c[-1:]])
        prv = np.concatenate([c[:1], c[:-1]])
        tangent = nxt - prv
    tangent = tangent / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    sign = np.sign((n * tangent).sum(1))
    sign[sign == 0] = 1.0
    n = n * sign[:, None]
    good = np.flatnonzero(trusted)
    if good.size == 0:
        return tangent
    bad = np.flatnonzero(~trusted)
    if bad.size:
        nearest = good[np.argmin(np.abs(bad[:, None] - good[None, :]), axis=1)]
        n = n.copy()
        n[bad] = n[nearest]
    return n


def _assign_slabs(
    v_mm: np.ndarray, c: np.ndarray, n: np.ndarray, offs: np.ndarray
) -> tuple[np.ndarray, int]:
    """Slab index (0..K) of each vertebra voxel (``v_mm``: (3, M) mm) for ordered discs.

    Plane j is ``{x : x . n_j = offs_j}`` (``offs = c . n`` unless shifted).
    Slab s lies between disc s-1 and disc s (slab 0 above the first disc, slab K below
    the last).  One matrix product per chunk, ``[c | n]^T @ x``, gives every voxel's
    (shifted) squared distance to every disc centroid and its signed distance to every
    plane; the nearest centroid picks the two neighbouring planes that decide.  The
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


def _cc(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """``cc3d.connected_components`` (26-connectivity) with its ``N``.

    cc3d 3.2x raises "maximum length exception" for line-shaped inputs (two axes of
    length 1); tiny arrays are padded by one background voxel and cropped back (cost
    nil, and the labels do not change).
    """
    if labels.size < 4096:
        padded = np.pad(labels, 1)
        out, n = cc3d.connected_components(padded, connectivity=26, return_N=True)
        return np.ascontiguousarray(out[1:-1, 1:-1, 1:-1]), int(n)
    out, n = cc3d.connected_components(labels, connectivity=26, return_N=True)
    return out, int(n)


def _unravel(lin: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """``np.unravel_index`` for a C-ordered 3-D shape, with plain integer division."""
    i0, rest = np.divmod(lin, shape[1] * shape[2])
    i1, i2 = np.divmod(rest, shape[2])
    return i0, i1, i2


def _empty_result(shape: tuple[int, ...], spacing: tuple[float, float, float], reason: str):
    return SplitResult(
        instances=np.zeros(shape, dtype=np.uint16),
        kinds=[],
        valid=False,
        invalid_reason=reason,
        spacing_mm=spacing,
    )


def split_instances(
    semantic: np.ndarray,
    spacing_mm: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0),
    min_disc_voxels: int | None = None,
    *,
    cranial_direction: tuple[float, float, float] | np.ndarray = CANONICAL_CRANIAL,
    fragment_voxels: int = 10,
    min_contact_faces: int = 4,
) -> SplitResult:
    """Split a semantic mask (0 bg, 1 vertebral body, 2 disc) into ordered instances.

    Args:
        semantic: 3-D integer array; canonical order in the package (any order works if
            ``spacing_mm`` and ``cranial_direction`` use the same axes).
        spacing_mm: voxel size in mm per array axis.
        min_disc_voxels: disc components below this are fragments, not discs.  Default:
            ``max(fragment_voxels, 10 % of the median size of the non-fragment disc
            components)``.
        cranial_direction: vector, in array axes, pointing towards the head.
        fragment_voxels: pieces below this many voxels are stray fragments (ignored by the
            validity check and never an instance of their own).
        min_contact_faces: a disc must share at least this many voxel faces with a
            vertebra to count as touching it (validity check).

    Returns:
        :class:`SplitResult`.  Never raises for a well-typed mask: an empty mask or a
        mask without discs gives ``valid=False`` with an ``"unsplittable: ..."`` reason.

    Raises:
        InputError: not 3-D, non-integer values, labels outside {0, 1, 2}, bad spacing.
    """
    sem = np.asarray(semantic)
    if sem.ndim != 3:
        raise InputError(None, f"semantic mask must be 3-D, got shape {sem.shape}")
    spacing = tuple(float(s) for s in np.asarray(spacing_mm, dtype=float).ravel())
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(None, f"voxel spacing must be 3 positive finite mm, got {spacing}")
    if sem.dtype == bool:
        sem = sem.astype(np.uint8)
    if not np.issubdtype(sem.dtype, np.integer):
        if not np.all(np.isfinite(sem)) or not np.array_equal(np.rint(sem), sem):
            raise InputError(None, "semantic mask contains non-integer values")
        sem = sem.astype(np.int16)
    spacing3: tuple[float, float, float] = (spacing[0], spacing[1], spacing[2])
    if sem.size == 0:
        return _empty_result(sem.shape, spacing3, UNSPLITTABLE_EMPTY)
    lo_v, hi_v = int(sem.min()), int(sem.max())
    if lo_v < 0 or hi_v > 2:
        raise InputError(
            None, f"semantic mask labels must be 0 (bg), 1 (vertebra), 2 (disc); got {lo_v}..{hi_v}"
        )
    fg = sem > 0
    box = _bbox(fg)
    if box is None:
        return _empty_result(sem.shape, spacing3, UNSPLITTABLE_EMPTY)
    crop = np.ascontiguousarray(sem[box])  # flat indices below are into this box
    origin = np.array([b.start for b in box], dtype=np.float64)
    sp = np.asarray(spacing3, dtype=np.float64)
    cranial = np.asarray(cranial_direction, dtype=np.float64) * sp  # index axes -> mm axes
    cranial = cranial / max(np.linalg.norm(cranial), 1e-12)
    # centre coordinates on the box so float32 mm values keep sub-micron precision
    centre = (np.array(crop.shape, dtype=np.float64) - 1) / 2.0

    def on_border(idx: tuple[np.ndarray, ...]) -> np.ndarray:
        """(M, 3) bool: voxel on the array's outer faces across axis a (cut by the FOV)."""
        hit = np.zeros((len(idx[0]), 3), dtype=bool)
        for a in range(3):
            g = idx[a] + box[a].start
            hit[:, a] = (g == 0) | (g == sem.shape[a] - 1)
        return hit

    def to_mm(idx: tuple[np.ndarray, ...]) -> np.ndarray:
        """(3, M) float32 box-centred mm coordinates (rows contiguous)."""
        out = np.empty((3, len(idx[0])), dtype=np.float32)
        for a in range(3):
            np.multiply(idx[a] - centre[a], sp[a], out=out[a], casting="unsafe")
        return out

    # --- 1. disc components -------------------------------------------------------
    disc_cc, n_cc = _cc(crop == 2)
    if n_cc == 0:
        return _empty_result(sem.shape, spacing3, UNSPLITTABLE_NO_DISCS)
    # one pass over the box for all foreground voxels, then split by class (lists only)
    # (flatnonzero + own unravel: about 2x faster than np.nonzero on a whole volume)
    fg_lin = np.flatnonzero(crop)
    is_d = crop.reshape(-1)[fg_lin] == 2
    d_lin, v_lin = fg_lin[is_d], fg_lin[~is_d]
    del fg_lin, is_d
    d_idx, v_idx = _unravel(d_lin, crop.shape), _unravel(v_lin, crop.shape)
    d_lab = disc_cc.reshape(-1)[d_lin].astype(np.intp) - 1
    d_mm = to_mm(d_idx)
    cnt, s1, s2 = _moments(d_lab, d_mm.astype(np.float64), n_cc)
    if min_disc_voxels is None:
        big = cnt[cnt >= fragment_voxels]
        min_disc_voxels = int(max(fragment_voxels, 0.1 * np.median(big))) if big.size else 0
    # a component on an array face across its own thin direction is a disc cut by the
    # field of view (its thinnest direction is then the cut), not a stray fragment: kept
    # from ``fragment_voxels // 5`` voxels on, its plane borrows a neighbour's normal.  Touching the
    # lateral faces (sagittal slices) does not count: the face is then along the disc.
    d_border = on_border(d_idx)
    border_ax = np.stack(
        [np.bincount(d_lab[d_border[:, a]], minlength=n_cc) > 0 for a in range(3)], axis=1
    )
    _, own_n, _, _ = _planes(cnt, s1, s2, sp)
    cut = np.any(border_ax & (np.abs(own_n) > 0.5), axis=1)
    keep = (cnt >= max(min_disc_voxels, 1)) | (cut & (cnt >= max(2, fragment_voxels // 5)))
    if not np.any(keep):
        return _empty_result(sem.shape, spacing3, UNSPLITTABLE_NO_DISCS + " (only fragments)")
    if int(keep.sum()) > MAX_DISC_COMPONENTS:
        return _empty_result(
            sem.shape,
            spacing3,
            f"unsplittable: implausible mask with {int(keep.sum())} disc components "
            f"(a spine has at most 24 discs; not a spine segmentation?)",
        )
    # group id per component: kept components are discs; merging may join groups later
    group = np.full(n_cc, -1, dtype=np.intp)
    group[keep] = np.arange(int(keep.sum()))

    v_mm = to_mm(v_idx)
    n_vox_v = v_mm.shape[1]

    # --- 2-5. planes, order, slab assignment; merge discs with an empty slab between -----
    for _ in range(int(keep.sum())):
        ng = int(group.max()) + 1
        sel = group >= 0
        g_cnt = np.bincount(group[sel], cnt[sel], minlength=ng)
        g_s1 = np.stack([np.bincount(group[sel], s1[sel, a], minlength=ng) for a in range(3)], 1)
        g_s2 = np.zeros((ng, 3, 3))
        np.add.at(g_s2, group[sel], s2[sel])
        g_cut = np.bincount(group[sel], cut[sel], minlength=ng) > 0
        c, n, sd_n, flat = _planes(g_cnt, g_s1, g_s2, sp)
        order = _order_along_curve(c, cranial)
        c, n, sd_n, g_cnt = c[order], n[order], sd_n[order], g_cnt[order]
        k = ng
        # an end disc cut by the FOV: on the border across its normal *and* under half its
        # neighbour's size (a whole disc merely grazing the border keeps its own plane).
        # Its thinnest direction is the cut and its centroid the visible part's, so it
        # borrows a neighbour's normal and its plane goes to the sliver's outer edge (+ half
        # a voxel): only voxels clearly beyond the visible disc form the cut vertebra there.
        g_cut_o = g_cut[order].copy()
        if k >= 2:
            g_cut_o[0] &= g_cnt[0] < 0.5 * g_cnt[1]
            g_cut_o[-1] &= g_cnt[-1] < 0.5 * g_cnt[-2]
            g_cut_o[1:-1] = False
        trusted = flat[order] & ~g_cut_o
        rank = np.empty(ng, dtype=np.intp)
        rank[order] = np.arange(ng)
        group[sel] = rank[group[sel]]  # groups now numbered cranio-caudally
        n = _orient_normals(c, n, trusted, cranial)
        offs = (c * n).sum(1)
        half_vox = 0.5 * (np.abs(n) * sp[None, :]).sum(1)
        gv = group[d_lab]
        for j, outward in ((0, -1.0), (k - 1, 1.0)):
            if g_cut_o[j]:
                proj = n[j] @ d_mm[:, gv == j].astype(np.float64)
                edge = proj.min() if outward < 0 else proj.max()
                offs[j] = edge + outward * half_vox[j]
        if n_vox_v:
            slab, n_bad = _assign_slabs(v_mm, c, n, offs)
            slab_cnt = np.bincount(slab, minlength=k + 1)
        else:
            slab, n_bad = np.zeros(0, dtype=np.int32), 0
            slab_cnt = np.zeros(k + 1, dtype=np.int64)
        if k < 2 or n_vox_v == 0:
            break
        inner = slab_cnt[1:k]  # slab s (1..K-1) between disc s-1 and disc s
        tiny = inner < max(
            fragment_voxels, MIN_INNER_SLAB_FRACTION * np.median(slab_cnt[slab_cnt > 0])
        )
        if not np.any(tiny):
            break
        # merge disc s-1 and s for the first tiny inner slab (one at a time: refits move planes)
        s = int(np.flatnonzero(tiny)[0]) + 1
        group[group == s] = s - 1
        group[group > s] -= 1

    # tiny end slabs (under ``fragment_voxels``: stray voxels above the first / below the
    # last disc) are no vertebra, unless they lie on the array border *and* reach beyond
    # the end disc's far surface (half its thickness past the plane): then they are a
    # vertebra cut by the FOV.  Voxels just past the plane are the near-side vertebra
    # leaking across a slightly mis-tilted plane (e.g. of a disc itself cut by the FOV).
    v_border = on_border(v_idx).any(axis=1) if n_vox_v else np.zeros(0, dtype=bool)
    if n_vox_v:
        for end, into, disc in ((0, 1, 0), (k, k - 1, k - 1)):
            if not 0 < slab_cnt[end] < fragment_voxels:
                continue
            sel_end = slab == end
            depth = np.abs(n[disc] @ v_mm[:, sel_end] - c[disc] @ n[disc]).max()
            real = v_border[sel_end].any() and depth > 2.0 * sd_n[disc]
            if not real:
                slab[sel_end] = into
        slab_cnt = np.bincount(slab, minlength=k + 1)

    # --- 6. instance ids: V0? D0 V1? D1 ... D(K-1) VK? ------------------------------------
    # sequence position: slab s -> 2s, disc j -> 2j + 1; empty slabs get no id
    present = np.zeros(2 * k + 1, dtype=bool)
    present[0::2] = slab_cnt > 0
    present[1::2] = True
    seq_id = np.cumsum(present) * present  # 1-based ids, 0 where absent
    kinds = ["vertebra" if p % 2 == 0 else "disc" for p in np.flatnonzero(present)]

    inst_crop = np.zeros(crop.shape, dtype=np.uint16)
    if n_vox_v:
        ids_v = seq_id[2 * slab]
        inst_crop.reshape(-1)[v_lin] = ids_v
    # disc voxels: kept components by group; fragments to the nearest disc centroid
    comp_disc = group.copy()
    frag = comp_disc < 0
    n_frag_vox = int(cnt[frag].sum())
    if np.any(frag):
        fc = s1[frag] / cnt[frag, None]
        comp_disc[frag] = np.argmin(((fc[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    ids_d = seq_id[2 * comp_disc[d_lab] + 1]
    inst_crop.reshape(-1)[d_lin] = ids_d

    instances = np.zeros(sem.shape, dtype=np.uint16)
    instances[box] = inst_crop

    # --- per-instance stats (bincount over the already known voxel lists) --------------
    n_inst = len(kinds)
    if not n_vox_v:
        ids_v = np.zeros(0, dtype=np.intp)
    m1 = n_inst + 1
    icnt = (np.bincount(ids_v, minlength=m1) + np.bincount(ids_d, minlength=m1))[1:]
    isum = np.stack(
        [
            (np.bincount(ids_v, v_mm[a], minlength=m1) + np.bincount(ids_d, d_mm[a], minlength=m1))[
                1:
            ]
            for a in range(3)
        ],
        axis=1,
    )
    shift = (origin + centre) * sp  # back from box-centred mm to array-index mm
    centroids = isum / np.maximum(icnt, 1)[:, None] + shift[None, :]
    planes = [
        DiscPlane(
            centroid_mm=tuple(float(x) for x in c[j] + shift),  # type: ignore[arg-type]
            normal=tuple(float(x) for x in n[j]),  # type: ignore[arg-type]
            voxel_count=int(g_cnt[j]),
            thickness_mm=float(4.0 * sd_n[j]),
        )
        for j in range(k)
    ]

    # the end vertebrae may be cut by the FOV: their pieces are not judged when on the border
    border_ids = set(np.unique(ids_v[v_border]).tolist()) & {1, n_inst} if n_vox_v else set()
    reasons = _validity(
        inst_crop, kinds, fragment_voxels, min_contact_faces, border_ids, v_idx, d_idx
    )
    if n_bad > max(fragment_voxels, 0.001 * max(n_vox_v, 1)):
        reasons.append(f"{n_bad} vertebra voxels lie beyond a neighbouring disc plane")
    return SplitResult(
        instances=instances,
        kinds=kinds,
        valid=not reasons,
        invalid_reason="; ".join(reasons) if reasons else None,
        voxel_counts=[int(x) for x in icnt],
        centroids_mm=centroids,
        disc_planes=planes,
        spacing_mm=spacing3,
        n_fragment_voxels=n_frag_vox,
        n_crossing_voxels=n_bad,
    )


def _validity(
    inst: np.ndarray,
    kinds: list[str],
    fragment_voxels: int,
    min_contact_faces: int,
    exempt: set[int] | frozenset[int] = frozenset(),
    v_idx: tuple[np.ndarray, ...] | None = None,
    d_idx: tuple[np.ndarray, ...] | None = None,
) -> list[str]:
    """Reasons why the split is invalid in the thesis's sense (empty list = valid).

    ``v_idx`` / ``d_idx``: the vertebra / disc voxel indices if known (else found here);
    all work is on those voxel lists plus one ``cc3d`` pass, never full-volume shifts.
    """
    reasons: list[str] = []
    n = len(kinds)
    is_vert = np.array([False] + [k == "vertebra" for k in kinds])
    if not is_vert[1:].any():
        reasons.append("no vertebra instance")
    # adjacent discs with no vertebra between them
    for i in range(1, n):
        if kinds[i] == "disc" and kinds[i - 1] == "disc":
            reasons.append(f"discs {i} and {i + 1} have no vertebra between them")
    inst = np.ascontiguousarray(inst)
    flat = inst.reshape(-1)
    if v_idx is None or d_idx is None:
        v_idx = np.nonzero(is_vert[inst] & (inst > 0))
        d_idx = np.nonzero(~is_vert[inst] & (inst > 0))
    v_lin = np.ravel_multi_index(v_idx, inst.shape)  # flat gathers are the cheap ones
    d_lin = np.ravel_multi_index(d_idx, inst.shape)
    ids_v = flat[v_lin]
    # one connected piece per vertebra (26-connectivity within each id)
    if ids_v.size:
        vert_only = np.zeros(inst.shape, dtype=np.uint16)
        vert_only.reshape(-1)[v_lin] = ids_v
        comps, n_comp = _cc(vert_only)
        comp_of = comps.reshape(-1)[v_lin].astype(np.intp)
        sizes = np.bincount(comp_of, minlength=n_comp + 1)
        owner = np.zeros(n_comp + 1, dtype=np.intp)
        owner[comp_of] = ids_v
        real = sizes >= max(fragment_voxels, 1)
        real[0] = False
        pieces = np.bincount(owner[real], minlength=n + 1)
        for i in np.flatnonzero(pieces > 1):
            if int(i) in exempt:
                continue
            reasons.append(f"vertebra instance {int(i)} is in {int(pieces[i])} pieces")
    # discs touching non-adjacent vertebrae: face neighbours of every disc voxel
    ids_d = flat[d_lin].astype(np.int64)
    if ids_d.size and ids_v.size:
        m = n + 1
        lin = d_lin
        strides = np.cumprod((1,) + inst.shape[:0:-1])[::-1]  # C-order element strides
        codes = []
        for ax in range(3):
            for step in (-1, 1):
                ok = (d_idx[ax] + step >= 0) & (d_idx[ax] + step < inst.shape[ax])
                nb = flat[lin[ok] + step * int(strides[ax])].astype(np.int64)
                hit = is_vert[nb]
                codes.append(ids_d[ok][hit] * m + nb[hit])
        counts = np.bincount(np.concatenate(codes), minlength=m * m)
        for code in np.flatnonzero(counts >= max(min_contact_faces, 1)):
            dsc, vtb = divmod(int(code), m)
            if abs(dsc - vtb) != 1:
                reasons.append(f"disc instance {dsc} touches non-adjacent vertebra {vtb}")
    return reasons
