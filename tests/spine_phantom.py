"""A minimal synthetic spine phantom for the split / labeling / volume tests (synthetic).

Independent of ``spinecensus.synthetic`` on purpose: a second, simpler generator whose
ground truth is built differently (per-structure tests against the planes perpendicular
to a sinusoidal centreline) than the splitter works (planes fitted to disc voxels).
Canonical order (slice, superior->inferior, anterior->posterior), semantic 0/1/2.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from spinecensus.anatomy import labels

#: C2's dens: height and half-width (mm, before ``scale``)
DENS_MM = (14.0, 4.0)


@dataclass
class Phantom:
    semantic: np.ndarray
    instances: np.ndarray
    id_to_name: dict[int, str]
    spacing_mm: tuple[float, float, float]


@lru_cache(maxsize=32)
def make_phantom(
    variant: str = "normal",
    spacing_mm: tuple[float, float, float] = (4.0, 2.0, 2.0),
    amplitude_mm: float = 12.0,
    n_vertebrae: int | None = None,
    scale: float = 1.0,
    shape: tuple[int, int, int] | None = None,
    arc_deg: float | None = None,
) -> Phantom:
    """Whole spine C2..S1 of ``variant`` (sacralization fuses L5 into S1: no L4-S1 disc gap
    beyond the fused body; the GT names follow the schema), on a curved centreline.

    Sizes (mm, before ``scale``): vertebral body heights 13 (cervical) -> 20 (thoracic)
    -> 26 (lumbar), discs 5 -> 9 mm, sacrum 45 mm; body half-widths 10-22 mm lateral,
    8-17 mm AP.  C2 carries a dens (``DENS_MM``: 14 mm tall, 4 mm half-width) above its
    body, as the count-origin check expects of C2 (not on the arc phantom).
    ``n_vertebrae`` keeps only the top N vertebrae (no sacrum then).
    ``arc_deg``: instead of the sinusoid, a circular arc turning by that angle from C2 to
    the sacrum (a strongly bent spine: far disc planes cut through other vertebrae).
    Cached: callers must copy arrays before modifying them.
    """
    names = list(labels.structures(variant))  # type: ignore[arg-type]
    heights: list[float] = []
    radii: list[tuple[float, float]] = []
    for nm in names:
        if labels.is_disc(nm):
            r = labels.region(nm)
            heights.append({"cervical": 5.0, "thoracic": 6.0, "lumbar": 9.0, "sacral": 9.0}[r])
        else:
            r = labels.region(nm)
            heights.append({"cervical": 13.0, "thoracic": 20.0, "lumbar": 26.0, "sacral": 45.0}[r])
        rr = {"cervical": (10.0, 8.0), "thoracic": (15.0, 12.0), "lumbar": (20.0, 15.0)}.get(
            labels.region(nm), (22.0, 17.0)
        )
        radii.append(rr)
    if variant == "sacralization":
        # L5 fused into the sacrum: the sacrum is taller (it carries the fused L5 body)
        heights[-1] += 26.0 + 9.0
    if n_vertebrae is not None:
        names = names[: 2 * n_vertebrae - 1]
        heights = heights[: len(names)]
        radii = radii[: len(names)]
    seg_ids = list(range(1, len(names) + 1))
    if arc_deg is None:
        # the dens: a narrow segment above the C2 body, part of instance 1 (C2); the arc
        # phantom (not anatomical, a test of the splitter's planes) keeps its old geometry
        seg_ids = [1, *seg_ids]
        heights = [DENS_MM[0], *heights]
        radii = [(DENS_MM[1], DENS_MM[1]), *radii]
    h = np.asarray(heights) * scale
    rad = np.asarray(radii) * scale
    bounds = np.concatenate([[0.0], np.cumsum(h)]) + 10.0 * scale
    total = bounds[-1] + 10.0 * scale
    sp = np.asarray(spacing_mm, dtype=float)
    amp = amplitude_mm * scale
    if arc_deg is not None:
        return _arc_phantom(names, seg_ids, bounds, total, rad, sp, np.deg2rad(arc_deg), scale)
    if shape is None:
        shape = (
            int(np.ceil(2 * (rad[:, 0].max() + 4) / sp[0])),
            int(np.ceil(total / sp[1])),
            int(np.ceil((2 * rad[:, 1].max() + 2 * amp + 10 * scale) / sp[2])),
        )
    mid_x = (shape[0] - 1) * sp[0] / 2
    mid_z = (shape[2] - 1) * sp[2] / 2
    period = total / 1.5

    def centre(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        return np.stack(
            [np.full_like(s, mid_x), s, mid_z + amp * np.sin(2 * np.pi * s / period)], -1
        )

    def tangent(s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=float)
        t = np.stack(
            [
                np.zeros_like(s),
                np.ones_like(s),
                amp * 2 * np.pi / period * np.cos(2 * np.pi * s / period),
            ],
            -1,
        )
        return t / np.linalg.norm(t, axis=-1, keepdims=True)

    return _rasterise(names, seg_ids, bounds, rad, sp, shape, centre, tangent)


def _arc_phantom(names, seg_ids, bounds, total, rad, sp, arc, scale) -> Phantom:
    r_arc = total / arc
    margin = rad.max() + 6 * scale
    phis = np.linspace(0, arc, 200)
    ys, zs = r_arc * np.sin(phis), r_arc * (1 - np.cos(phis))
    y0, z0 = margin - ys.min(), margin - zs.min()
    shape = (
        int(np.ceil(2 * (rad[:, 0].max() + 4) / sp[0])),
        int(np.ceil((ys.max() - ys.min() + 2 * margin) / sp[1])),
        int(np.ceil((zs.max() - zs.min() + 2 * margin) / sp[2])),
    )
    mid_x = (shape[0] - 1) * sp[0] / 2

    def centre(s: np.ndarray) -> np.ndarray:
        phi = np.asarray(s, dtype=float) / r_arc
        return np.stack(
            [np.full_like(phi, mid_x), y0 + r_arc * np.sin(phi), z0 + r_arc * (1 - np.cos(phi))],
            -1,
        )

    def tangent(s: np.ndarray) -> np.ndarray:
        phi = np.asarray(s, dtype=float) / r_arc
        return np.stack([np.zeros_like(phi), np.cos(phi), np.sin(phi)], -1)

    return _rasterise(names, seg_ids, bounds, rad, sp, shape, centre, tangent)


def _rasterise(names, seg_ids, bounds, rad, sp, shape, centre, tangent) -> Phantom:
    grid = np.stack(
        np.meshgrid(*[np.arange(n) * sp[a] for a, n in enumerate(shape)], indexing="ij"), -1
    )
    inst = np.zeros(shape, dtype=np.uint16)
    p_b, t_b = centre(bounds), tangent(bounds)
    for i, iid in enumerate(seg_ids):
        a_side = (grid - p_b[i]) @ t_b[i] >= 0
        b_side = (grid - p_b[i + 1]) @ t_b[i + 1] < 0
        mid = 0.5 * (bounds[i] + bounds[i + 1])
        pc, tc = centre(mid), tangent(mid)
        rel = grid - pc
        along = rel @ tc
        near = np.abs(along) <= bounds[i + 1] - bounds[i]  # this segment, not a far one
        rel = rel - along[..., None] * tc  # cross-section offset
        lateral = np.array([1.0, 0.0, 0.0])
        ap = np.cross(tc, lateral)
        ell = (rel @ lateral / rad[i, 0]) ** 2 + (rel @ ap / rad[i, 1]) ** 2 <= 1.0
        inst[a_side & b_side & ell & near & (inst == 0)] = iid
    sem = np.zeros(shape, dtype=np.uint8)
    is_disc = np.array([False] + [labels.is_disc(n) for n in names])
    sem[inst > 0] = np.where(is_disc[inst[inst > 0]], 2, 1)
    return Phantom(sem, inst, {i + 1: n for i, n in enumerate(names)}, tuple(sp))  # type: ignore[arg-type]


def dice_per_instance(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each truth id with the same predicted id (ids must correspond)."""
    n = int(max(pred.max(), truth.max()))
    both = np.bincount(truth[(pred == truth) & (truth > 0)].ravel(), minlength=n + 1)
    sp = np.bincount(pred.ravel(), minlength=n + 1)
    st = np.bincount(truth.ravel(), minlength=n + 1)
    ids = np.flatnonzero(st[1:]) + 1
    return 2 * both[ids] / (sp[ids] + st[ids])
