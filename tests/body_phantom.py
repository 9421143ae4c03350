"""Hand-made vertebral bodies and discs of known geometry, for the morphometrics tests.

Synthetic: every structure is drawn in one sagittal plane (``a`` posterior, ``s``
inferior, mm) of a column frame, as a quadrilateral whose endplates may carry a central
depression (zero in the outer 15 % of each endplate: the flat ring), extruded laterally
with a rounded (super-elliptic) cross-section symmetric about that plane.  The column
frame is rotated about the superior-inferior and the antero-posterior axes, so no
structure's mid-sagittal plane is a slice, and the voxel masks are drawn on an anisotropic
grid (canonical order: slice L->R, row S->I, column A->P).  Truth comes from the corners:
heights are corner-to-corner distances (six-point morphometry), endplate tilts are taken
in the scanner's sagittal plane exactly as :mod:`spinecensus.measure.alignment` defines
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Level:
    """A vertebral body (mm) and the disc below it (ignored for the last level)."""

    name: str
    depth: float = 35.0
    ha: float = 27.0
    hp: float = 27.0
    c_sup: float = 0.0  # central depression of the superior endplate, mm
    c_inf: float = 0.0  # of the inferior endplate
    disc_ha: float = 10.0
    disc_hp: float = 7.0


@dataclass
class Truth:
    heights: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    depth: dict[str, float] = field(default_factory=dict)
    tilt: dict[str, tuple[float, float]] = field(default_factory=dict)  # (sup, inf), deg


@dataclass
class _Quad:
    name: str
    corners: np.ndarray  # (4, 2) SA, SP, IP, IA in (a, s)
    c_sup: float
    c_inf: float


def _normal(d: np.ndarray) -> np.ndarray:
    return np.array([-d[1], d[0]])  # (1, 0) -> (0, 1): inferior


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _bump(t: np.ndarray) -> np.ndarray:
    """Central depression profile along an endplate (t = 0 anterior .. 1 posterior)."""
    return np.clip(1.0 - ((t - 0.5) / 0.35) ** 2, 0.0, None)


def layout(levels: list[Level], tau0_deg: float) -> tuple[list[_Quad], list[_Quad]]:
    """Bodies and discs, top to bottom; the first superior endplate tilted ``tau0_deg``."""
    d = np.array([math.cos(math.radians(tau0_deg)), math.sin(math.radians(tau0_deg))])
    sa = np.zeros(2)
    bodies, discs = [], []
    for k, lv in enumerate(levels):
        n = _normal(d)
        sp = sa + lv.depth * d
        ia, ip = sa + lv.ha * n, sp + lv.hp * n
        bodies.append(_Quad(lv.name, np.stack([sa, sp, ip, ia]), lv.c_sup, lv.c_inf))
        if k + 1 == len(levels):
            break
        n_i = _normal(_unit(ip - ia))
        nxt = levels[k + 1]
        sa_next = ia + lv.disc_ha * n_i
        d = _unit(ip + lv.disc_hp * n_i - sa_next)
        sp_next = sa_next + nxt.depth * d
        discs.append(_Quad(f"{lv.name}-{nxt.name}", np.stack([ia, ip, sp_next, sa_next]), 0, 0))
        sa = sa_next
    return bodies, discs


def rotation(rot_si_deg: float, rot_ap_deg: float) -> np.ndarray:
    """Columns: the column frame's (lateral, inferior, posterior) axes in canonical mm axes."""
    b, g = math.radians(rot_si_deg), math.radians(rot_ap_deg)
    r_si = np.array([[math.cos(b), 0, -math.sin(b)], [0, 1, 0], [math.sin(b), 0, math.cos(b)]])
    r_ap = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    return r_ap @ r_si


def _inside(q: _Quad, a: np.ndarray, s: np.ndarray, w: np.ndarray, hw: float) -> np.ndarray:
    """Voxels inside a structure: between its walls and (depressed) endplates, and inside
    the rounded lateral outline."""
    sa, sp, ip, ia = q.corners
    pts = np.stack([a, s], axis=-1)
    inside = np.ones(a.shape, bool)
    for p0, p1 in ((sa, sp), (sp, ip), (ip, ia), (ia, sa)):  # clockwise in (a, s)
        e = p1 - p0
        inside &= (e[0] * (pts[..., 1] - p0[1]) - e[1] * (pts[..., 0] - p0[0])) >= 0
    for p0, p1, c, sign in ((sa, sp, q.c_sup, 1.0), (ia, ip, q.c_inf, -1.0)):
        if c <= 0:
            continue
        e = p1 - p0
        t = ((pts - p0) @ e) / (e @ e)
        depth_in = sign * ((pts - p0) @ _normal(_unit(e)))  # mm inside from that endplate
        inside &= depth_in >= c * _bump(t)
    mid = (sa + sp + ip + ia) / 4
    axis = _unit((sp - sa) + (ip - ia))
    half = 0.5 * (np.linalg.norm(sp - sa) + np.linalg.norm(ip - ia)) / 2
    u = np.clip(np.abs((pts - mid) @ axis) / half, 0, 1)
    return inside & (np.abs(w) <= hw * np.sqrt(np.clip(1 - u**4, 0, None)))


