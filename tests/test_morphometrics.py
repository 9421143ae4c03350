"""Morphometrics (spinecensus.measure): heights, Genant grades, disc index, alignment, CLI.

Every test here runs on synthetic data: hand-made bodies and discs of known geometry
(``body_phantom``) drawn as voxel masks on anisotropic grids, tilted in the sagittal plane
and rotated about the superior-inferior and antero-posterior axes so that no structure's
mid-sagittal plane is a slice.
"""

from __future__ import annotations

import functools
import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from body_phantom import Level, build

from spinecensus import cli
from spinecensus.measure.genant import genant_grade
from spinecensus.measure.morphometrics import UNITS, measure_subject

FINE = (3.0, 0.5, 0.5)  # canonical (slice, row, column) spacing, mm
COARSE = (4.0, 1.0, 1.0)
HEIGHTS = ["height_anterior_mm", "height_middle_mm", "height_posterior_mm"]


def _by_label(levels, spacing, **kw):
    inst, names, truth = build(levels, spacing, **kw)
    table, spine = measure_subject(inst, names, spacing)
    return table.set_index("label"), spine, truth


def _height_errors(table, truth, names) -> np.ndarray:
    return np.array(
        [table.loc[n, HEIGHTS].to_numpy(float) - np.array(truth.heights[n]) for n in names]
    )


@pytest.mark.parametrize("spacing,tol", [(FINE, 0.5), (COARSE, 0.75)], ids=["0.5mm", "1.0mm"])
def test_heights_of_tilted_rotated_bodies_and_discs(spacing, tol):
    """Synthetic: heights of normal, wedged and concave bodies and of the discs between
    them within ``tol`` mm of the drawn geometry (0.5 mm on a 0.5 mm grid)."""
    levels = [
        Level("L1", c_sup=1.0, c_inf=1.5),
        Level("L2", ha=24.0, hp=27.5, c_sup=2.0, c_inf=2.0),
        Level("L3", ha=28.0, hp=26.0, c_sup=1.5, c_inf=1.5),
    ]
    table, _spine, truth = _by_label(levels, spacing, tau0_deg=-18.0, rot_si_deg=7.0)
    names = ["L1", "L1-L2", "L2", "L2-L3", "L3"]
    err = _height_errors(table, truth, names)
    assert np.abs(err).max() <= tol, dict(zip(names, err.round(2).tolist(), strict=True))
    for n in names:
        assert abs(table.loc[n, "depth_mm"] - truth.depth[n]) <= 2 * tol
        for col, t in zip(
            ("endplate_superior_deg", "endplate_inferior_deg"), truth.tilt[n], strict=True
        ):
            assert abs(table.loc[n, col] - t) <= 1.5
    assert not table["truncated"].any()
    assert (table.loc[["L1", "L2", "L3"], "kind"] == "vertebra").all()
    assert (table.loc[["L1-L2", "L2-L3"], "kind"] == "disc").all()


@pytest.mark.parametrize("reduction,grade", [(0.22, 1), (0.30, 2), (0.45, 3)])
@pytest.mark.parametrize("deformity", ["wedge", "biconcave", "crush"])
def test_planted_deformity_gets_its_genant_grade(deformity, reduction, grade):
    """Synthetic: a planted wedge (Ha = (1 - r) Hp), biconcave (central depressions making
    Hm = (1 - r) Hp) or crush (whole body (1 - r) of its neighbours) deformity of L2 gets
    the planted ratio within 0.02, its Genant grade and deformity; its neighbours grade 0."""
    h = 27.0
    bad = {
        "wedge": Level("L2", ha=h * (1 - reduction)),
        "biconcave": Level("L2", c_sup=h * reduction / 2, c_inf=h * reduction / 2),
        "crush": Level("L2", ha=h * (1 - reduction), hp=h * (1 - reduction)),
    }[deformity]
    levels = [Level("L1"), bad, Level("L3")]
    table, _spine, _truth = _by_label(levels, FINE, tau0_deg=12.0, rot_si_deg=-6.0)
    col = {"wedge": "wedge_ratio", "biconcave": "biconcavity_ratio", "crush": "crush_ratio"}
    assert table.loc["L2", col[deformity]] == pytest.approx(1 - reduction, abs=0.02)
    assert table.loc["L2", "height_reduction"] == pytest.approx(reduction, abs=0.02)
    assert table.loc["L2", "genant_grade"] == grade
    assert table.loc["L2", "deformity"] == deformity
    assert list(table.loc[["L1", "L3"], "genant_grade"]) == [0, 0]


