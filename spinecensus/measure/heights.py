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
    quiet,
)
from spinecensus.measure.midsagittal import Frames, Moments, initial_frames, padded, plane_extents

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
    """(N, n) mask of ``x`` between ``lo`` and ``hi`` (N,) (either order)."""
    return (x >= np.minimum(lo, hi)[:, None]) & (x <= np.maximum(lo, hi)[:, None])


def lines(x: np.ndarray, y: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines ``y = slope * x + icpt`` per row through the finite selected
    points of (N, n) arrays; NaN where fewer than two distinct ``x``."""
    ok = sel & np.isfinite(y)
    cnt = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = np.where(ok, x, 0.0).sum(axis=1) / cnt
        ym = np.where(ok, y, 0.0).sum(axis=1) / cnt
        dx = np.where(ok, x - xm[:, None], 0.0)
        dy = np.where(ok, y - ym[:, None], 0.0)
        sxx = (dx * dx).sum(axis=1)
        slope = np.where(sxx > 1e-12, (dx * dy).sum(axis=1) / sxx, np.nan)
    return slope, ym - slope * xm


def _median(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Per row, the median of ``x[ok]`` (NaN where none): a sort, cheaper than nanmedian."""
    v = np.sort(np.where(ok, x, np.inf), axis=1)
    cnt = ok.sum(axis=1)
    lo = np.take_along_axis(v, np.maximum((cnt - 1) // 2, 0)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(v, np.maximum(cnt // 2, 0)[:, None], axis=1)[:, 0]
    return np.where(cnt > 0, 0.5 * (lo + hi), np.nan)


def _walls(s: np.ndarray, trace: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """Wall lines ``a = p * s + q``; a vertical line through the median of the selected
    rows where there are fewer than 3 (a thin disc on a coarse grid)."""
    p, q = lines(s, trace, rows)
    ok = rows & np.isfinite(trace)
    enough = (ok.sum(axis=1) >= 3) & np.isfinite(p)
    if enough.all():  # the usual case: no median needed
        return p, q
    return np.where(enough, p, 0.0), np.where(enough, q, _median(trace, ok))


def _corner(wall: tuple[np.ndarray, ...], plate: tuple[np.ndarray, ...]) -> np.ndarray:
    """(N, 2) = (a, s) where the wall ``a = p s + q`` meets the endplate ``s = m a + b``."""
    (p, q), (m, b) = wall, plate
    s = (m * q + b) / (1.0 - m * p)
    return np.stack([p * s + q, s], axis=1)


def _end_bands(a: np.ndarray, ends: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """(N, n) mask of the samples ``a`` in ``band`` (fractions of the endplate inside each
    corner) at both ends of endplates running from ``ends[:, 0]`` to ``ends[:, 1]``.  A
    band narrower than the sampling step (an endplate under 10 samples long: a cervical
    body on 1.5 mm voxels) is widened about its centre to one step, so that it holds a
    sample."""
    f0, f1 = band
    span = ends[:, 1] - ends[:, 0]
    inset = 0.5 * (f0 + f1) * span
    half = np.maximum(0.5 * (f1 - f0) * np.abs(span), 0.5 * (a[:, 1] - a[:, 0]))  # mm
    sel = _band(a, ends[:, 0] + inset - half, ends[:, 0] + inset + half)
    sel |= _band(a, ends[:, 1] - inset - half, ends[:, 1] - inset + half)
    return sel


def _plate(a: np.ndarray, trace: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, ...]:
    """Endplate lines ``s = m a + b`` through the :data:`RIM_BAND` samples of endplates
    running from ``ends[:, 0]`` to ``ends[:, 1]`` (their corners' ``a``)."""
    return lines(a, trace, _end_bands(a, ends, RIM_BAND))


def _direction(a: np.ndarray, trace: np.ndarray, ends: np.ndarray, rim_slope: np.ndarray):
    """Endplate slopes ``ds/da`` through the :data:`DIRECTION_BAND` samples (the rim
    line's ``rim_slope`` where they hold too few points)."""
    m, _ = lines(a, trace, _end_bands(a, ends, DIRECTION_BAND))
    return np.where(np.isfinite(m), m, rim_slope)


def _wall_rows(s: np.ndarray, wall, sup, inf) -> np.ndarray:
    """Rows of the middle half of each wall between its two corners."""
    top, bot = _corner(wall, sup)[:, 1], _corner(wall, inf)[:, 1]
    quarter = 0.25 * (bot - top)
    return _band(s, top + quarter, bot - quarter)


def outlines(
    boundaries: Traces,
    a: np.ndarray,
    s: np.ndarray,
    min_depth: float,
    refinements: int = REFINEMENTS,
) -> Outlines:
    """Heights, depth and endplate lines (module docstring) from the boundaries of
    :mod:`spinecensus.measure.boundaries` (``top``, ``bottom`` along the columns ``a``,
    ``front``, ``back`` along the rows ``s``); NaN where the depth is under ``min_depth``
    mm.  ``refinements``: passes refining walls and rim bands from each other."""
    top, bottom, front, back = boundaries
    with quiet():
        s_lo, s_hi = np.nanmin(top, axis=1), np.nanmax(bottom, axis=1)
    rows = _band(s, s_lo + MARGIN_ROWS * (s_hi - s_lo), s_hi - MARGIN_ROWS * (s_hi - s_lo))
    walls = (_walls(s, front, rows), _walls(s, back, rows))
    s_mid = 0.5 * (s_lo + s_hi)
    a0, a1 = (p * s_mid + q for p, q in walls)
    ends = {"sup": np.stack([a0, a1], 1), "inf": np.stack([a0, a1], 1)}
    for _pass in range(refinements + 1):
        sup, inf = _plate(a, top, ends["sup"]), _plate(a, bottom, ends["inf"])
        walls = tuple(
            _walls(s, trace, _wall_rows(s, wall, sup, inf))
            for wall, trace in zip(walls, (front, back), strict=True)
        )
        ends = {k: np.stack([_corner(walls[0], ln)[:, 0], _corner(walls[1], ln)[:, 0]], 1)
                for k, ln in (("sup", sup), ("inf", inf))}  # fmt: skip
    dirs = (_direction(a, top, ends["sup"], sup[0]), _direction(a, bottom, ends["inf"], inf[0]))
    a0, a1 = (p * s_mid + q for p, q in walls)
    depth = a1 - a0
    mid = _band(a, a0 + (0.5 - MIDDLE_HALF_BAND) * depth, a0 + (0.5 + MIDDLE_HALF_BAND) * depth)
    h_mid = np.where(mid, bottom - top, np.nan)
    with quiet():
        h_mid = np.nanmean(h_mid, axis=1)
    h_ant, h_post = (np.linalg.norm(_corner(w, inf) - _corner(w, sup), axis=1) for w in walls)
    bad = ~(depth > min_depth)
    h_ant, h_mid, h_post, depth = (np.where(bad, np.nan, x) for x in (h_ant, h_mid, h_post, depth))
    mids = (np.where(mid, top, np.nan), np.where(mid, bottom, np.nan))
    points = _points(walls, sup, inf, a0 + 0.5 * depth, mids)
    points[bad] = np.nan
    return Outlines(h_ant, h_mid, h_post, depth, sup[0], inf[0], *dirs, points)


def _points(
    walls: tuple[tuple[np.ndarray, ...], ...],
    sup: tuple[np.ndarray, ...],
    inf: tuple[np.ndarray, ...],
    a_mid: np.ndarray,
    central: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """(N, 6, 2) the :data:`POINTS` ``(a, s)`` in the frame, mm: the four corners, and the
    middle height's ends at mid-depth ``a_mid`` (``s`` the mean of the superior and of the
    inferior boundary ``central`` (N, n), NaN outside the central band), for drawing
    (:mod:`spinecensus.census.subject_qc`)."""
    with quiet():
        mids = [np.stack([a_mid, np.nanmean(x, axis=1)], axis=1) for x in central]
    corners = [_corner(w, plate) for plate in (sup, inf) for w in walls]
    return np.stack([*corners, *mids], axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def measure_structures(
    instances: np.ndarray,
    ids: np.ndarray,
    m: Moments,
    spacing_mm,
    si_hint: np.ndarray | None = None,
) -> Geometries:
    """Measure the instances ``ids`` of ``instances`` (canonical order) with their moments
    ``m``; ``si_hint`` (N, 3), NaN rows for none: first guesses of their inferior axes.

    Each frame is turned until its structure's endplate bisector is within
    :data:`ANGLE_TOL_DEG` (at most :data:`MAX_ITERATIONS` coarse samplings of the whole
    plane; only the structures still turning are sampled again); then, on the final
    frames, the boundaries are traced again finely about that outline and the middle
    height is read across slices (:mod:`spinecensus.measure.boundaries`).  A structure
    whose fine outline fails keeps its coarse one."""
    sp = np.asarray(spacing_mm, dtype=float)
    vol = padded(instances)
    frames = initial_frames(m, si_hint)
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
        for step in np.unique(step_of[todo]):
            group = todo[step_of[todo] == step]
            sub = _take(frames, group)
            margin = float(max(sp[1], sp[2])) + 2 * step
            ext = plane_extents(m.take(group), sub, margin)
            out = outlines(*coarse_traces(vol, ids[group], sp, sub, ext, step), 2 * steps[1])
            for k in cols:
                cols[k][group] = getattr(out, k)
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
