"""Anterior, middle and posterior heights, depth and endplate lines of bodies and discs.

All lengths in mm, measured on each structure's own mid-sagittal plane
(:mod:`spinecensus.measure.midsagittal`), in its frame: ``a`` along the antero-posterior
axis (posterior positive), ``s`` along the superior-inferior axis (inferior positive).

Definitions (the six-point placement of quantitative vertebral morphometry, made
reproducible on a mask):

* the boundary is the 0.5 iso-line of the trilinearly interpolated mask; per column ``a``
  the superior boundary ``top(a)`` is its first crossing, the inferior ``bottom(a)`` the
  last; per row the anterior and posterior boundaries likewise (traced coarsely on the
  whole plane, then finely in windows about that outline, the middle height's across
  slices: :mod:`spinecensus.measure.boundaries`);
* the anterior and posterior walls are least-squares lines ``a(s)`` through the anterior
  and posterior boundary of the middle half of each wall's height; the margins ``a0``,
  ``a1`` are the walls at mid-height and the depth is ``a1 - a0``;
* each endplate line is the least-squares line through the boundary points of its two
  rim bands, 5-15 % of the endplate's length inside each of its corners (the flat ring of
  the endplate, outside the central concavity and the rounded corners);
* each endplate's direction (its tilt, the alignment and wedge angles) is the
  least-squares slope of its boundary over 5-35 % of its length inside each corner (the
  direction bands: more points than the rim bands, so less of the mask's voxel steps; the
  rim line's slope where the concavity is symmetric about mid-depth);
* the corners are where the endplate lines meet the wall lines (the corner points of
  six-point morphometry); anterior and posterior heights are the distances between the
  superior and inferior corner of each wall; the middle height is the mean
  boundary-to-boundary distance over the central 10 % of the depth (the real endplates
  there, so it sees a central depression), its boundaries interpolated to the plane
  across the nearest slices;
* the frame is turned in-plane until its antero-posterior axis bisects the two endplate
  lines, so heights are measured perpendicular to the mean endplate, not to a slice row.

Walls and endplates depend on each other, so they are refined in turn: the walls are
first fitted on the middle rows of the whole structure and the rim bands placed from the
walls at mid-height; then each wall is refitted between the endplate lines (a wedge-shaped
disc's short side spans only part of the middle rows) and each endplate's rim bands are
placed from its own corners (a wedge's walls are not perpendicular to its endplates).

Every function works on ``N`` structures at once: arrays with a leading ``N`` axis, NaN
for a structure whose outline could not be traced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from spinecensus.measure.boundaries import (
    Traces,
    coarse_traces,
    fine_traces,
    middle_across_slices,
    nanmean,
)
from spinecensus.measure.midsagittal import (
    Frames,
    Moments,
    hinted_frames,
    initial_frames,
    padded,
    plane_extents,
)

#: rim bands for the endplate lines, as fractions of the endplate inside each corner
RIM_BAND = (0.05, 0.15)
#: direction bands of the endplates (fractions inside each corner): the endplate's
#: direction (its tilt, the angles of the alignment and the wedge angles) is the
#: least-squares slope of the outline here, three times the rim bands' length.  On a binary
#: mask an endplate's points are quantised to the voxel rows; more of them, at more phases
#: of the staircase, cut the tilt's scatter (synthetic, 1.0-1.5 mm voxels, seed 7, n = 150:
#: lordosis error RMS 0.86 -> 0.59 deg, max 2.69 -> 1.87 deg).  A concavity symmetric
#: about mid-depth leaves the slope unchanged; an off-centre one (a biconcave fracture's
#: depression reaching into the bands) turns it (0.7 deg on a grade-3 one), which is why
#: the corners, and so the heights, stay on the rim-band lines
DIRECTION_BAND = (0.05, 0.35)
#: central band for the middle height, fraction of the depth either side of mid-depth
MIDDLE_HALF_BAND = 0.05
#: rows used for the first wall fit: the middle of the height, fractions from each end
MARGIN_ROWS = 0.3
#: passes refining the walls and the endplates' rim bands from each other
REFINEMENTS = 1
#: stop turning a frame when the endplates' bisector is within this angle, degrees (the
#: heights are corner-to-corner distances, insensitive to a small residual turn: 2 deg and
#: 5 deg gave the same errors against planted truth, synthetic, and 5 deg samples less)
ANGLE_TOL_DEG = 5.0
MAX_ITERATIONS = 3
#: the six points of :attr:`Outlines.points`: the corners (endplate x wall), then the ends
#: of the middle height
POINTS = (
    "superior_anterior",
    "superior_posterior",
    "inferior_anterior",
    "inferior_posterior",
    "middle_superior",
    "middle_inferior",
)
#: sampling steps on the plane, in in-plane voxels: along a boundary (the endplates are
#: traced every half voxel along ``a``, the walls along ``s``, so the line fits see where
#: the mask's staircase steps) and across it (the crossing is interpolated between
#: samples, so one voxel keeps it sub-voxel); clipped to 0.1-0.75 and 0.2-1.5 mm
EDGE_STEP_VOXELS = 0.5
ACROSS_STEP_VOXELS = 1.0
#: step of the coarse sampling of the whole plane that turns the frames and finds the
#: outline the fine windows are placed about, in in-plane voxels (clipped to 0.4-3 mm),
#: for structures at least :data:`COARSE_MIN_STEPS` such steps high and deep (the larger
#: bodies); the others (discs, cervical and upper thoracic bodies) are sampled every
#: :data:`ACROSS_STEP_VOXELS`
COARSE_STEP_VOXELS = 2.0
COARSE_MIN_STEPS = 9
#: Gaussian smoothing of the sampled mask along each boundary, sigma in in-plane voxels:
#: it spreads each step of the staircase over its neighbours (anti-aliasing) before the
#: crossing is found; across the boundary nothing is smoothed, so a straight edge does not
#: move (a full voxel rounded the corners into the rim bands: posterior heights 0.12 mm
#: short on average, synthetic)
EDGE_SIGMA_VOXELS = 0.5


@dataclass(frozen=True)
class Outlines:
    """Per structure (arrays (N,), mm; slopes ds/da dimensionless; NaN = not traced)."""

    height_anterior: np.ndarray
    height_middle: np.ndarray
    height_posterior: np.ndarray
    depth: np.ndarray
    slope_superior: np.ndarray
    slope_inferior: np.ndarray
    #: the endplates' directions, slopes ds/da over the :data:`DIRECTION_BAND`
    direction_superior: np.ndarray
    direction_inferior: np.ndarray
    #: (N, 6, 2) the six points ``(a, s)`` in the frame, in the order of :data:`POINTS`
    points: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        cols = (self.height_anterior, self.height_middle, self.height_posterior, self.depth)
        return np.all(np.isfinite(np.stack(cols)), axis=0)


@dataclass(frozen=True)
class Geometries:
    """``N`` structures measured: final frames, outlines, endplate directions (N, 3) (unit,
    canonical mm axes, posterior-pointing) and the wedge angle between the endplates
    (degrees, positive when the anterior side is the taller)."""

    frames: Frames
    outlines: Outlines
    superior_dir: np.ndarray
    inferior_dir: np.ndarray
    wedge_deg: np.ndarray


def _band(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(..., N, n) mask of ``x`` (N, n) between ``lo`` and ``hi`` (..., N) (either order)."""
    return (x >= np.minimum(lo, hi)[..., None]) & (x <= np.maximum(lo, hi)[..., None])