def test_undeformed_bodies_grade_zero():
    """Synthetic: normal endplate concavity (1.5 mm each, Hm/Hp ~ 0.83 with the wedge) and
    a physiological thoracic wedge (Ha/Hp ~ 0.91) stay grade 0 (never >= 2) on both grids."""
    levels = [
        Level("T10", ha=20.0, hp=22.0, depth=30.0, c_sup=1.5, c_inf=1.5, disc_ha=6, disc_hp=5),
        Level("T11", ha=21.0, hp=23.0, depth=31.0, c_sup=1.5, c_inf=1.5, disc_ha=6, disc_hp=5),
        Level("T12", ha=22.0, hp=24.0, depth=32.0, c_sup=1.5, c_inf=1.5),
    ]
    for spacing in (FINE, COARSE):
        table, _s, truth = _by_label(levels, spacing, tau0_deg=25.0, rot_si_deg=5.0)
        assert list(table.loc[["T10", "T11", "T12"], "genant_grade"]) == [0, 0, 0]
        _ha, hm, hp = truth.heights["T11"]
        assert table.loc["T11", "biconcavity_ratio"] == pytest.approx(hm / hp, abs=0.03)


@functools.cache
def _lumbar(spacing: tuple[float, float, float]):
    """The L1-S1 column (built once per grid; read-only): instances, names, truth."""
    return build(_lumbar_column(), spacing, tau0_deg=-5.0, rot_si_deg=6.0)


def _lumbar_column() -> list[Level]:
    return [
        Level("L1", disc_ha=9, disc_hp=7),
        Level("L2", ha=27, hp=28, disc_ha=10, disc_hp=7),
        Level("L3", ha=28, hp=28, c_sup=1.5, c_inf=1.5, disc_ha=11, disc_hp=7),
        Level("L4", ha=28.5, hp=27.5, disc_ha=12, disc_hp=7),
        Level("L5", ha=28, hp=25, disc_ha=14, disc_hp=7),
        Level("S1", ha=30, hp=30, depth=34),
    ]


@pytest.mark.parametrize("spacing", [FINE, COARSE], ids=["0.5mm", "1.0mm"])
def test_lordosis_of_planted_curve(spacing):
    """Synthetic: an L1-S1 column with a planted lordosis (~39 deg from wedged discs and
    bodies): lordosis within 2 deg of the drawn endplates, the segment angles add up to
    it, kyphosis is null (T4/T12 not in view), S1's endplate comes from the L5-S1 disc."""
    inst, names, truth = _lumbar(spacing)
    table, spine = measure_subject(inst, names, spacing)
    planted = truth.tilt["L1"][0] - truth.tilt["S1"][0]
    assert planted > 30
    assert spine["lordosis_deg"] == pytest.approx(planted, abs=2.0)
    assert spine["kyphosis_deg"] is None
    seg = spine["segment_angles_deg"]
    assert list(seg) == ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert sum(seg.values()) == pytest.approx(spine["lordosis_deg"], abs=1e-6)
    s1 = table.set_index("label").loc["S1"]
    assert math.isnan(s1["height_anterior_mm"]) and pd.isna(s1["genant_grade"])
    assert s1["endplate_superior_deg"] == pytest.approx(truth.tilt["S1"][0], abs=1.5)


def test_kyphosis_of_planted_thoracic_curve():
    """Synthetic: T4-T12 with anteriorly shorter bodies and discs: kyphosis (T4 superior to
    T12 inferior endplate, positive) within 2 deg of the drawn one, lordosis null."""
    levels = [
        Level(f"T{i}", depth=26.0, ha=19.0, hp=20.5, disc_ha=4.0, disc_hp=5.5) for i in range(4, 13)
    ]
    spacing = (3.0, 0.8, 0.8)
    inst, names, truth = build(levels, spacing, tau0_deg=-20.0, rot_si_deg=4.0, margin=8.0)
    _table, spine = measure_subject(inst, names, spacing)
    planted = truth.tilt["T12"][1] - truth.tilt["T4"][0]
    assert planted > 25
    assert spine["kyphosis_deg"] == pytest.approx(planted, abs=2.0)
    assert spine["lordosis_deg"] is None


