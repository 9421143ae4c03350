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

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

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

Traces = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the all-NaN warnings of nan-reductions: an untraced structure is NaN."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def crossings(values: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """First 0.5 crossing along axis 1 of ``values`` (N, n, m) going along ``coords``
    (N, n), linearly interpolated between samples: (N, m), NaN where there is none or
    where the first sample is not outside (< 0.5): the boundary lies before the grid."""
    inside = values >= 0.5
    has = inside.any(axis=1) & ~inside[:, 0]
    k = np.clip(np.argmax(inside, axis=1), 1, values.shape[1] - 1)
    lo = np.take_along_axis(values, (k - 1)[:, None, :], axis=1)[:, 0]
    hi = np.take_along_axis(values, k[:, None, :], axis=1)[:, 0]
    frac = np.clip((0.5 - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0, 1.0)
    c0 = np.take_along_axis(coords, k - 1, axis=1)
    c1 = np.take_along_axis(coords, k, axis=1)
    return np.where(has, c0 + frac * (c1 - c0), np.nan)


def _four(values: np.ndarray, values_rows: np.ndarray, a: np.ndarray, s: np.ndarray) -> Traces:
    """(top, bottom) along ``s`` of ``values`` (N, n_s, n_a), (front, back) along ``a`` of
    ``values_rows`` (N, n_s', n_a')."""
    rows = values_rows.transpose(0, 2, 1)
    return (
        crossings(values, s),
        crossings(values[:, ::-1], s[:, ::-1]),
        crossings(rows, a),
        crossings(rows[:, ::-1], a[:, ::-1]),
    )


def coarse_traces(
    vol: np.ndarray, ids: np.ndarray, sp, frames: Frames, extents: np.ndarray, step: float
) -> tuple[Traces, np.ndarray, np.ndarray]:
    """The four boundaries on the whole plane (:func:`sample_planes` grid of ``step`` mm,
    ``extents`` from :func:`~spinecensus.measure.midsagittal.plane_extents`): ``(top,
    bottom, front, back)``, the columns ``a`` (N, n_a) and the rows ``s`` (N, n_s)."""
    values, a, s = sample_planes(vol, ids, sp, frames, extents, step)
    return _four(values, values, a, s), a, s


def smooth(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """``values`` convolved along ``axis`` with a Gaussian of ``sigma`` samples (truncated
    at 3 sigma, normalised), zero beyond the ends; a handful of shifted sums (numpy: the
    kernel is a few taps, and the measurement then needs no ``scipy.ndimage`` import)."""
    if sigma <= 0:
        return values
    r = int(np.ceil(3.0 * sigma))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w = (w / w.sum()).astype(values.dtype)
    v = np.moveaxis(values, axis, -1)
    n = v.shape[-1]
    out = v * w[r]
    for k in range(1, min(r, n - 1) + 1):
        out[..., k:] += v[..., :-k] * w[r - k]
        out[..., :-k] += v[..., k:] * w[r + k]
    return np.moveaxis(out, -1, axis)


def _grid(lo: np.ndarray, hi: np.ndarray, step: float) -> np.ndarray:
    """(..., n) points every ``step`` from ``lo`` (...) on, n enough for the longest span
    (NaN spans count as empty)."""
    span = np.nan_to_num(hi - lo, nan=0.0)
    n = int(np.ceil(max(float(span.max()), 0.0) / step)) + 1
    return np.nan_to_num(lo)[..., None] + step * np.arange(n)


def _points(f: Frames, a: np.ndarray, s: np.ndarray, sp) -> list[np.ndarray]:
    """Voxel coordinates (:func:`~spinecensus.measure.midsagittal.voxel_coords`, 3 arrays
    (N, K, n_s, n_a)) of the frame points ``(a, s)``: ``a`` (N, K, n_a) and ``s`` (N, K,
    n_s) mm, K grids per structure."""
    return voxel_coords(f.centre, f.si, f.ap, a, s, sp)


def _pairs(values: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First crossing of grid 0 and last crossing of grid 1 along axis 2 of ``values``
    (N, 2, n, m) with ``coords`` (N, 2, n): two (N, m) arrays."""
    return (
        crossings(values[:, 0], coords[:, 0]),
        crossings(values[:, 1, ::-1], coords[:, 1, ::-1]),
    )


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
    s = _grid(plate.min(axis=2) - reach, plate.max(axis=2) + reach, across)  # (N, 2, n)
    values = sample_points(vol, ids, _points(frames, np.stack([a, a], 1), s, sp))
    top, bottom = _pairs(smooth(values, sigma / along, axis=3), s)
    # walls: rows s from corner to corner, columns a about the corners of each wall
    s = _grid(np.minimum(ps[:, 0], ps[:, 1]) - pad, np.maximum(ps[:, 2], ps[:, 3]) + pad, along)
    wall = pa[:, [[0, 2], [1, 3]]]  # (N, 2, 2)
    aw = _grid(wall.min(axis=2) - reach, wall.max(axis=2) + reach, across)
    values = sample_points(vol, ids, _points(frames, aw, np.stack([s, s], 1), sp))
    values = smooth(values, sigma / along, axis=2)
    front, back = _pairs(values.transpose(0, 1, 3, 2), aw)
    return (top, bottom, front, back), a, s


