"""The voxel grid of one subject: spacing, slices, and a field of view around the spine.

World coordinates are mm along the canonical axes (``spinecensus.io``): ``x`` lateral
(axis 0, toward right), ``y`` inferior (axis 1), ``z`` posterior (axis 2); the centreline of
:mod:`spinecensus.synthetic.centreline` runs in the (y, z) plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spinecensus.synthetic.centreline import Centreline
from spinecensus.synthetic.column_plan import ColumnPlan
from spinecensus.synthetic.config import SyntheticConfig


@dataclass
class Grid:
    """Voxel-centre coordinates (mm) of the canonical grid, and its spacing (mm)."""

    x: np.ndarray  # lateral (R+) coordinates of slices, mm
    y: np.ndarray  # inferior coordinates of rows, mm
    z: np.ndarray  # posterior coordinates of columns, mm
    spacing: tuple[float, float, float]


@dataclass
class Sampling:
    """Drawn voxel spacing (mm, canonical axis order), the slices' lateral positions (mm),
    and the lateral offset (mm) and tilt (tan of the angle) of the spine's midsagittal plane."""

    spacing: tuple[float, float, float]
    x: np.ndarray
    x_offset_mm: float
    tilt: float


def draw_sampling(rng: np.random.Generator, cfg: SyntheticConfig) -> Sampling:
    """Spacing (in-plane SI, AP, then slice), slice count, offset and tilt of the spine."""
    sy = float(rng.uniform(*cfg.inplane_spacing_mm))
    sz = float(rng.uniform(*cfg.inplane_spacing_mm))
    sx = float(rng.uniform(*cfg.slice_spacing_mm))
    nx = int(np.clip(round(rng.uniform(*cfg.lateral_fov_mm) / sx), cfg.min_slices,
                     cfg.max_slices))  # fmt: skip
    x_off = float(rng.uniform(-cfg.lateral_offset_mm, cfg.lateral_offset_mm))
    tilt = math.tan(math.radians(rng.uniform(-cfg.lateral_tilt_deg, cfg.lateral_tilt_deg)))
    x = (np.arange(nx) - (nx - 1) / 2) * sx
    return Sampling((sx, sy, sz), x, x_off, tilt)


def draw_rows(
    plan: ColumnPlan, cl: Centreline, sy: float, rng: np.random.Generator, cfg: SyntheticConfig
) -> np.ndarray:
    """Row coordinates ``y`` (mm): from above the skull base to below the coccyx tip."""
    y_top = float(cl.at(-15.0)[0]) - float(rng.uniform(*cfg.top_margin_mm))
    tip_y = float(cl.point(plan.s_bottom, -5.0)[0])
    y_bot = tip_y + float(rng.uniform(*cfg.bottom_margin_mm))
    ny = int(math.ceil((y_bot - y_top) / sy))
    return y_top + np.arange(ny) * sy


def draw_columns(
    plan: ColumnPlan,
    cl: Centreline,
    z_skin_back: float,
    sz: float,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    scale: float,
) -> np.ndarray:
    """Column coordinates ``z`` (mm): air behind the posterior skin at ``z_skin_back``, a
    drawn AP field of view, widened where needed to hold the whole column."""
    z_back = z_skin_back
    z_back += float(rng.uniform(*cfg.posterior_margin_mm))
    ap = float(rng.uniform(*cfg.ap_fov_mm))
    # the whole column (bodies' anterior surfaces + 15 mm) must be inside the AP field of view
    s_col = np.arange(-20.0, plan.s_bottom, 2.0)
    _, cz_, cth_ = cl.at(s_col)
    z_front = float(np.min(cz_ - (40.0 * scale + 15.0) * np.cos(cth_)))
    ap = max(ap, z_back - z_front)
    nz = int(math.ceil(ap / sz))
    return z_back - (nz - 1) * sz + np.arange(nz) * sz
