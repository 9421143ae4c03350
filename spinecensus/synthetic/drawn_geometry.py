"""The drawn geometry of a synthetic subject's bodies and discs: anterior, middle and
posterior heights and endplate lines, read off the shapes the painter draws.

Definitions (the six-point morphometry of ``docs/morphometrics.md``, applied to the drawn,
continuous outline rather than to a voxel mask): every structure is cut by its
mid-sagittal plane (``w = 0`` of the spine frame, :mod:`spinecensus.synthetic.centreline`);
its outline there is traced from the same formulas the painter uses
(:func:`spinecensus.synthetic.column_profile.endplate_offset`, the profiles' walls), on a
:data:`GRID_MM` grid of the spine frame with the crossings interpolated, and mapped to
world millimetres (rows = inferior, columns = posterior).  In a frame whose
antero-posterior axis bisects the two endplate lines:

* the walls are least-squares lines through the middle half of each wall's height (first
  the rows :data:`MARGIN_ROWS` inside the structure's extent);
* each endplate line is the least-squares line through the outline's rim bands,
  :data:`RIM_BAND` (5-15 %) of the endplate's length inside each corner: the flat ring of
  an endplate, outside its central concavity; each endplate's direction (its tilt, for
  the angles) the least-squares slope of the outline over :data:`DIRECTION_BAND` (5-35 %)
  inside each corner;
* the corners are where the endplate lines meet the walls; the anterior and posterior
  heights are the distances between a wall's two corners, the middle height the mean
  outline-to-outline distance over the central 10 % of the depth (so it includes the
  endplates' concavity, and a biconcave fracture's depression).

These are the heights "of the body as drawn" that ``spinecensus measure`` should recover
from a perfect mask.  A height between the drawn corners themselves (the painted box) is
larger than these by about 0.8 x the endplate concavity (the rim lines lie inside the
concave endplates): 0.4-1.4 mm, a difference of definition, not of drawing.  Tracing is
exact to ~0.01 mm for bodies; the anterior height of a thin thoracic disc (its bulge meets
the body's corner there) moves by up to 0.1 mm with the grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.centreline import Centreline
from spinecensus.synthetic.column_plan import ColumnPlan
from spinecensus.synthetic.column_profile import ColumnProfile, endplate_offset

#: rim bands of the endplate lines and direction bands of the endplates (fractions of the
#: endplate inside each corner), the central band of the middle height (fraction of the
#: depth either side of mid-depth) and the first wall rows (fractions of the height from
#: each end): docs/morphometrics.md
RIM_BAND = (0.05, 0.15)
DIRECTION_BAND = (0.05, 0.35)
MIDDLE_HALF_BAND = 0.05
MARGIN_ROWS = 0.3
#: spine-frame grid (mm) the outline is traced on; crossings are interpolated between its
#: samples, so the outline is exact to a few hundredths of a mm
GRID_MM = 0.2
#: samples along each stretch of the outline used for a line fit or a mean (every
#: 0.02-0.15 mm: rim bands are 1.5-4 mm, walls 3-15 mm)
SAMPLES = 101
_UNIT = np.linspace(0.0, 1.0, SAMPLES)
#: the frame is turned until its antero-posterior axis bisects the endplate lines to this
#: (radians; the corner-to-corner heights move by far less than 0.01 mm within it)
FRAME_TOL_RAD = 1e-3
#: a disc's pockets (endplate concavity plus a biconcave depression, < 9 mm) are looked
#: for this far (mm) into its bodies
DISC_REACH_MM = 12.0


@dataclass(frozen=True)
class Geometry:
    """One structure in its mid-sagittal plane: heights and depth (mm), endplate lines'
    directions (unit (inferior, posterior) world vectors, posterior-pointing)."""

    height_anterior: float
    height_middle: float
    height_posterior: float
    depth: float
    superior_dir: tuple[float, float]
    inferior_dir: tuple[float, float]

    @property
    def tilts_deg(self) -> tuple[float, float]:
        """Endplate tilts (superior, inferior), degrees: the angle of each line below the
        posterior axis, positive when its posterior end is the lower."""
        (si, pi), (ii, pp) = self.superior_dir, self.inferior_dir
        return math.degrees(math.atan2(si, pi)), math.degrees(math.atan2(ii, pp))


def gradable(name: str) -> bool:
    """A free vertebral body (C3 .. L6): not C2 (dens) nor sacral, as graded by
    ``spinecensus.measure.genant``."""
    return labels.is_vertebra(name) and name != "C2" and not name.startswith("S")


def _segment_index(plan: ColumnPlan, name: str) -> int:
    """Index in ``plan.segments`` of the body or disc ``name`` (the first piece)."""
    for k, g in enumerate(plan.segments):
        if g.name == name and g.sid > 0 and g.kind in (1, 2):
            return k
    raise KeyError(f"no body or disc {name!r} in the plan")


def _section_range(plan: ColumnPlan, prof: ColumnProfile, name: str) -> tuple[float, float, float]:
    """(s_lo, s_hi, sign) of the spine-frame rows holding ``name``, one grid step beyond
    it: a body lies between its discs' segments (sign +1: inside where the disc boundary
    is passed), a disc reaches into its bodies by their endplate concavity and any
    biconcave depression (sign -1)."""
    k = _segment_index(plan, name)
    segs = plan.segments
    g = segs[k]
    if g.kind == 1:
        return segs[k - 1].s1 - GRID_MM, segs[k + 1].s0 + GRID_MM, 1.0
    i = prof.idx(np.arange(g.s0 - DISC_REACH_MM, g.s1 + DISC_REACH_MM, 1.0))
    reach = float(np.max(prof.d_c[i] + (prof.dish[i] if prof.dish is not None else 0.0)))
    return g.s0 - reach - 2 * GRID_MM, g.s1 + reach + 2 * GRID_MM, -1.0


def _field(prof: ColumnProfile, s: np.ndarray, v: np.ndarray, sign: float) -> np.ndarray:
    """(n_s, n_v) field, > 0 inside the structure: min(1 - q, sign * dist) with the
    painter's cross-section ``q`` (at w = 0) and disc distance ``dist`` (mm)."""
    i = prof.idx(s)
    front, back = prof.front[i], prof.back[i]
    a = np.maximum((back - front) / 2, 1e-3)
    v0 = (back + front) / 2
    lab = (prof.kind[i] > 0) & (prof.sid[i] > 0)
    q = np.where(lab[:, None], np.abs((v[None, :] - v0[:, None]) / a[:, None]) ** 2.5, 9.0)
    dist = (np.abs(s - prof.d_m[i]) - prof.d_h[i])[:, None] - endplate_offset(prof, i[:, None], q)
    return np.minimum(1.0 - q, sign * dist)