def _depression_owner(
    q: _Quad, a: np.ndarray, s: np.ndarray, w: np.ndarray, hw: float
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of a body's quadrilateral cut out by its superior / inferior depression."""
    flat = _Quad(q.name, q.corners, 0.0, 0.0)
    full = _inside(flat, a, s, w, hw)
    sup = _inside(_Quad(q.name, q.corners, q.c_sup, 0.0), a, s, w, hw)
    inf = _inside(_Quad(q.name, q.corners, 0.0, q.c_inf), a, s, w, hw)
    return full & ~sup, full & ~inf


def build(
    levels: list[Level],
    spacing: tuple[float, float, float],
    tau0_deg: float = 10.0,
    rot_si_deg: float = 6.0,
    rot_ap_deg: float = 3.0,
    halfwidth: float = 22.0,
    margin: float = 12.0,
) -> tuple[np.ndarray, dict[int, str], Truth]:
    """Instance mask (uint16, canonical order), ``{id: name}`` (cranio-caudal) and truth."""
    bodies, discs = layout(levels, tau0_deg)
    rot = rotation(rot_si_deg, rot_ap_deg)
    allc = np.concatenate([q.corners for q in bodies])
    lo, hi = allc.min(axis=0) - margin, allc.max(axis=0) + margin
    local_box = np.array(
        [[w, s_, a_] for w in (-halfwidth - margin, halfwidth + margin)
         for s_ in (lo[1], hi[1]) for a_ in (lo[0], hi[0])]
    )  # fmt: skip
    world = local_box @ rot.T
    sp = np.asarray(spacing, dtype=float)
    shape = tuple(int(np.ceil((world.max(0) - world.min(0))[i] / sp[i])) + 1 for i in range(3))
    origin = world.min(axis=0)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    loc = ((grid.reshape(-1, 3) * sp + origin) @ rot).T  # (w, s, a) of every voxel centre
    flat = np.zeros(int(np.prod(shape)), np.uint16)
    order: list[_Quad] = []
    for k, body in enumerate(bodies):
        order.append(body)
        if k < len(discs):
            order.append(discs[k])
    ids = {q.name: i + 1 for i, q in enumerate(order)}

    def paint(q: _Quad, which, value: int) -> None:
        lo_q, hi_q = q.corners.min(axis=0) - 1.0, q.corners.max(axis=0) + 1.0
        near = np.flatnonzero(
            (loc[2] >= lo_q[0]) & (loc[2] <= hi_q[0]) & (loc[1] >= lo_q[1]) & (loc[1] <= hi_q[1])
        )
        hit = which(q, loc[2][near], loc[1][near], loc[0][near], halfwidth)
        flat[near[hit]] = value

    for q in discs:
        paint(q, _inside, ids[q.name])
    for k, q in enumerate(bodies):
        paint(q, _inside, ids[q.name])
        if k > 0:
            paint(q, lambda *x: _depression_owner(*x)[0], ids[discs[k - 1].name])
        if k < len(discs):
            paint(q, lambda *x: _depression_owner(*x)[1], ids[discs[k].name])
    inst = flat.reshape(shape)
    return inst, {i: n for n, i in ids.items()}, _truth(bodies, discs, rot)


def _tilt(e2d: np.ndarray, rot: np.ndarray) -> float:
    d = rot @ np.array([0.0, e2d[1], e2d[0]])
    if d[2] < 0:
        d = -d
    return math.degrees(math.atan2(d[1], d[2]))


def _truth(bodies: list[_Quad], discs: list[_Quad], rot: np.ndarray) -> Truth:
    t = Truth()
    for q in [*bodies, *discs]:
        sa, sp, ip, ia = q.corners
        n_s, n_i = _normal(_unit(sp - sa)), _normal(_unit(ip - ia))
        ms = (sa + sp) / 2 + q.c_sup * n_s
        mi = (ia + ip) / 2 - q.c_inf * n_i
        if q in discs:  # the disc fills the adjacent bodies' depressions
            k = discs.index(q)
            ms = (sa + sp) / 2 - bodies[k].c_inf * n_s
            mi = (ia + ip) / 2 + bodies[k + 1].c_sup * n_i
        t.heights[q.name] = (
            float(np.linalg.norm(ia - sa)),
            float(np.linalg.norm(mi - ms)),
            float(np.linalg.norm(ip - sp)),
        )
        t.depth[q.name] = float(np.linalg.norm((sp + ip) / 2 - (sa + ia) / 2))
        t.tilt[q.name] = (_tilt(sp - sa, rot), _tilt(ip - ia, rot))
    return t
