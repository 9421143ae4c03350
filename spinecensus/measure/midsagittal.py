"""Each structure's own mid-sagittal plane, and the instance sampled on that plane.

Coordinates are mm along the canonical voxel axes of :mod:`spinecensus.io.scan`
(axis 0 = slice, left -> right; axis 1 = superior -> inferior; axis 2 = anterior ->
posterior): a voxel ``(i, j, k)`` sits at ``(i, j, k) * spacing_mm``, its centre.  Lengths
are therefore exact in the image's own grid for any voxel shape (orthogonal voxel axes).

A frame is orthonormal: its ``lr`` axis is the normal of the structure's mid-sagittal
plane, ``si`` points inferiorly and ``ap`` posteriorly inside that plane, and the plane
passes through the instance's centroid.  The plane is fitted from the instance (principal
axes of its voxel coordinates in mm), not taken as "the middle slice": with 3-5 mm slices
and a spine rotated about its long axis, no slice is a body's mid-sagittal plane.
:func:`sample_planes` interpolates each binary instance trilinearly on a fine grid of its
plane; the 0.5 iso-line of that is the boundary to sub-voxel precision.

Everything works on a batch of ``N`` structures at once (arrays with a leading ``N``
axis), so a subject costs a few dozen numpy calls, not a few per structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: two principal variances must differ by this factor before their axes are trusted; below
#: it (e.g. a cervical body about as wide as deep) the scanner axis is used instead
DISTINCT = 1.3


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@dataclass(frozen=True)
class Frames:
    """Orthonormal frames of ``N`` structures, mm (canonical axes), arrays of shape (N, 3).

    ``centre``: a point of each mid-sagittal plane (the centroid); ``lr``: the plane normal
    (towards the patient's right); ``si``: in-plane, inferior; ``ap``: in-plane, posterior.
    """

    centre: np.ndarray
    lr: np.ndarray
    si: np.ndarray
    ap: np.ndarray

    def rotated(self, phi: np.ndarray) -> Frames:
        """Each frame turned by ``phi[i]`` radians about its ``lr``, from ``ap`` towards
        ``si`` (so a line ``s = tan(phi) * a`` of the old frame becomes the new ``ap``)."""
        c, s = np.cos(phi)[:, None], np.sin(phi)[:, None]
        ap = _unit(c * self.ap + s * self.si)
        si = _unit(-s * self.ap + c * self.si)
        return Frames(self.centre, self.lr, si, ap)


@dataclass(frozen=True)
class Moments:
    """Voxel count, centroid (N, 3) and covariance (N, 3, 3) of each structure's voxel
    coordinates (mm), and its bounding box corners (N, 8, 3) in mm (voxel centres)."""

    count: np.ndarray
    centroid: np.ndarray
    cov: np.ndarray
    box: np.ndarray

    def take(self, which: np.ndarray) -> Moments:
        """The moments of a subset (index or boolean array)."""
        return Moments(self.count[which], self.centroid[which], self.cov[which], self.box[which])


def moments(
    instances: np.ndarray, ids: np.ndarray, boxes: list[tuple[slice, ...]], spacing_mm
) -> Moments:
    """Moments of the instances ``ids`` from their bounding ``boxes`` (as
    ``scipy.ndimage.find_objects`` gives them): per structure, its mask in its box and the
    three 2-D projections of that mask, which hold every first and second moment.  The
    sums are taken in voxel indices from each box's corner, whole numbers that float64
    holds exactly (so they do not depend on the order of summation, and the covariance
    does not subtract two large squares of scanner-sized coordinates); one pass over each
    box, the rest in a few array operations for all structures."""
    sp = np.asarray(spacing_mm, dtype=float)
    n = ids.size
    picked = [boxes[i - 1] for i in ids.tolist()]
    start = np.array([[b.start for b in box] for box in picked], dtype=float).reshape(n, 3)
    size = np.array([[b.stop - b.start for b in box] for box in picked]).reshape(n, 3)
    big = size.max(axis=0, initial=1)
    # projections along the slices (rows x columns), rows (slices x columns), columns
    p_rc = np.zeros((n, big[1], big[2]))
    p_sc = np.zeros((n, big[0], big[2]))
    p_sr = np.zeros((n, big[0], big[1]))
    for k, (iid, box) in enumerate(zip(ids.tolist(), picked, strict=True)):
        mask = (instances[box] == iid).view(np.uint8)
        d0, d1, d2 = mask.shape
        # summed in uint8 (several times faster) where the axis is too short to overflow it
        p_rc[k, :d1, :d2] = mask.sum(axis=0, dtype=np.uint8 if d0 < 256 else np.int32)
        p_sc[k, :d0, :d2] = mask.sum(axis=1, dtype=np.uint8 if d1 < 256 else np.int32)
        p_sr[k, :d0, :d1] = mask.sum(axis=2, dtype=np.uint8 if d2 < 256 else np.int32)
    idx = [np.arange(big[d], dtype=float) for d in range(3)]
    marg = [p_sr.sum(axis=2), p_sr.sum(axis=1), p_sc.sum(axis=1)]  # (n, size) per axis
    count = marg[0].sum(axis=1)
    c = np.maximum(count, 1.0)
    mean = np.stack([marg[d] @ idx[d] for d in range(3)], axis=1) / c[:, None]
    second = np.empty((n, 3, 3))
    for d in range(3):
        second[:, d, d] = marg[d] @ (idx[d] ** 2)
    for (d, e), proj in (((0, 1), p_sr), ((0, 2), p_sc), ((1, 2), p_rc)):
        second[:, d, e] = second[:, e, d] = (proj @ idx[e]) @ idx[d]
    cov = second / c[:, None, None] - mean[:, :, None] * mean[:, None, :]
    cov *= sp[None, :, None] * sp[None, None, :]
    lo, hi = start * sp, (start + size - 1) * sp
    pick = np.array([[(j >> k) & 1 for k in range(3)] for j in range(8)], dtype=bool)
    box_corners = np.where(pick[None], hi[:, None, :], lo[:, None, :])
    return Moments(count, (start + mean) * sp, cov, box_corners)


def _distinct(evals: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Is principal variance ``k[i]`` of each row separated from the other two by
    :data:`DISTINCT`?"""
    mine = np.take_along_axis(evals, k[:, None], axis=1)
    lo, hi = np.minimum(mine, evals), np.maximum(mine, evals)
    ok = hi >= DISTINCT * np.maximum(lo, 1e-9)
    ok |= np.arange(3)[None, :] == k[:, None]
    return ok.all(axis=1)


def plane_normals(cov: np.ndarray) -> np.ndarray:
    """Left-right axis (unit, +x) per structure from its covariance (N, 3, 3).

    The principal axis closest to the scanner's left-right axis when its variance is
    distinct from the other two (a lumbar body is ~50 mm wide, 35 deep, 27 high); else the
    scanner's left-right axis itself.  An error of a few degrees here only moves the
    sampled plane within the body's flat lateral middle (second order on heights).
    """
    evals, evecs = np.linalg.eigh(cov)
    k = np.argmax(np.abs(evecs[:, 0, :]), axis=1)
    v = np.take_along_axis(evecs, k[:, None, None], axis=2)[:, :, 0]
    v *= np.where(v[:, :1] < 0, -1.0, 1.0)
    return np.where(_distinct(evals, k)[:, None], v, np.array([1.0, 0.0, 0.0]))


def _in_plane(v: np.ndarray, normal: np.ndarray) -> np.ndarray:
    return _unit(v - np.sum(v * normal, axis=1, keepdims=True) * normal)


def initial_frames(m: Moments, si_hint: np.ndarray | None = None) -> Frames:
    """First frames from the moments.  ``si_hint`` (N, 3), NaN rows for none: a direction
    for the inferior axis (e.g. the mean axis of the adjacent discs, whose thin shape fixes
    it well).  Without it the smaller in-plane principal axis (height is the short side of
    a body or disc) when distinct and within 60 deg of the scanner's superior-inferior
    axis, else that scanner axis.  The caller refines the in-plane angle from the
    endplates."""
    lr = plane_normals(m.cov)
    e1 = _in_plane(np.broadcast_to([0.0, 1.0, 0.0], lr.shape), lr)
    e2 = np.cross(lr, e1)
    c11 = np.einsum("ni,nij,nj->n", e1, m.cov, e1)
    c22 = np.einsum("ni,nij,nj->n", e2, m.cov, e2)
    c12 = np.einsum("ni,nij,nj->n", e1, m.cov, e2)
    evals, evecs = np.linalg.eigh(np.stack([np.stack([c11, c12], 1), np.stack([c12, c22], 1)], 1))
    small = evecs[:, :, 0]  # (N, 2) in (e1, e2)
    use = (evals[:, 1] >= DISTINCT * np.maximum(evals[:, 0], 1e-9)) & (np.abs(small[:, 0]) >= 0.5)
    si = np.where(use[:, None], small[:, :1] * e1 + small[:, 1:] * e2, e1)
    si = _unit(si) * np.where(si[:, 1:2] < 0, -1.0, 1.0)
    frames = Frames(m.centroid.copy(), lr, si, _unit(np.cross(lr, si)))
    return frames if si_hint is None else hinted_frames(frames, si_hint)


def hinted_frames(first: Frames, si_hint: np.ndarray) -> Frames:
    """The frames of :func:`initial_frames` given its ``si_hint`` (N, 3), from its
    frames without one (``first``): each hint that is finite and not within 26 deg of the
    plane's normal, projected into the plane, is the inferior axis."""
    lr, si = first.lr, first.si
    hint = np.asarray(si_hint, dtype=float)
    ok = np.isfinite(hint).all(axis=1)
    hint = np.where(ok[:, None], hint, si)
    with np.errstate(invalid="ignore", divide="ignore"):  # rows not ok are dropped
        ok &= np.abs(np.sum(_unit(hint) * lr, axis=1)) < 0.9
        inplane = _in_plane(hint, lr)
        turned = _unit(inplane) * np.where(inplane[:, 1:2] < 0, -1.0, 1.0)
    si = np.where(ok[:, None], turned, si)
    return Frames(first.centre, lr, si, _unit(np.cross(lr, si)))


def plane_extents(m: Moments, frames: Frames, margin: float) -> np.ndarray:
    """(N, 4) = (a_min, a_max, s_min, s_max) mm of each bounding box projected on its
    frame's plane, widened by ``margin`` mm on each side (a little more than the structure
    itself when it is tilted in its box: it only costs samples)."""
    rel = m.box - frames.centre[:, None, :]
    a = np.einsum("nkc,nc->nk", rel, frames.ap)
    s = np.einsum("nkc,nc->nk", rel, frames.si)
    return np.stack(
        [a.min(1) - margin, a.max(1) + margin, s.min(1) - margin, s.max(1) + margin], axis=1
    )


def voxel_coords(
    centre: np.ndarray,
    si: np.ndarray,
    ap: np.ndarray,
    a: np.ndarray,
    s: np.ndarray,
    spacing_mm,
    s_last: bool = False,
) -> list[np.ndarray]:
    """Coordinates, in voxels of the padded volume (:func:`padded`), of the points
    ``centre + s * si + a * ap`` (mm): ``centre``, ``si``, ``ap`` (N, 3), ``a`` (N, ...,
    n_a) and ``s`` (N, ..., n_s) mm, the ``...`` the same; three float32 arrays (N, ...,
    n_s, n_a), one per canonical axis (float32: the sampling is memory-bound, and its
    rounding, 1e-5 voxel, does not matter); ``s_last``: (N, ..., n_a, n_s), the same
    numbers (summed in the same order)."""
    sp = np.asarray(spacing_mm, dtype=float)
    extra = (1,) * (a.ndim - 2)
    out = []
    for ax in range(3):
        c = (centre[:, ax] / sp[ax] + 1.0).astype(np.float32).reshape((-1,) + extra + (1,))
        ss = (s * (si[:, ax] / sp[ax]).reshape((-1,) + extra + (1,))).astype(np.float32)
        aa = (a * (ap[:, ax] / sp[ax]).reshape((-1,) + extra + (1,))).astype(np.float32)
        out.append(_outer_sum(aa, c + ss) if s_last else _outer_sum(c + ss, aa))
    return out


def _outer_sum(col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``col[..., :, None] + row[..., None, :]`` ((..., n) and (..., m) -> (..., n, m)) with
    both operands repeated out first: the same sums, but numpy's broadcast add runs its
    inner loop over the short last axis, several times slower than a plain add."""
    n, m = col.shape[-1], row.shape[-1]
    cols = np.repeat(col, m, axis=-1).reshape(col.shape + (m,))
    return cols + np.repeat(row[..., None, :], n, axis=-2)


def sample_points(
    instances_padded: np.ndarray, ids: np.ndarray, coords: list[np.ndarray]
) -> np.ndarray:
    """Occupancy of instance ``ids[i]`` at the points ``coords`` (three arrays (N, ...) of
    :func:`voxel_coords`, voxels of the padded volume) by trilinear interpolation of its
    binary mask, 0 outside the volume: (N, ...) float32 in 0-1.  ``instances_padded``: the
    canonical instance volume padded by one voxel (:func:`padded`); uint8 when its ids
    allow (half the memory traffic of the gathers).

    Every step stays in one dtype (numpy's mixed float32/float64 or float/int loops cost
    several times the plain ones): the fractions are float32 and exact (``x - trunc(x)`` of
    a float32 is representable), and a product of two float32 numbers rounds to the same
    float32 whether it is formed in float32 or float64; the gathers index with ``intp``
    (numpy converts any other index type first) through ``ndarray.take`` (cheaper than
    fancy indexing; the indices are clipped into the volume)."""
    shape = instances_padded.shape
    strides = (shape[1] * shape[2], shape[2], 1)
    base = np.zeros(coords[0].shape, dtype=np.int32)
    valid = np.ones(coords[0].shape, dtype=bool)
    frac = []
    for ax in range(3):
        x = coords[ax]
        valid &= x >= 0
        valid &= x < shape[ax] - 1
        b = x.astype(np.int32)  # the floor where valid (x >= 0)
        frac.append(x - b.astype(np.float32))
        np.clip(b, 0, shape[ax] - 2, out=b)
        b *= strides[ax]
        base += b
    at = base.astype(np.intp)
    flat = instances_padded.ravel()
    target = ids.astype(instances_padded.dtype).reshape((-1,) + (1,) * (base.ndim - 1))
    fx, fy, fz = frac

    def lerp(f: np.ndarray) -> np.ndarray:  # along the columns; moves ``at`` one column on
        v0 = (flat.take(at) == target).astype(np.float32)
        np.add(at, 1, out=at)
        v1 = (flat.take(at) == target).astype(np.float32)
        v1 -= v0
        v1 *= f
        v1 += v0
        return v1

    def lerp2() -> np.ndarray:  # bilinear in the slice: rows then columns, ``at`` one row on
        v0 = lerp(fz)
        np.add(at, strides[1] - 1, out=at)
        v1 = lerp(fz)
        v1 -= v0
        v1 *= fy
        v1 += v0
        return v1

    x0 = lerp2()
    at += strides[0] - strides[1] - 1
    x1 = lerp2()
    x1 -= x0
    x1 *= fx
    x1 += x0
    x1 *= valid
    return x1


def padded(instances: np.ndarray) -> np.ndarray:
    """The instance volume with one zero voxel around it, as :func:`sample_points` wants
    it (made once per subject); uint8 when every id fits (the sampling's gathers are
    memory-bound).  Written into a zeroed array of the final dtype: one pass, no
    intermediate copy."""
    small = instances.size == 0 or int(instances.max()) < 256
    out = np.zeros(tuple(n + 2 for n in instances.shape), np.uint8 if small else instances.dtype)
    out[1:-1, 1:-1, 1:-1] = instances
    return out


#: :func:`sample_planes` samples each structure on its own extents only when they cover
#: less than this share of the common grid (selecting the points has a cost of its own;
#: a judgement, not tuned)
OWN_SHARE = 0.8


def sample_planes(
    instances_padded: np.ndarray,
    ids: np.ndarray,
    spacing_mm,
    frames: Frames,
    extents: np.ndarray,
    step: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occupancy of instance ``ids[i]`` on frame ``i``'s plane by trilinear interpolation
    of its binary mask (0 outside the volume), on a grid of ``step`` mm (one for all, or
    (N,) one per structure), as many steps for all as the largest needs.

    ``instances_padded``: the canonical instance volume padded by one voxel
    (:func:`padded`).  Returns ``(values, a, s)``: ``values`` (N, n_s, n_a, float32) in 0-1 at
    ``centre + a * ap + s * si`` with ``a`` (N, n_a) from each structure's ``a_min`` and
    ``s`` (N, n_s) from its ``s_min`` (mm)."""
    step = np.broadcast_to(np.asarray(step, dtype=float), (ids.size,))
    own_a = np.ceil((extents[:, 1] - extents[:, 0]) / step).astype(int) + 1
    own_s = np.ceil((extents[:, 3] - extents[:, 2]) / step).astype(int) + 1
    n_a, n_s = int(own_a.max()), int(own_s.max())
    a = extents[:, :1] + step[:, None] * np.arange(n_a)[None, :]
    s = extents[:, 2:3] + step[:, None] * np.arange(n_s)[None, :]
    coords = voxel_coords(frames.centre, frames.si, frames.ap, a, s, spacing_mm)
    if own_a @ own_s >= OWN_SHARE * ids.size * n_a * n_s:
        return sample_points(instances_padded, ids, coords), a, s
    # the common grid is the largest structure's: each other is sampled on its own
    # extents only, zero beyond them (the measurement's margin, an in-plane voxel and two
    # steps, is wider than the mask's interpolation reaches: the same values)
    own = (np.arange(n_s)[None, :, None] < own_s[:, None, None]) & (
        np.arange(n_a)[None, None, :] < own_a[:, None, None]
    )
    at = np.flatnonzero(own)  # found once, then gathered by index
    which = np.repeat(ids, own_a * own_s)  # the points are structure-major
    values = np.zeros(own.size, np.float32)
    values[at] = sample_points(instances_padded, which, [c.reshape(-1).take(at) for c in coords])
    return values.reshape(own.shape), a, s


def slice_planes(
    frames: Frames, m: Moments, spacing_mm, count: int, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (count, N) mm along each frame's ``lr`` of the planes parallel to its
    mid-sagittal plane that pass through the ``count`` slices nearest its centre (at the
    centre), and whether each is usable: within ``reach`` x the structure's lateral
    half-width (twice the standard deviation of its voxels along ``lr``) and on a plane
    that is not too oblique to the slices (``|lr_x| > 0.5``)."""
    sp0 = float(np.asarray(spacing_mm, dtype=float)[0])
    lx = frames.lr[:, 0]
    cx = frames.centre[:, 0]
    first = np.floor(cx / sp0) - (count // 2 - 1)
    slices = first[None, :] + np.arange(count)[:, None]
    offsets = (slices * sp0 - cx[None, :]) / np.where(np.abs(lx) > 0.5, lx, 1.0)[None, :]
    half_width = 2.0 * np.sqrt(np.einsum("ni,nij,nj->n", frames.lr, m.cov, frames.lr))
    usable = (np.abs(offsets) <= reach * half_width[None, :]) & (np.abs(lx) > 0.5)[None, :]
    return offsets, usable
