"""The neck and trunk around the spine: skin outline, subcutaneous fat, muscle, and the
compartment in front of the column (mediastinum above the diaphragm dome, viscera below).

Distances are mm in front of / behind the posterior wall line of the bodies (the
centreline of :mod:`spinecensus.synthetic.centreline`), measured along the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.centreline import Centreline
from spinecensus.synthetic.column_plan import ColumnPlan, level_s, lumbar_vertebrae
from spinecensus.synthetic.config import SyntheticConfig
from spinecensus.synthetic.grid import Grid
from spinecensus.synthetic.tissues import AIR, FAT, HEART, MUSCLE, VISCERA


@dataclass
class BodyOutline:
    """Skin distances (mm) behind (``posterior``) and in front of (``anterior``) the
    posterior wall line at arc lengths ``s_knots`` (mm), and the fat thicknesses (mm)."""

    s_knots: list[float]
    posterior: np.ndarray
    anterior: np.ndarray
    fat_posterior_mm: float
    fat_anterior_mm: float
    girth: float  # body girth factor (includes the subject's size scale)


@dataclass
class SkinRows:
    """Per row (mm): arc length and centreline position/angle of the row, and the z of the
    posterior and anterior skin."""

    s: np.ndarray
    z_centre: np.ndarray
    theta: np.ndarray
    z_posterior: np.ndarray
    z_anterior: np.ndarray


def draw_body_outline(
    plan: ColumnPlan, rng: np.random.Generator, cfg: SyntheticConfig, scale: float
) -> BodyOutline:
    """Body outline (skin) distances from the posterior wall line, by level (mm)."""
    fat_p = float(rng.uniform(*cfg.fat_mm))
    fat_a = fat_p * float(rng.uniform(0.8, 1.5))
    girth = float(rng.uniform(0.85, 1.2)) * scale
    lumbar = lumbar_vertebrae(plan)
    ls = lambda name, frac=0.5: level_s(plan, name, frac)  # noqa: E731
    sk_s = [
        -160.0, -40.0, ls("C2"), ls("C5"), ls("T1"), ls("T4"), ls("T8"), ls("T12"),
        ls(lumbar[len(lumbar) // 2]), ls("S1", 0.0), ls("S1", 1.0), plan.s_bottom + 40.0,
    ]  # fmt: skip
    post = np.array([95, 70, 70, 60, 55, 55, 52, 60, 72, 60, 45, 45], float) * girth + fat_p - 15
    ant = np.array([110, 95, 85, 70, 90, 150, 175, 185, 195, 190, 150, 140], float) * girth
    ant += fat_a - 15
    return BodyOutline(sk_s, post, ant, fat_p, fat_a, girth)


def skin_rows(outline: BodyOutline, cl: Centreline, y: np.ndarray) -> SkinRows:
    """Skin outline per row, at the given distances in front of / behind the posterior wall
    line of the same row (single-valued per row even where the sacrum bends)."""
    s_row = np.interp(y, cl.y, cl.s)
    zc_row, th_row = np.interp(y, cl.y, cl.z), np.interp(y, cl.y, cl.theta)
    zp = zc_row + np.interp(s_row, outline.s_knots, outline.posterior)
    za = zc_row - np.interp(s_row, outline.s_knots, outline.anterior)
    return SkinRows(s_row, zc_row, th_row, zp, za)


def paint_trunk(
    grid: Grid,
    skin: SkinRows,
    outline: BodyOutline,
    plan: ColumnPlan,
    anomaly: str,
    scale: float,
) -> np.ndarray:
    """uint8 tissue volume (slices, rows, cols) of the trunk and neck: air outside the skin,
    subcutaneous fat, muscle, mediastinum (heart) / viscera in front of the column; the same
    in every slice."""
    z = grid.z
    za, zp = skin.z_anterior, skin.z_posterior
    fat_a, fat_p = outline.fat_anterior_mm, outline.fat_posterior_mm
    tissue = np.zeros((grid.x.size, grid.y.size, z.size), np.uint8)
    inside = (z[None, :] >= za[:, None]) & (z[None, :] <= zp[:, None])
    fat2d = inside & ((z[None, :] < za[:, None] + fat_a) | (z[None, :] > zp[:, None] - fat_p))
    # compartment in front of the column (beyond the bodies' anterior surfaces): mediastinum
    # in the thorax, viscera (bowel, mesenteric fat) in the abdomen and pelvis
    verts = plan.vertebrae or labels.vertebrae(anomaly)  # type: ignore[arg-type]
    dep_row = np.interp(skin.s, [plan.centre_s[n] for n in verts],
                        [plan.depth.get(n, 30.0) for n in verts])  # fmt: skip
    front_row = skin.z_centre - (dep_row + 6.0 * scale) / np.maximum(np.cos(skin.theta), 0.5)
    anterior = inside & ~fat2d & (z[None, :] < front_row[:, None])
    comp = _front_compartment(skin.s, front_row, z, plan, scale)
    soft = np.where(fat2d, FAT, np.where(inside, MUSCLE, AIR)).astype(np.uint8)
    soft = np.where(anterior, comp, soft).astype(np.uint8)
    tissue[:] = soft[None]
    return tissue


def _front_compartment(
    s_row: np.ndarray, front_row: np.ndarray, z: np.ndarray, plan: ColumnPlan, scale: float
) -> np.ndarray:
    """(rows, cols) tissue in front of the column: muscle in the neck (above T1), heart
    above the diaphragm, viscera below it.  The diaphragm is a dome: high anteriorly (~T9),
    low posteriorly (~T12)."""
    s_t1, s_t9, s_t12 = (plan.centre_s[n] for n in ("T1", "T9", "T12"))
    ahead = np.clip((front_row[:, None] - z[None, :]) / (80.0 * scale), 0.0, 1.0)
    s_dia = s_t12 - (s_t12 - s_t9) * np.sqrt(ahead)
    return np.where(s_row[:, None] < s_t1, MUSCLE, np.where(s_row[:, None] < s_dia, HEART, VISCERA))