def _fit(x: np.ndarray, y: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, ...]:
    """:func:`lines`, with the mask of the points used and their count."""
    ok = sel & np.isfinite(y)
    cnt = np.add.reduce(ok, axis=-1)
    sum_ = np.add.reduce
    y0 = np.where(ok, y, 0.0)
    # ``x`` is finite (a grid): a product with the mask zeroes what a where would, and
    # costs less; the sums are the same sums, so the same numbers (up to the sign of 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = sum_(x * ok, axis=-1) / cnt
        ym = sum_(y0, axis=-1) / cnt
        dx = (x - xm[..., None]) * ok
        dy = (y0 - ym[..., None]) * ok
        sxx = sum_(dx * dx, axis=-1)
        slope = np.where(sxx > 1e-12, sum_(dx * dy, axis=-1) / sxx, np.nan)
    return slope, ym - slope * xm, ok, cnt


def lines(x: np.ndarray, y: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines ``y = slope * x + icpt`` along the last axis through the finite
    selected points of ``y`` (..., N, n) (``x`` (N, n) and ``sel`` broadcast to it); NaN
    where fewer than two distinct ``x``."""
    slope, icpt, _ok, _cnt = _fit(x, y, sel)
    return slope, icpt


def masked_median(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Along the last axis, the median of ``x[ok]`` (NaN where none): a sort, the numbers
    of ``np.nanmedian`` at a fraction of its cost."""
    v = np.sort(np.where(ok, x, np.inf), axis=-1)
    cnt = ok.sum(axis=-1)
    lo = np.take_along_axis(v, np.maximum((cnt - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(v, np.maximum(cnt // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(cnt > 0, 0.5 * (lo + hi), np.nan)


def _walls(s: np.ndarray, trace: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Wall lines ``a = p * s + q``, ``p`` and ``q`` (2, N) for the front and back
    ``trace`` (2, N, n_s) over the ``rows`` (N or 2 x N, n_s); a vertical line through the
    median of the selected rows where there are fewer than 3 (a thin disc, coarse grid)."""
    p, q, ok, cnt = _fit(s, trace, rows)
    enough = (cnt >= 3) & np.isfinite(p)
    if enough.all():  # the usual case: no median needed
        return p, q
    few = ~enough  # the median of those rows only
    q = q.copy()
    q[few] = masked_median(np.broadcast_to(trace, ok.shape)[few], ok[few])
    return np.where(enough, p, 0.0), q


def _corners(
    walls: tuple[np.ndarray, ...], plates: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """``(a, s)``, each (2, 2, N) indexed [wall, endplate]: where the walls (front, back)
    ``a = p s + q`` meet the endplates (superior, inferior) ``s = m a + b``."""
    (p, q), (m, b) = walls, plates
    p, q = p[:, None], q[:, None]
    s = (m * q + b) / (1.0 - m * p)
    return p * s + q, s


def _end_bands(
    a: np.ndarray, front: np.ndarray, back: np.ndarray, band: tuple[float, float]
) -> np.ndarray:
    """(..., N, n) mask of the samples ``a`` (N, n) in ``band`` (fractions of the endplate
    inside each corner) at both ends of endplates running from ``front`` to ``back`` (...,
    N) (their corners' ``a``).  A band narrower than the sampling step (an endplate under
    10 samples long: a cervical body on 1.5 mm voxels) is widened about its centre to one
    step, so that it holds a sample."""
    f0, f1 = band
    span = back - front
    inset = 0.5 * (f0 + f1) * span
    half = np.maximum(0.5 * (f1 - f0) * np.abs(span), 0.5 * (a[:, 1] - a[:, 0]))  # mm
    sel = _band(a, front + inset - half, front + inset + half)
    sel |= _band(a, back - inset - half, back - inset + half)
    return sel


def outlines(
    boundaries: Traces,
    a: np.ndarray,
    s: np.ndarray,
    min_depth: float,
    refinements: int = REFINEMENTS,
) -> Outlines:
    """Heights, depth and endplate lines (module docstring) from the boundaries of
    :mod:`spinecensus.measure.boundaries` (``top``, ``bottom`` along the columns ``a``,
    ``front``, ``back`` along the rows ``s``, stacked as
    :data:`~spinecensus.measure.boundaries.Traces`); NaN where the depth is under
    ``min_depth`` mm.  ``refinements``: passes refining walls and rim bands from each
    other.  Both endplates, both walls and the four corners are fitted at once."""
    plates, sides = boundaries
    s_lo, s_hi = np.fmin.reduce(plates[0], axis=-1), np.fmax.reduce(plates[1], axis=-1)
    rows = _band(s, s_lo + MARGIN_ROWS * (s_hi - s_lo), s_hi - MARGIN_ROWS * (s_hi - s_lo))
    walls = _walls(s, sides, rows)
    s_mid = 0.5 * (s_lo + s_hi)
    front, back = walls[0] * s_mid + walls[1]  # the walls at mid-height: both endplates'
    for _pass in range(refinements + 1):
        rim = lines(a, plates, _end_bands(a, front, back, RIM_BAND))  # (m, b), (2, N) each
        _ca, cs = _corners(walls, rim)
        quarter = 0.25 * (cs[:, 1] - cs[:, 0])  # each wall's middle half between its corners
        walls = _walls(s, sides, _band(s, cs[:, 0] + quarter, cs[:, 1] - quarter))
        ca, cs = _corners(walls, rim)
        front, back = ca  # each endplate's corners' a
    m = lines(a, plates, _end_bands(a, front, back, DIRECTION_BAND))[0]
    dirs = np.where(np.isfinite(m), m, rim[0])
    a0, a1 = walls[0] * s_mid + walls[1]
    depth = a1 - a0
    mid = _band(a, a0 + (0.5 - MIDDLE_HALF_BAND) * depth, a0 + (0.5 + MIDDLE_HALF_BAND) * depth)
    h_mid = nanmean(np.where(mid, plates[1] - plates[0], np.nan))
    da, ds = ca[:, 1] - ca[:, 0], cs[:, 1] - cs[:, 0]
    h_ant, h_post = np.sqrt(da * da + ds * ds)  # each wall's corner to corner
    bad = ~(depth > min_depth)
    h_ant, h_mid, h_post, depth = (np.where(bad, np.nan, x) for x in (h_ant, h_mid, h_post, depth))
    points = _points(ca, cs, a0 + 0.5 * depth, nanmean(np.where(mid, plates, np.nan)))
    points[bad] = np.nan
    return Outlines(h_ant, h_mid, h_post, depth, rim[0][0], rim[0][1], dirs[0], dirs[1], points)


def _points(ca: np.ndarray, cs: np.ndarray, a_mid: np.ndarray, s_mid: np.ndarray) -> np.ndarray:
    """(N, 6, 2) the :data:`POINTS` ``(a, s)`` in the frame, mm: the corners ``(ca, cs)``
    (2, 2, N) [wall, endplate] of :func:`_corners`, and the middle height's ends at
    mid-depth ``a_mid`` (N,), ``s_mid`` (2, N) the mean superior and inferior boundary over
    the central band, for drawing (:mod:`spinecensus.census.subject_qc`)."""
    n = a_mid.shape[0]
    points = np.empty((n, len(POINTS), 2))
    points[:, :4, 0] = ca.transpose(2, 1, 0).reshape(n, 4)  # endplate-major, as POINTS
    points[:, :4, 1] = cs.transpose(2, 1, 0).reshape(n, 4)
    points[:, 4:, 0] = a_mid[:, None]
    points[:, 4:, 1] = s_mid.T
    return points


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def measure_structures(
    instances: np.ndarray,
    ids: np.ndarray,
    m: Moments,
    spacing_mm,
    si_hint: np.ndarray | None = None,
    first: Frames | None = None,
) -> Geometries:
    """Measure the instances ``ids`` of ``instances`` (canonical order) with their moments
    ``m``; ``si_hint`` (N, 3), NaN rows for none: first guesses of their inferior axes;
    ``first``: :func:`~spinecensus.measure.midsagittal.initial_frames` of ``m`` without
    a hint, when the caller has them.

    Each frame is turned until its structure's endplate bisector is within
    :data:`ANGLE_TOL_DEG` (at most :data:`MAX_ITERATIONS` coarse samplings of the whole
    plane; only the structures still turning are sampled again); then, on the final
    frames, the boundaries are traced again finely about that outline and the middle
    height is read across slices (:mod:`spinecensus.measure.boundaries`).  A structure
    whose fine outline fails keeps its coarse one."""
    sp = np.asarray(spacing_mm, dtype=float)
    vol = padded(instances)
    if first is None:
        frames = initial_frames(m, si_hint)
    elif si_hint is None:
        frames = first
    else:
        frames = hinted_frames(first, si_hint)
    inplane = min(sp[1], sp[2])
    steps = (float(np.clip(EDGE_STEP_VOXELS * inplane, 0.1, 0.75)),
             float(np.clip(ACROSS_STEP_VOXELS * inplane, 0.2, 1.5)))  # fmt: skip
    coarse = float(np.clip(COARSE_STEP_VOXELS * inplane, 0.4, 3.0))
    size = np.sqrt(12 * np.stack([np.einsum("ni,nij,nj->n", v, m.cov, v)
                                  for v in (frames.si, frames.ap)])).min(axis=0)  # fmt: skip
    step_of = np.where(size >= COARSE_MIN_STEPS * coarse, coarse, steps[1])
    n = ids.size
    cols = {k: np.full((n, len(POINTS), 2) if k == "points" else n, np.nan)
            for k in Outlines.__dataclass_fields__}  # fmt: skip
    todo = np.arange(n)
    for it in range(MAX_ITERATIONS):
        # one batch whatever the steps: each structure is sampled on its own grid
        sub, step = _take(frames, todo), step_of[todo]
        ext = plane_extents(m.take(todo), sub, float(max(sp[1], sp[2])) + 2 * step)
        out = outlines(*coarse_traces(vol, ids[todo], sp, sub, ext, step), 2 * steps[1])
        for k in cols:
            cols[k][todo] = getattr(out, k)
        phi = 0.5 * (
            np.arctan(cols["slope_superior"][todo]) + np.arctan(cols["slope_inferior"][todo])
        )
        turn = np.isfinite(phi) & (np.abs(np.degrees(phi)) >= ANGLE_TOL_DEG)
        if not turn.any() or it == MAX_ITERATIONS - 1:
            break
        frames = _put(frames, todo[turn], _take(frames, todo[turn]).rotated(phi[turn]))
        todo = todo[turn]
    sigma = EDGE_SIGMA_VOXELS * inplane
    out = _refined(vol, ids, sp, frames, m, Outlines(**cols), steps, sigma, step_of)
    sup = _unit(frames.ap + out.direction_superior[:, None] * frames.si)
    inf = _unit(frames.ap + out.direction_inferior[:, None] * frames.si)
    wedge = np.degrees(np.arctan(out.direction_superior) - np.arctan(out.direction_inferior))
    return Geometries(frames, out, sup, inf, wedge)


def _refined(
    vol: np.ndarray,
    ids: np.ndarray,
    sp: np.ndarray,
    frames: Frames,
    m: Moments,
    coarse: Outlines,
    steps: tuple[float, float],
    sigma: float,
    reach: np.ndarray,
) -> Outlines:
    """The outlines from the fine traces about the ``coarse`` ones (kept where the fine
    outline fails), with the middle height read across slices where that succeeds."""
    if ids.size == 0 or not coarse.ok.any():
        return coarse
    pts = np.where(np.isfinite(coarse.points), coarse.points, 0.0)
    bounds, a, s = fine_traces(vol, ids, sp, frames, pts, steps, sigma, reach)
    fine = outlines(bounds, a, s, 2 * steps[1])
    keep = fine.ok | ~coarse.ok
    out = Outlines(**{k: np.where(keep.reshape((-1,) + (1,) * (v.ndim - 1)), v, getattr(coarse, k))
                      for k, v in vars(fine).items()})  # fmt: skip
    top, bottom = middle_across_slices(
        vol, ids, sp, frames, m, out.points, MIDDLE_HALF_BAND * out.depth, steps
    )
    ok = np.isfinite(top) & np.isfinite(bottom) & out.ok
    points = out.points.copy()
    points[ok, 4, 1], points[ok, 5, 1] = top[ok], bottom[ok]
    return replace(out, height_middle=np.where(ok, bottom - top, out.height_middle), points=points)


def _take(f: Frames, k: np.ndarray) -> Frames:
    return Frames(f.centre[k], f.lr[k], f.si[k], f.ap[k])


def _put(f: Frames, k: np.ndarray, new: Frames) -> Frames:
    arrays = {}
    for name in ("centre", "lr", "si", "ap"):
        arr = getattr(f, name).copy()
        arr[k] = getattr(new, name)
        arrays[name] = arr
    return Frames(**arrays)