def _crossings(f: np.ndarray, x: np.ndarray, last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Along axis 0 of ``f`` (coordinates ``x``): per column, the first (or ``last``)
    crossing into ``f > 0``, linearly interpolated; returns (columns with one, coordinate)."""
    if last:
        cols, c = _crossings(f[::-1], x[::-1], False)
        return cols, c
    inside = f > 0
    has = inside.any(axis=0) & ~inside[0]
    k = np.argmax(inside, axis=0)[has]
    cols = np.flatnonzero(has)
    f0, f1 = f[k - 1, cols], f[k, cols]
    t = np.clip(-f0 / (f1 - f0), 0.0, 1.0)
    return cols, x[k - 1] + t * (x[k] - x[k - 1])


def _outline_world(
    plan: ColumnPlan, cl: Centreline, prof: ColumnProfile, name: str
) -> dict[str, np.ndarray]:
    """World (y, z) points (n, 2) of the outline of ``name`` at w = 0: ``top``/``bottom``
    (crossings along s, one per v column), ``front``/``back`` (along v, one per row)."""
    s_lo, s_hi, sign = _section_range(plan, prof, name)
    s = np.arange(s_lo, s_hi + GRID_MM / 2, GRID_MM)
    i = prof.idx(s)
    v = np.arange(prof.front[i].min() - 1.0, prof.back[i].max() + 1.0, GRID_MM)
    f = _field(prof, s, v, sign)
    out = {}
    for key, axis, last in (("top", 0, False), ("bottom", 0, True),
                            ("front", 1, False), ("back", 1, True)):  # fmt: skip
        if axis == 0:
            cols, c = _crossings(f, s, last)
            ss, vv = c, v[cols]
        else:
            rows, c = _crossings(f.T, v, last)
            ss, vv = s[rows], c
        y, z = cl.points(ss, vv)
        out[key] = np.stack([y, z], axis=1)
    return out


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line ``y = p x + q`` (closed form: polyfit costs 10x more; the local
    frame's coordinates are a few cm, so the sums are well conditioned)."""
    n, sx, sy = x.size, float(x.sum()), float(y.sum())
    p = (n * float(x @ y) - sx * sy) / (n * float(x @ x) - sx * sx)
    return p, (sy - p * sx) / n


def _corner(wall: tuple[float, float], plate: tuple[float, float]) -> np.ndarray:
    """(a, s) where the wall ``a = p s + q`` meets the endplate ``s = m a + b``."""
    (p, q), (m, b) = wall, plate
    s = (m * q + b) / (1.0 - m * p)
    return np.array([p * s + q, s])


def _samples(lo: float, hi: float) -> np.ndarray:
    """:data:`SAMPLES` evenly spaced points from ``lo`` to ``hi``."""
    return lo + (hi - lo) * _UNIT


def _six_point(curves: Mapping[str, np.ndarray]):
    """Heights, depth and endplate lines from the outline in a local frame: ``curves``
    maps top/bottom to (n, 2) arrays (a, s) and front/back to (s, a), each sorted by its
    first column.  Returns (ha, hm, hp, depth, superior line, inferior line, the
    endplates' direction slopes (superior, inferior))."""

    def at(key: str, x: np.ndarray) -> np.ndarray:
        c = curves[key]
        return np.interp(x, c[:, 0], c[:, 1])

    def band_samples(ends: tuple[float, float], band: tuple[float, float]) -> np.ndarray:
        e0, e1 = ends
        span = e1 - e0
        lo, hi = band
        return np.concatenate([_samples(e0 + lo * span, e0 + hi * span),
                               _samples(e1 - hi * span, e1 - lo * span)])  # fmt: skip

    def plate(key: str, ends: tuple[float, float], band=RIM_BAND) -> tuple[float, float]:
        a = band_samples(ends, band)
        return _fit(a, at(key, a))

    s_lo, s_hi = curves["top"][:, 1].min(), curves["bottom"][:, 1].max()
    rows = _samples(s_lo + MARGIN_ROWS * (s_hi - s_lo), s_hi - MARGIN_ROWS * (s_hi - s_lo))
    walls = [_fit(rows, at(k, rows)) for k in ("front", "back")]
    s_mid = 0.5 * (s_lo + s_hi)
    a0, a1 = (p * s_mid + q for p, q in walls)
    ends = {"top": (a0, a1), "bottom": (a0, a1)}
    for _pass in range(2):  # the measurement's first pass and its one refinement
        sup, inf = plate("top", ends["top"]), plate("bottom", ends["bottom"])
        new = []
        for wall, key in zip(walls, ("front", "back"), strict=True):
            top, bot = _corner(wall, sup)[1], _corner(wall, inf)[1]
            r = _samples(top + 0.25 * (bot - top), bot - 0.25 * (bot - top))
            new.append(_fit(r, at(key, r)))
        walls = new
        ends = {k: (float(_corner(walls[0], ln)[0]), float(_corner(walls[1], ln)[0]))
                for k, ln in (("top", sup), ("bottom", inf))}  # fmt: skip
    a0, a1 = (p * s_mid + q for p, q in walls)
    depth = a1 - a0
    mid = _samples(a0 + (0.5 - MIDDLE_HALF_BAND) * depth, a0 + (0.5 + MIDDLE_HALF_BAND) * depth)
    hm = float(np.mean(at("bottom", mid) - at("top", mid)))
    # the final endplate lines: the direction bands' slope through the rim bands' centroid
    ha, hp = (float(np.linalg.norm(_corner(w, inf) - _corner(w, sup))) for w in walls)
    dirs = tuple(plate(k, ends[k], DIRECTION_BAND)[0] for k in ("top", "bottom"))
    return ha, hm, hp, float(depth), sup, inf, dirs


def _local(points: np.ndarray, centre: np.ndarray, ap: np.ndarray, si: np.ndarray):
    rel = points - centre
    return rel @ ap, rel @ si


def structure_geometry(
    plan: ColumnPlan, cl: Centreline, prof: ColumnProfile, name: str
) -> Geometry:
    """Heights (mm) and endplate lines of the drawn body or disc ``name`` (module doc)."""
    world = _outline_world(plan, cl, prof, name)
    centre = np.concatenate(list(world.values())).mean(axis=0)
    k = _segment_index(plan, name)
    g = plan.segments[k]
    # the endplates are normal to the column at the segment's ends: their bisector first
    th = float(np.mean(np.interp([g.s0, g.s1], cl.s, cl.theta)))
    si = np.array([math.cos(th), math.sin(th)])  # (inferior, posterior) world components
    ap = np.array([-math.sin(th), math.cos(th)])
    for _it in range(8):
        curves = {}
        for key in ("top", "bottom", "front", "back"):
            a, s = _local(world[key], centre, ap, si)
            pair = np.stack([a, s] if key in ("top", "bottom") else [s, a], axis=1)
            curves[key] = pair[np.argsort(pair[:, 0])]
        ha, hm, hp, depth, sup, inf, slopes = _six_point(curves)
        phi = 0.5 * (math.atan(sup[0]) + math.atan(inf[0]))
        if abs(phi) < FRAME_TOL_RAD:
            break
        ap, si = math.cos(phi) * ap + math.sin(phi) * si, -math.sin(phi) * ap + math.cos(phi) * si
    dirs = []
    for m in slopes:
        d = ap + m * si
        d = d / np.linalg.norm(d)
        dirs.append((float(d[0]), float(d[1])) if d[1] >= 0 else (float(-d[0]), float(-d[1])))
    return Geometry(ha, hm, hp, depth, dirs[0], dirs[1])


def column_geometry(
    plan: ColumnPlan, cl: Centreline, prof: ColumnProfile, names: Sequence[str] | None = None
) -> dict[str, Geometry]:
    """:func:`structure_geometry` of ``names`` (default: every free body C3 .. L6 and every
    labelled disc of the plan)."""
    if names is None:
        names = [n for n in plan.names if gradable(n) or labels.is_disc(n)]
    return {n: structure_geometry(plan, cl, prof, n) for n in names}