def parabola_at_zero(t: np.ndarray, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Least-squares parabola ``t = c0 + c1 x + c2 x^2`` along axis 0 of ``t`` (K, ...)
    at abscissae ``x`` (K, ...) over the finite points ``ok``, evaluated at 0 (``c0``); NaN
    with fewer than 3 points."""
    w = (ok & np.isfinite(t)).astype(float)
    t, x = np.where(w > 0, t, 0.0), np.where(w > 0, x, 0.0)
    m = [(w * x**k).sum(axis=0) for k in range(5)]
    r = [(w * x**k * t).sum(axis=0) for k in range(3)]
    a = np.stack([np.stack(m[i : i + 3], axis=-1) for i in range(3)], axis=-2)
    scale = np.maximum(m[2], 1e-12)
    good = (w.sum(axis=0) >= 3) & (np.abs(np.linalg.det(a)) > 1e-9 * scale**3)
    a = np.where(good[..., None, None], a, np.eye(3))
    c0 = np.linalg.solve(a, np.stack(r, axis=-1)[..., None])[..., 0, 0]
    return np.where(good, c0, np.nan)


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
    coords = _points(frames, np.broadcast_to(a[:, None], (ids.size, 2 * k, a.shape[1])),
                     s.reshape(ids.size, 2 * k, rows.size), sp)  # fmt: skip
    lateral = np.repeat(offsets.T[:, None, :], 2, axis=1).reshape(ids.size, 2 * k)
    spacing = np.asarray(sp, dtype=float)
    for ax in range(3):  # each plane moved along lr by its slice's offset (voxels)
        shift = lateral * (frames.lr[:, ax, None] / spacing[ax])
        coords[ax] += shift.astype(np.float32)[..., None, None]
    values = sample_points(vol, ids, coords).reshape(ids.size, 2, k, rows.size, -1)
    s = s.reshape(ids.size, 2, k, rows.size)
    x = np.broadcast_to(offsets[:, :, None], (k,) + a.shape)
    ends = []
    for j, flip in ((0, slice(None)), (1, slice(None, None, -1))):  # first / last crossing
        v = values[:, j, :, flip].reshape(ids.size * k, rows.size, -1)
        t = crossings(v, s[:, j, :, flip].reshape(ids.size * k, rows.size))
        t = t.reshape(ids.size, k, -1).transpose(1, 0, 2)
        ends.append(parabola_at_zero(t, x, usable[:, :, None] & in_band[None]))
    ok = known & np.all(np.isfinite(ends[0]) | ~in_band, axis=1)
    ok &= np.all(np.isfinite(ends[1]) | ~in_band, axis=1)
    with quiet():
        top, bottom = (np.nanmean(np.where(in_band, e, np.nan), axis=1) for e in ends)
    return np.where(ok, top, np.nan), np.where(ok, bottom, np.nan)
