"""The boundaries of each structure on its mid-sagittal plane, traced in the binary mask.

Coordinates are those of :mod:`spinecensus.measure.midsagittal`: mm along each structure's
frame, ``a`` antero-posterior (posterior positive), ``s`` superior-inferior (inferior
positive).  A boundary is the 0.5 iso-line of the trilinearly interpolated mask; per column
``a`` the superior boundary ``top(a)`` is its first crossing along ``s``, the inferior
``bottom(a)`` the last, and per row ``s`` the anterior ``front(s)`` and posterior
``back(s)`` boundaries likewise along ``a``.  Three readings, each on ``N`` structures at
once:

* :func:`coarse_traces`: the whole plane on a grid of one in-plane voxel (two for the
  larger bodies), to turn the frames and to find the outline;
* :func:`fine_traces`: each boundary again in a window about that outline, every half voxel
  along the boundary and smoothed along it by a Gaussian of half a voxel (anti-aliasing the
  mask's staircase before the crossing is found; across the boundary nothing is smoothed,
  so a straight edge does not move).  A binary mask holds a boundary only to a voxel where
  it runs along the grid; where it crosses the grid's rows or columns, where the steps
  fall tells more, and these samples see it (synthetic: heights' scatter down by about a
  seventh, lordosis's by an eighth, ``docs/morphometrics.md``);
* :func:`middle_across_slices`: the central band's boundaries on the planes through the
  nearest slices, interpolated to the mid-sagittal plane by a parabola across them.
  Linear interpolation between two slices reads a concavity that is deepest in the middle
  laterally as well (a normal endplate, a biconcave fracture's depression) as shallower
  than it is on a plane between the slices; a parabola does not.
"""

from __future__ import annotations

import numpy as np

from spinecensus.measure.midsagittal import (
    Frames,
    Moments,
    sample_planes,
    sample_points,
    slice_planes,
    voxel_coords,
)

#: how far (mm, at least two across-steps) a fine window reaches beyond the coarse outline
WINDOW_MM = 1.5
#: the planes of :func:`middle_across_slices`: the slices read, how far out a plane may lie
#: (x the structure's lateral half-width: a concavity keeps its parabolic lateral profile
#: only near the middle) and the half-height (mm) of the windows searched on them
MIDDLE_SLICES = 4
MIDDLE_REACH = 0.45
MIDDLE_WINDOW_MM = 4.0

#: the four boundaries, stacked: the endplates ``(top, bottom)`` (2, N, n_a) along the
#: columns ``a`` and the walls ``(front, back)`` (2, N, n_s) along the rows ``s``
Traces = tuple[np.ndarray, np.ndarray]


def nanmean(x: np.ndarray) -> np.ndarray:
    """``np.nanmean`` along the last axis (the same sums, so the same numbers), without its
    all-NaN warning: an untraced structure is NaN."""
    ok = ~np.isnan(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, x, 0.0).sum(axis=-1) / ok.sum(axis=-1)