def test_disc_heights_index_and_wedge():
    """Synthetic: disc heights within 0.5 mm, Farfan's index (Ha + Hp) / depth of the body
    above within 0.02 of the drawn one, disc wedge angle within 1.5 deg; bodies carry no
    disc columns and discs no Genant columns."""
    inst, names, truth = _lumbar(FINE)
    table = measure_subject(inst, names, FINE)[0].set_index("label")
    discs = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
    assert np.abs(_height_errors(table, truth, discs)).max() <= 0.5
    for d in discs:
        ha, _hm, hp = truth.heights[d]
        upper = d.split("-")[0]
        want = (ha + hp) / truth.depth[upper]
        assert table.loc[d, "disc_height_index"] == pytest.approx(want, abs=0.02)
        wedge = truth.tilt[d][0] - truth.tilt[d][1]
        assert table.loc[d, "disc_wedge_deg"] == pytest.approx(wedge, abs=1.5)
        assert pd.isna(table.loc[d, "genant_grade"])
    assert table.loc[["L1", "L3"], "disc_height_index"].isna().all()
    assert table.loc["L5-S1", "disc_wedge_deg"] > table.loc["L1-L2", "disc_wedge_deg"] + 5


def test_truncated_and_coarse_bodies_are_not_graded():
    """Synthetic: a body cut by the field of view is flagged ``truncated`` and not measured;
    on a grid where a body is under 8 voxels high it is measured but not graded."""
    inst, names, _truth = build([Level("L1"), Level("L2"), Level("L3")], FINE, tau0_deg=0.0)
    rows = np.flatnonzero((inst == 1).any(axis=(0, 2)))
    cut = inst[:, rows[len(rows) // 2] :, :]  # the top half of L1 is out of view
    table, _spine = measure_subject(cut, names, FINE)
    t = table.set_index("label")
    assert t.loc["L1", "truncated"] and math.isnan(t.loc["L1", "height_posterior_mm"])
    assert pd.isna(t.loc["L1", "genant_grade"])
    assert not t.loc["L2", "truncated"] and t.loc["L2", "genant_grade"] == 0
    coarse = (5.0, 4.5, 4.5)  # 27 mm / 4.5 mm = 6 voxels
    inst, names, _truth = build([Level("L1"), Level("L2"), Level("L3")], coarse)
    t = measure_subject(inst, names, coarse)[0].set_index("label")
    assert np.isfinite(t.loc["L2", "wedge_ratio"]) and pd.isna(t.loc["L2", "genant_grade"])


def test_genant_grade_thresholds():
    """Genant 1993: < 20 % -> 0, 20-25 % -> 1, 25-40 % -> 2, >= 40 % -> 3; NaN -> -1."""
    r = np.array([0.0, 0.199, 0.20, 0.249, 0.25, 0.399, 0.40, 0.9, np.nan])
    assert genant_grade(r).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1]


def test_measure_cli_writes_table_and_alignment(tmp_path, capsys):
    """Synthetic: ``spinecensus measure`` reads instances.nii.gz + labels.json as the
    analyse job writes them (stored orientation differs from canonical) and writes the
    table (units in the schema metadata) and alignment.json equal to measure_subject's."""
    spacing = COARSE
    inst, names, _truth = _lumbar(spacing)
    # store as (P, I, R) axes with the matching affine: the reader must reorient
    aff = np.zeros((4, 4))
    aff[1, 0], aff[2, 1], aff[0, 2], aff[3, 3] = -spacing[2], -spacing[1], spacing[0], 1.0
    nib.save(nib.Nifti1Image(np.transpose(inst, (2, 1, 0)), aff), tmp_path / "instances.nii.gz")
    (tmp_path / "labels.json").write_text(json.dumps({str(i): n for i, n in names.items()}))
    out = tmp_path / "out"
    rc = cli.main(
        ["measure", str(tmp_path / "instances.nii.gz"), str(tmp_path / "labels.json"),
         "--out", str(out)]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    table = pq.read_table(out / "morphometrics.parquet")
    assert json.loads(table.schema.metadata[b"spinecensus.units"]) == UNITS
    assert table.schema.field("height_anterior_mm").metadata[b"unit"] == b"mm"
    df = table.to_pandas()
    want, spine = measure_subject(inst, names, spacing)
    assert list(df["label"]) == [names[i] for i in sorted(names)]
    assert np.allclose(df["height_posterior_mm"], want["height_posterior_mm"], equal_nan=True)
    written = json.loads((out / "alignment.json").read_text())
    assert written["kyphosis_deg"] is None
    assert written["lordosis_deg"] == pytest.approx(spine["lordosis_deg"])


def test_measure_cli_rejects_bad_labels(tmp_path, capsys):
    """A labels file that is not {id: structure name} fails with exit 2 and names it."""
    inst, _names, _t = build([Level("L1"), Level("L2")], (4.0, 2.0, 2.0))
    nib.save(nib.Nifti1Image(inst, np.diag([4.0, 2.0, 2.0, 1.0])), tmp_path / "i.nii.gz")
    bad = tmp_path / "labels.json"
    bad.write_text(json.dumps({"1": "L1", "2": "spleen"}))
    rc = cli.main(["measure", str(tmp_path / "i.nii.gz"), str(bad), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err and "spleen" in err


def test_generator_subject_undeformed_and_aligned():
    """Synthetic (spinecensus.synthetic, default preset, undeformed anatomy): every free
    body C3-L5 and every disc is measured, none gets a Genant grade >= 2, the lumbar
    lordosis and thoracic kyphosis are in view and positive."""
    from spinecensus.synthetic import SyntheticConfig, generate_subject

    s = generate_subject(11, "normal", SyntheticConfig(), subject="M11")
    table, spine = measure_subject(s.instances, s.id_to_name, s.spacing_mm)
    t = table.set_index("label")
    free = [n for n in t.index if n[0] in "CTL" and "-" not in n and n != "C2"]
    assert len(free) == 22
    assert t.loc[free, HEIGHTS].notna().all().all()
    assert t.loc[t["kind"] == "disc", "height_middle_mm"].notna().all()
    assert (t.loc[free, "genant_grade"].dropna() < 2).all()
    assert 10 < spine["lordosis_deg"] < 90 and 5 < spine["kyphosis_deg"] < 80


def test_bodies_only_masks_strongly_tilted():
    """Synthetic: masks of vertebral bodies only (no discs, as in public body-only data),
    about as deep as high (no principal axis to trust) on a column tilted 40 deg: heights
    within 0.75 mm on a 1 mm grid, no false grade, segment angles within 2.5 deg and their
    sum within 2 deg (each body's axis starts from its neighbours' centroids; from the
    scanner axis it would turn the wrong way); no lordosis without S1's endplate (it
    comes from the L5-S1 disc)."""
    levels = [Level(f"L{i}", depth=29, ha=28, hp=28, disc_ha=9, disc_hp=8) for i in range(1, 6)]
    levels.append(Level("S1", depth=29, ha=30, hp=30))
    inst, names, truth = build(levels, COARSE, tau0_deg=-40.0, rot_si_deg=5.0)
    bodies = {i: n for i, n in names.items() if "-" not in n}
    inst = np.where(np.isin(inst, list(bodies)), inst, 0).astype(inst.dtype)
    table, spine = measure_subject(inst, bodies, COARSE)
    t = table.set_index("label")
    lumbar = ["L1", "L2", "L3", "L4", "L5"]
    assert np.abs(_height_errors(t, truth, lumbar)).max() <= 0.75
    assert list(t.loc[lumbar, "genant_grade"]) == [0] * 5
    assert spine["lordosis_deg"] is None
    seg = spine["segment_angles_deg"]
    for upper, lower in zip(lumbar[:-1], lumbar[1:], strict=True):
        want = truth.tilt[upper][0] - truth.tilt[lower][0]
        assert seg[f"{upper}-{lower}"] == pytest.approx(want, abs=2.5)  # two tilts, 1 mm grid
    total = sum(seg[f"{u}-{lo}"] for u, lo in zip(lumbar[:-1], lumbar[1:], strict=True))
    assert total == pytest.approx(truth.tilt["L1"][0] - truth.tilt["L5"][0], abs=2.0)


def test_edge_smoothing_is_a_normalised_gaussian():
    """Synthetic: the along-boundary smoothing of the fine traces is a normalised Gaussian
    of the given sigma (3 sigma taps, zero beyond the ends) along the chosen axis only."""
    from spinecensus.measure.boundaries import smooth

    x = np.zeros((2, 3, 21), np.float32)
    x[:, :, 10] = 1.0
    y = smooth(x, 1.5, axis=2)
    r = np.arange(-5, 6)  # ceil(3 sigma) taps either side
    w = np.exp(-0.5 * (r / 1.5) ** 2)
    assert np.allclose(y[0, 0, 5:16], w / w.sum(), atol=1e-6)
    assert np.allclose(y.sum(axis=2), 1.0, atol=1e-6)  # mass kept away from the ends
    along_1 = smooth(x, 1.5, axis=1)  # along axis 1 only: nothing leaks along axis 2
    assert (along_1[:, :, np.arange(21) != 10] == 0).all() and (along_1[:, :, 10] > 0).all()
    assert smooth(x, 0.0, axis=2) is x


def test_parabola_at_zero_across_slices():
    """Synthetic: the across-slice interpolation of the middle height recovers a
    boundary that varies as a parabola across the slices exactly, also from planes all on
    one side of the mid-sagittal plane; fewer than three usable planes give NaN."""
    from spinecensus.measure.boundaries import parabola_at_zero

    x = np.array([-3.3, -0.3, 2.7, 5.7])[:, None]  # slice offsets, mm
    t = 12.0 + 0.4 * x - 0.05 * x**2  # boundary s on each plane, mm
    ok = np.ones_like(t, dtype=bool)
    assert parabola_at_zero(t, x, ok)[0] == pytest.approx(12.0, abs=1e-9)
    assert parabola_at_zero(t[1:], x[1:], ok[1:])[0] == pytest.approx(12.0, abs=1e-9)
    ok[:2] = False
    assert np.isnan(parabola_at_zero(t, x, ok)[0])


@functools.cache
def _biconcave_subjects():
    """Three seeded generator subjects, each with a planted biconcave fracture (drawn:
    the central depression is deepest in the mid-sagittal plane, laterally too)."""
    from spinecensus.synthetic.cohort import cohort_subject
    from spinecensus.synthetic.truth import truth_json

    out = []
    for i in range(40):
        sub = cohort_subject(9, i, variant_rates={"fracture": 1.0})
        f = sub.drawn.fracture
        if f is not None and f.deformity == "biconcave":
            out.append((sub, truth_json(sub.instances, sub.id_to_name, sub.truth), f.level))
        if len(out) == 3:
            return out
    raise AssertionError("fewer than 3 biconcave fractures in 40 subjects")


def test_middle_height_across_slices_reads_the_depression(monkeypatch):
    """Synthetic (generator, default preset, 2.5-5 mm slices): the middle height of a
    planted biconcave fracture, read across slices, is within 0.6 mm of the drawn one;
    read from the mid-sagittal plane alone (the two nearest slices interpolated linearly)
    the depression's lateral curvature makes it taller (on these three, on average)."""
    from spinecensus.measure import boundaries

    def middle_errors() -> list[float]:
        errs = []
        for sub, truth, level in _biconcave_subjects():
            t = measure_subject(sub.instances, sub.id_to_name, sub.spacing_mm)[0]
            row = t.set_index("label").loc[level]
            errs.append(row["height_middle_mm"] - truth["vertebrae"][level]["height_middle_mm"])
        return errs

    across = middle_errors()
    assert np.abs(across).max() <= 0.6, across
    monkeypatch.setattr(boundaries, "MIDDLE_SLICES", 0)  # no planes: the plane's own reading
    plane = middle_errors()
    assert np.mean(plane) > np.mean(across) + 0.05, (plane, across)


def test_short_crushed_body_is_graded_against_its_neighbours():
    """Synthetic phantom on 1.5 mm voxels: a crushed L2, 10.5 mm high (7 voxels, under
    ``MIN_HEIGHT_VOXELS``) between 27 mm neighbours, is graded 3 by its crush ratio (its
    reduction is read against the neighbours' height); a body that short among bodies as
    short gets no grade."""
    grid = (4.0, 1.5, 1.5)
    crushed = [Level("L1"), Level("L2", ha=10.5, hp=10.5), Level("L3")]
    t, _spine, _truth = _by_label(crushed, grid, tau0_deg=-5.0, rot_si_deg=4.0)
    assert t.loc["L2", "height_posterior_mm"] < 8 * 1.5
    assert t.loc["L2", "deformity"] == "crush" and t.loc["L2", "genant_grade"] == 3
    assert t.loc["L1", "genant_grade"] == 0 and t.loc["L3", "genant_grade"] == 0
    short = [Level(n, depth=20.0, ha=10.5, hp=10.5) for n in ("C4", "C5", "C6")]
    t, _spine, _truth = _by_label(short, grid, tau0_deg=-5.0, rot_si_deg=4.0)
    assert t.loc["C5", ["height_posterior_mm"]].notna().all()
    assert pd.isna(t.loc["C5", "genant_grade"])
