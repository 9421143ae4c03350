"""Withheld outlines (spinecensus.measure.plausibility) and the disc axes a body's first
frame starts from.

Every test here runs on synthetic data: hand-made frames and outlines, or voxel columns of
known geometry (``body_phantom``) whose discs are replaced by the kinds of fragments a
segmentation model leaves (a blob beside the column, a sliver of a disc crossing the disc
space at an angle).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from body_phantom import Level, build
from scipy import ndimage

from spinecensus.measure import plausibility as pl
from spinecensus.measure.heights import POINTS, Outlines
from spinecensus.measure.midsagittal import Frames, initial_frames, moments
from spinecensus.measure.morphometrics import measure_subject, write_measurements

COARSE = (4.0, 1.0, 1.0)  # canonical (slice, row, column) spacing, mm
HEIGHTS = ["height_anterior_mm", "height_middle_mm", "height_posterior_mm"]


def _frames(si_deg: list[float], lr_deg: list[float] | None = None) -> Frames:
    """Frames whose inferior axis is turned ``si_deg`` from the scanner's inferior axis
    towards posterior, and whose plane normal is turned ``lr_deg`` about the inferior
    axis."""
    n = len(si_deg)
    lr_deg = lr_deg or [0.0] * n
    t, r = np.radians(si_deg), np.radians(lr_deg)
    si = np.stack([np.zeros(n), np.cos(t), np.sin(t)], axis=1)
    lr = np.stack([np.cos(r), np.zeros(n), np.sin(r)], axis=1)
    lr = lr - np.sum(lr * si, axis=1, keepdims=True) * si
    lr /= np.linalg.norm(lr, axis=1, keepdims=True)
    return Frames(np.zeros((n, 3)), lr, si, np.cross(lr, si))


def _outlines(heights: list[tuple[float, float, float]], depth: list[float]) -> Outlines:
    h = np.asarray(heights, dtype=float)
    n = len(depth)
    z = np.zeros(n)
    return Outlines(h[:, 0], h[:, 1], h[:, 2], np.asarray(depth, float), z, z, z, z,
                    np.zeros((n, len(POINTS), 2)))  # fmt: skip


#: a lumbar column of 5 structures (body, disc, body, disc, body), ids 1-5
BODY, DISC = (28.0, 26.0, 27.0), (10.0, 11.0, 7.0)
IS_DISC = np.array([False, True, False, True, False])
IDS = np.arange(1, 6)


def test_consistent_column_is_not_withheld():
    """Synthetic: bodies and discs of lumbar size whose frames turn by a segment angle each
    (5-10 deg) and whose depths differ by 10 %: nothing withheld."""
    out = pl.withheld(
        IDS, IS_DISC, _frames([0, 5, 10, 15, 22], [0, 3, 6, 4, 2]),
        _outlines([BODY, DISC, BODY, DISC, BODY], [33, 36, 34, 37, 32]),
    )  # fmt: skip
    assert list(out) == [None] * 5


def test_each_rule_names_its_structure():
    """Synthetic: a disc turned 70 deg against all its neighbours (frame), a disc half as
    deep as its neighbours and one 1.6 times as deep (depth), a body whose middle height
    is 1.5 times its walls (middle; a disc of the same heights bulges and passes)."""
    frames = _frames([0, 70, 10, 15, 22])
    out = pl.withheld(IDS, IS_DISC, frames, _outlines([BODY] + [DISC] * 3 + [BODY], [33] * 5))
    assert list(out) == [None, pl.FRAME, None, None, None]
    out = pl.withheld(IDS, IS_DISC, _frames([0] * 5), _outlines([BODY] * 5, [33, 16, 34, 55, 32]))
    assert list(out) == [None, pl.DEPTH, None, pl.DEPTH, None]
    bulge = (20.0, 30.0, 19.0)
    out = pl.withheld(IDS, IS_DISC, _frames([0] * 5), _outlines([bulge] * 5, [33] * 5))
    assert list(out) == [pl.MIDDLE, None, pl.MIDDLE, None, pl.MIDDLE]


def test_plane_normal_and_withheld_neighbours():
    """Synthetic: a plane normal 50 deg off its neighbours' is a frame failure; a body that
    agrees only with a neighbour withheld for its depth is one too (the withheld
    neighbour cannot vouch for it), while one that also agrees with a sound neighbour is
    not; a structure without any measured neighbour is only checked against itself."""
    out = pl.withheld(
        IDS, IS_DISC, _frames([0] * 5, [0, 0, 50, 0, 0]), _outlines([BODY] * 5, [33] * 5)
    )
    assert list(out) == [None, None, pl.FRAME, None, None]
    # the last body (id 5) turned with the fragment disc above it (id 4), which is too shallow
    frames = _frames([0, 0, 0, 60, 60])
    out = pl.withheld(IDS, IS_DISC, frames, _outlines([BODY] * 5, [33, 34, 33, 12, 33]))
    assert list(out) == [None, None, None, pl.DEPTH, pl.FRAME]
    lone = pl.withheld(np.array([1, 9]), np.array([False, False]), _frames([0, 80]),
                       _outlines([BODY, BODY], [33, 10]))  # fmt: skip
    assert list(lone) == [None, None]


def test_untraced_structure_is_nobodys_neighbour():
    """Synthetic: a structure without an outline (NaN heights) is neither checked nor used
    as a neighbour: its 90 deg frame and zero depth change nothing."""
    outl = _outlines([BODY, (math.nan,) * 3, BODY, DISC, BODY], [33, math.nan, 33, 35, 33])
    out = pl.withheld(IDS, IS_DISC, _frames([0, 90, 5, 8, 10]), outl)
    assert list(out) == [None] * 5


def test_disc_axes_hint_drops_an_axis_far_from_the_flattest():
    """Synthetic: two agreeing axes are averaged; an axis 50 deg from the flattest one's is
    left out, whatever the order."""
    a, b, far = (np.array([0.0, math.cos(t), math.sin(t)]) for t in np.radians([20, 30, -30]))
    assert pl.disc_axes_hint([a, b], [10.0, 12.0]) == pytest.approx((a + b) / 2)
    assert pl.disc_axes_hint([far, b], [1.5, 12.0]) == pytest.approx(b)
    assert pl.disc_axes_hint([b, far], [12.0, 1.5]) == pytest.approx(b)


def test_disc_axis_weights_plate_rod_sliver():
    """Synthetic voxel shapes on a 2 x 1 x 1 mm grid: a disc-like plate (40 mm wide, 30 mm
    deep, 8 mm high) weighs far above the threshold; a rod along the antero-posterior axis
    and a sliver one slice thick (flat, but across the left-right axis) weigh 0."""
    vol = np.zeros((30, 40, 50), np.uint16)
    vol[5:25, 16:24, 10:40] = 1  # plate: 40 x 8 x 30 mm (slice x row x column)
    vol[2:4, 2:6, 5:45] = 2  # rod: 4 x 4 x 40 mm
    vol[28, 28:38, 10:40] = 3  # sliver: one slice, 10 x 30 mm
    ids = np.array([1, 2, 3])
    m = moments(vol, ids, ndimage.find_objects(vol), (2.0, 1.0, 1.0))
    w = pl.disc_axis_weights(m, initial_frames(m))
    assert w[0] > 5 * pl.MIN_DISC_FLATNESS
    assert list(w[1:]) == [0.0, 0.0]


@functools.cache
def _column():
    """An L1-S1 column with a lordosis on a 4 x 1 x 1 mm grid (built once; read-only)."""
    levels = [
        Level("L1", disc_ha=9, disc_hp=7),
        Level("L2", ha=27, hp=28, disc_ha=10, disc_hp=7),
        Level("L3", disc_ha=11, disc_hp=7),
        Level("L4", ha=28.5, hp=27.5, disc_ha=12, disc_hp=7),
        Level("L5", ha=28, hp=25, disc_ha=14, disc_hp=7),
        Level("S1", ha=30, hp=30, depth=34),
    ]
    return build(levels, COARSE, tau0_deg=-5.0, rot_si_deg=6.0)


def test_sound_column_has_no_flag():
    """Synthetic: every body and disc of a sound lordotic column is measured, none has a
    ``measure_flag``, and the alignment has nothing withheld."""
    inst, names, _truth = _column()
    table, spine = measure_subject(inst, names, COARSE)
    measured = table[table["label"] != "S1"]
    assert measured[HEIGHTS].notna().all().all()
    assert table["measure_flag"].isna().all()
    assert spine["lordosis_deg"] is not None and spine["withheld"] == {}


def test_fragment_for_a_disc_is_withheld_with_the_lordosis(tmp_path):
    """Synthetic, the failure of a model's mask seen on real MRI: the L5-S1 "disc" is a
    plate of 8 x 10 x 10 mm (two slices) beside the column.  It is withheld
    (``depth_disagrees``), S1's superior endplate (which would come from it) is NaN, the
    lordosis is null and says why; the bodies are unaffected.  The flag reaches
    ``morphometrics.parquet``."""
    inst, names, truth = _column()
    inst = inst.copy()
    ids = {n: i for i, n in names.items()}
    inst[inst == ids["L5-S1"]] = 0
    x, r, c = np.nonzero(inst == ids["L5"])
    inst[x.max() + 1 : x.max() + 3, r.max() - 5 : r.max() + 5, c.min() : c.min() + 10] = ids[
        "L5-S1"
    ]
    table, spine = measure_subject(inst, names, COARSE)
    t = table.set_index("label")
    assert pl.DEPTH in t.loc["L5-S1", "measure_flag"]
    assert t.loc["L5-S1", HEIGHTS].isna().all()
    assert math.isnan(t.loc["S1", "endplate_superior_deg"])
    assert spine["lordosis_deg"] is None
    assert spine["withheld"]["lordosis_deg"].startswith("L5-S1: ")
    assert "L5-S1" in spine["withheld"]["segment_angles_deg"]
    for body in ("L1", "L2", "L3", "L4", "L5"):
        got = t.loc[body, HEIGHTS].to_numpy(float)
        assert np.abs(got - truth.heights[body]).max() <= 0.75
    parquet, _js = write_measurements(table, spine, tmp_path)
    flags = pq.read_table(parquet).column("measure_flag").to_pylist()
    assert flags[list(t.index).index("L5-S1")] == t.loc["L5-S1", "measure_flag"]


def test_sliver_for_a_disc_does_not_turn_the_body_below():
    """Synthetic: the disc above the last body is replaced by a sliver crossing the disc
    space at 60 deg (80 mm long, 5 mm thick, in two slices).  The body's first frame no
    longer starts from the sliver's axis (its weight is 0): its heights stay within
    0.75 mm of the drawn ones (starting from the sliver they were 11 mm off); the sliver
    itself is withheld."""
    sp = (3.0, 1.0, 1.0)
    levels = [Level("L3", disc_ha=12, disc_hp=8), Level("L4", disc_ha=12, disc_hp=8),
              Level("L5", depth=34)]  # fmt: skip
    inst, names, truth = build(levels, sp, tau0_deg=10.0, rot_si_deg=5.0, rot_ap_deg=3.0)
    disc = inst == 4  # L4-L5
    x, r, c = np.nonzero(disc)
    centre = np.array([x.mean(), r.mean(), c.mean()]) * sp
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(inst.shape, sp, strict=True)],
                                indexing="ij"), axis=-1) - centre  # fmt: skip
    along = np.array([0.0, math.sin(math.radians(60)), math.cos(math.radians(60))])
    t = grid @ along
    across = grid[..., 1] * along[2] - grid[..., 2] * along[1]
    sliver = (np.abs(t) <= 40) & (np.abs(across) <= 2.5) & (np.abs(grid[..., 0]) <= 2.5)
    inst[disc] = 0
    inst[sliver & (inst == 0)] = 4
    table, _spine = measure_subject(inst, names, sp)
    tb = table.set_index("label")
    assert names[4] == "L4-L5" and tb.loc["L4-L5", "measure_flag"] is not None
    for body in ("L3", "L4", "L5"):
        got = tb.loc[body, HEIGHTS].to_numpy(float)
        assert np.abs(got - truth.heights[body]).max() <= 0.75