def crossings(
    values: np.ndarray,
    coords: np.ndarray,
    last: bool = False,
    inside: np.ndarray | None = None,
    axis: int = 1,
) -> np.ndarray:
    """First (``last``: last) 0.5 crossing along ``axis`` (1 or 2) of ``values`` (N, n, m)
    or (N, m, n) going along ``coords`` (N, n), linearly interpolated between samples: (N,
    m), NaN where there is none or where the first (last) sample is not outside (< 0.5):
    the boundary lies beyond the grid.  ``inside``: ``values >= 0.5`` when the caller has
    it.  The two samples about the crossing are gathered by index (a transposed view of
    ``values`` is indexed without a copy).  Cheapest along a first crossing of the memory's
    last axis (a reversed or strided axis costs ``np.argmax`` a copy): a grid sampled in
    reverse order turns a last crossing into a first one, at the same cost and value."""
    n = values.shape[axis]
    inside = values >= 0.5 if inside is None else inside
    i, j = np.arange(values.shape[0])[:, None], np.arange(values.shape[3 - axis])[None, :]

    def at(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        return x[i, k, j] if axis == 1 else x[i, j, k]

    ends = (slice(None),) * axis
    if last:  # the last inside sample (k_in) and the outside one after it
        k = n - 1 - np.argmax(inside[ends + (slice(None, None, -1),)], axis=axis)
        has = at(inside, k) & ~inside[ends + (-1,)]
        k_in = np.minimum(k, n - 2)
        k_out = k_in + 1
    else:
        k = np.argmax(inside, axis=axis)
        has = at(inside, k) & ~inside[ends + (0,)]
        k_in = np.maximum(k, 1)
        k_out = k_in - 1
    lo, hi = at(values, k_out), at(values, k_in)
    frac = np.clip((0.5 - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    c0, c1 = coords[i, k_out], coords[i, k_in]
    return np.where(has, c0 + frac * (c1 - c0), np.nan)


def _four(values: np.ndarray, a: np.ndarray, s: np.ndarray) -> Traces:
    """(top, bottom) along ``s`` and (front, back) along ``a`` of ``values`` (N, n_s, n_a),
    stacked as :data:`Traces`."""
    inside = values >= 0.5
    rows, rows_inside = values.transpose(0, 2, 1), inside.transpose(0, 2, 1)
    plates = [crossings(values, s, last, inside) for last in (False, True)]
    walls = [crossings(rows, a, last, rows_inside) for last in (False, True)]
    return np.stack(plates), np.stack(walls)


def coarse_traces(
    vol: np.ndarray,
    ids: np.ndarray,
    sp,
    frames: Frames,
    extents: np.ndarray,
    step: float | np.ndarray,
) -> tuple[Traces, np.ndarray, np.ndarray]:
    """The four boundaries on the whole plane (:func:`sample_planes` grid of ``step`` mm,
    one for all or (N,) one per structure, ``extents`` from
    :func:`~spinecensus.measure.midsagittal.plane_extents`): the :data:`Traces`, the
    columns ``a`` (N, n_a) and the rows ``s`` (N, n_s)."""
    values, a, s = sample_planes(vol, ids, sp, frames, extents, step)
    return _four(values, a, s), a, s


def smooth(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """``values`` convolved along ``axis`` with a Gaussian of ``sigma`` samples (truncated
    at 3 sigma, normalised), zero beyond the ends; a handful of shifted sums (numpy: the
    kernel is a few taps, and the measurement then needs no ``scipy.ndimage`` import)."""
    if sigma <= 0:
        return values
    r = int(np.ceil(3.0 * sigma))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w = (w / w.sum()).astype(values.dtype)
    axis %= values.ndim
    shape, n = values.shape, values.shape[axis]
    inner = int(np.prod(shape[axis + 1 :], dtype=int))
    # a shift by k along ``axis`` is a shift by k * inner along the flattened array once
    # each run of ``axis`` is followed by r zero rows (nothing then leaks from one run into
    # the next, and the ends add zeros, as without them): the same products, summed in the
    # same order, in one long contiguous row, several times cheaper than 2-D slices
    v = np.zeros((int(np.prod(shape[:axis], dtype=int)), n + r, inner), values.dtype)
    v[:, :n] = values.reshape(v.shape[0], n, inner)
    v = v.reshape(-1)
    out = v * w[r]
    tmp = np.empty_like(v)  # the shifted products, written in place (no temporaries)
    for k in range(1, min(r, n - 1) + 1):
        d = k * inner
        np.multiply(v[:-d], w[r - k], out=tmp[:-d])
        out[d:] += tmp[:-d]
        np.multiply(v[d:], w[r + k], out=tmp[d:])
        out[:-d] += tmp[d:]
    return out.reshape(-1, n + r, inner)[:, :n].reshape(shape)


def _grid(lo: np.ndarray, hi: np.ndarray, step: float) -> np.ndarray:
    """(..., n) points every ``step`` from ``lo`` (...) on, n enough for the longest span
    (NaN spans count as empty)."""
    span = np.fmax.reduce(hi - lo, axis=None, initial=0.0)  # NaN ignored
    n = int(np.ceil(float(span) / step)) + 1
    return np.where(np.isnan(lo), 0.0, lo)[..., None] + step * np.arange(n)


def _points(f: Frames, a: np.ndarray, s: np.ndarray, sp, s_last: bool = False) -> list[np.ndarray]:
    """Voxel coordinates (:func:`~spinecensus.measure.midsagittal.voxel_coords`, 3 arrays
    (N, K, n_s, n_a), ``s_last``: (N, K, n_a, n_s)) of the frame points ``(a, s)``: ``a``
    (N, K, n_a) and ``s`` (N, K, n_s) mm, K grids per structure."""
    return voxel_coords(f.centre, f.si, f.ap, a, s, sp, s_last)


def _outward(grids: np.ndarray) -> np.ndarray:
    """Grids (N, 2, n) with grid 1 reversed: its last crossing (the inferior endplate,
    the posterior wall) becomes the first crossing of its samples in that order."""
    out = grids.copy()
    out[:, 1] = grids[:, 1, ::-1]
    return out


def _firsts(values: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """First crossings along the last axis of ``values`` (N, K, m, n) with ``coords``
    (N, K, n): (K, N, m)."""
    n, k, m, _ = values.shape
    t = crossings(values.reshape(n * k, m, -1), coords.reshape(n * k, -1), axis=2)
    return t.reshape(n, k, m).transpose(1, 0, 2)


def fine_traces(
    vol: np.ndarray,
    ids: np.ndarray,
    sp,
    frames: Frames,
    points: np.ndarray,
    steps: tuple[float, float],
    sigma: float,
    reach: np.ndarray,
) -> tuple[Traces, np.ndarray, np.ndarray]:
    """The four boundaries again, each in a window about the coarse outline ``points``
    (N, 6, 2) (the corners and the middle height's ends of
    :attr:`~spinecensus.measure.heights.Outlines.points`), sampled every ``steps[0]`` mm
    along the boundary and ``steps[1]`` mm across it and smoothed along it by a Gaussian of
    ``sigma`` mm.  The windows run a few along-steps beyond the corners (so the smoothing
    sees real samples there) and ``reach`` (N,) mm, at least :data:`WINDOW_MM`, beyond the
    outline's extremes across it; a crossing outside its window is NaN.  Returns like
    :func:`coarse_traces`."""
    along, across = steps
    pad = 3 * along + sigma  # the Gaussian's reach (3 sigma, sigma = one step here)
    reach = np.maximum(max(WINDOW_MM, 2 * across), reach)[:, None]
    pa, ps = points[..., 0], points[..., 1]
    # endplates: columns a from corner to corner, rows s about (corners, middle) of each
    a = _grid(np.minimum(pa[:, 0], pa[:, 2]) - pad, np.maximum(pa[:, 1], pa[:, 3]) + pad, along)
    plate = ps[:, [[0, 1, 4], [2, 3, 5]]]  # (N, 2, 3)
    s = _outward(_grid(plate.min(axis=2) - reach, plate.max(axis=2) + reach, across))
    values = sample_points(vol, ids, _points(frames, np.stack([a, a], 1), s, sp, s_last=True))
    plates = _firsts(smooth(values, sigma / along, axis=2), s)  # values (N, 2, n_a, n_s)
    # walls: rows s from corner to corner, columns a about the corners of each wall
    s = _grid(np.minimum(ps[:, 0], ps[:, 1]) - pad, np.maximum(ps[:, 2], ps[:, 3]) + pad, along)
    wall = pa[:, [[0, 2], [1, 3]]]  # (N, 2, 2)
    aw = _outward(_grid(wall.min(axis=2) - reach, wall.max(axis=2) + reach, across))
    values = sample_points(vol, ids, _points(frames, aw, np.stack([s, s], 1), sp))
    walls = _firsts(smooth(values, sigma / along, axis=2), aw)  # values (N, 2, n_s, n_a)
    return (plates, walls), a, s


def parabola_at_zero(t: np.ndarray, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Least-squares parabola ``t = c0 + c1 x + c2 x^2`` along axis 0 of ``t`` (K, ...)
    at abscissae ``x`` (K, ..., finite; broadcast to ``t``) over the finite points ``ok``,
    evaluated at 0 (``c0``); NaN with fewer than 3 points."""
    w = (ok & np.isfinite(t)).astype(float)
    t = np.where(w > 0, t, 0.0)
    x = np.asarray(x, dtype=float)  # finite: where w is 0 the products are 0 as they are
    m = [(w * x**k).sum(axis=0) for k in range(5)]
    r = [(w * x**k * t).sum(axis=0) for k in range(3)]
    c0 = np.full(w.shape[1:], np.nan)
    enough = w.sum(axis=0) >= 3  # only these systems are solved (each on its own)
    m = np.stack(m, axis=-1)[enough]
    a = m[:, [[0, 1, 2], [1, 2, 3], [2, 3, 4]]]  # the normal equations: a_ij = m_(i+j)
    rhs, scale = np.stack(r, axis=-1)[enough], np.maximum(m[:, 2], 1e-12)
    good = np.abs(np.linalg.det(a)) > 1e-9 * scale**3
    a = np.where(good[..., None, None], a, np.eye(3))
    c0[enough] = np.where(good, np.linalg.solve(a, rhs[..., None])[..., 0, 0], np.nan)
    return c0


def middle_across_slices(
    vol: np.ndarray,
    ids: np.ndarray,
    sp,
    frames: Frames,
    m: Moments,
    points: np.ndarray,
    half_band: np.ndarray,
    steps: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Superior and inferior boundary (N,) (mean ``s`` over the central band: the columns
    within ``half_band`` (N,) mm of the middle height's ``a``, ``points[:, 4, 0]``) read on
    the planes parallel to the mid-sagittal one through the :data:`MIDDLE_SLICES` nearest
    slices (:func:`~spinecensus.measure.midsagittal.slice_planes`) and interpolated to the
    plane by a parabola across them (module docstring); NaN where fewer than three planes
    are usable (thin structures, few slices) or a boundary leaves its window."""
    known = np.isfinite(points[:, 4:, :]).all(axis=(1, 2)) & np.isfinite(half_band)
    nan = np.full(ids.size, np.nan)
    if not known.any() or MIDDLE_SLICES < 3:
        return nan, nan
    step, across = steps
    mid_a = np.where(known, points[:, 4, 0], 0.0)
    half = np.where(known, half_band, 0.0)
    a = _grid(mid_a - half, mid_a + half, step)
    in_band = a <= (mid_a + half)[:, None]
    rows = np.arange(-MIDDLE_WINDOW_MM, MIDDLE_WINDOW_MM + across / 2, across)
    offsets, usable = slice_planes(frames, m, sp, MIDDLE_SLICES, MIDDLE_REACH)  # (K, N)
    k = offsets.shape[0]
    s0 = np.where(known[:, None], points[:, 4:, 1], 0.0)  # (N, 2): superior, inferior
    s = s0[:, :, None, None] + np.zeros((1, 1, k, 1)) + rows  # (N, 2, K, n_r)
    s[:, 1] = s[:, 1, :, ::-1]  # the inferior boundary: its last crossing first
    coords = _points(frames, np.broadcast_to(a[:, None], (ids.size, 2 * k, a.shape[1])),
                     s.reshape(ids.size, 2 * k, rows.size), sp, s_last=True)  # fmt: skip
    lateral = np.repeat(offsets.T[:, None, :], 2, axis=1).reshape(ids.size, 2 * k)
    spacing = np.asarray(sp, dtype=float)
    for ax in range(3):  # each plane moved along lr by its slice's offset (voxels)
        shift = lateral * (frames.lr[:, ax, None] / spacing[ax])
        coords[ax] += shift.astype(np.float32)[..., None, None]
    values = sample_points(vol, ids, coords)  # (N, 2K, n_a, n_r)
    t = _firsts(values, s.reshape(ids.size, 2 * k, rows.size)).reshape(2, k, ids.size, -1)
    t = t.transpose(1, 0, 2, 3)  # (K, 2, N, n_a): both boundaries in one fit
    x = offsets[:, None, :, None]  # broadcast in the products
    ends = parabola_at_zero(t, x, usable[:, None, :, None] & in_band)  # (2, N, n_a)
    ok = known & np.all(np.isfinite(ends) | ~in_band, axis=(0, 2))
    top, bottom = nanmean(np.where(in_band, ends, np.nan))
    return np.where(ok, top, np.nan), np.where(ok, bottom, np.nan)
