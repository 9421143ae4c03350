"""Morphometrics pictures: the measured points, the heights drawn on the subject QC PNG, and
the report's per-level curves by age band.

Synthetic data throughout: hand-made bodies and discs of known geometry (``body_phantom``,
tilted and rotated so that no structure's mid-sagittal plane is a slice) and small
hand-made cohort tables.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from body_phantom import Level, build
from PIL import Image

from spinecensus.census import jobs, subject_qc
from spinecensus.census.morphometrics_figures import (
    ALL_AGES,
    age_bands,
    curves_png,
    level_curves,
    morphometrics_curves,
)
from spinecensus.census.strata import StrataSpec
from spinecensus.measure.heights import POINTS
from spinecensus.measure.morphometrics import measure_subject, measure_subject_with_landmarks

SPACING = (4.0, 1.0, 1.0)  # canonical (slice, row, column), mm: anisotropic, thick slices
HEIGHTS = ["height_anterior_mm", "height_middle_mm", "height_posterior_mm"]


@functools.cache
def _phantom():
    """Three bodies (L2 a wedge), two discs; measured once for the module."""
    inst, names, _truth = build([Level("L1"), Level("L2", ha=20.0), Level("L3")], SPACING)
    table, spine, points = measure_subject_with_landmarks(inst, names, SPACING)
    return inst, names, table.set_index("label"), spine, points


def test_landmarks_match_heights_and_lie_on_the_structure():
    """Synthetic phantom: each structure's six points give exactly its tabulated heights,
    lie on its outline (the nearest voxel centre of the structure is within half a voxel
    diagonal plus one in-plane voxel: a corner is where two fitted lines meet, a little
    outside a rounded corner of the mask), are ordered anterior -> posterior and
    superior -> inferior, and the middle height's midpoint is inside the structure."""
    inst, names, table, _spine, points = _phantom()
    sp = np.asarray(SPACING)
    by_name = {n: i for i, n in names.items()}
    assert set(points) == set(names.values())  # bodies and discs, all measured
    for name, p in points.items():
        assert p.shape == (len(POINTS), 3) and np.isfinite(p).all()
        heights = [np.linalg.norm(p[i] - p[j]) for i, j in ((2, 0), (5, 4), (3, 1))]
        np.testing.assert_allclose(heights, table.loc[name, HEIGHTS].to_numpy(float), atol=1e-9)
        vox_mm = np.argwhere(inst == by_name[name]) * sp
        nearest = np.min(np.linalg.norm(vox_mm[None] - p[:, None], axis=2), axis=1)
        assert nearest.max() <= 0.5 * np.linalg.norm(sp) + sp[1], (name, nearest)
        # columns (axis 2) grow posteriorly, rows (axis 1) inferiorly
        assert p[1, 2] > p[0, 2] + 10 and p[3, 2] > p[2, 2] + 10
        assert p[2, 1] > p[0, 1] + 3 and p[3, 1] > p[1, 1] + 3 and p[5, 1] > p[4, 1] + 3
        mid = np.round((p[4] + p[5]) / 2 / sp).astype(int)
        assert inst[tuple(mid)] == by_name[name]


def test_measure_subject_unchanged_by_landmarks():
    """Synthetic phantom: ``measure_subject`` returns the same table and alignment."""
    inst, names, table, spine, _points = _phantom()
    plain, plain_spine = measure_subject(inst, names, SPACING)
    pd.testing.assert_frame_equal(plain.set_index("label"), table)
    assert json.dumps(plain_spine, sort_keys=True) == json.dumps(spine, sort_keys=True)


def _colour_pixels(path, rgb) -> np.ndarray:
    im = np.asarray(Image.open(path).convert("RGB"))
    return np.argwhere(np.all(im == np.array(rgb, dtype=np.uint8), axis=2))  # (k, 2) y, x


def test_subject_png_draws_heights_and_endplates(tmp_path):
    """Synthetic phantom: without landmarks the picture has no pixel of the height or
    endplate colour; with them it has both, all inside the projected bodies' box; a
    graded body is named in the fracture colour."""
    inst, names, _table, _spine, points = _phantom()
    plain, drawn = tmp_path / "plain.png", tmp_path / "drawn.png"
    subject_qc.subject_png(plain, inst, names, SPACING, title="phantom")
    subject_qc.subject_png(
        drawn, inst, names, SPACING, title="phantom", landmarks=points, grades={"L2": 2}
    )
    for rgb in (subject_qc.HEIGHT_RGB, subject_qc.ENDPLATE_RGB):
        assert len(_colour_pixels(plain, rgb)) == 0
    # the text is anti-aliased: count strongly red pixels (the overlay's blend of the
    # palette over grey never has red more than 80 above green and blue)
    for png, want in ((plain, 0), (drawn, 10)):
        im = np.asarray(Image.open(png).convert("RGB")).astype(int)
        red = im[..., 0] - np.maximum(im[..., 1], im[..., 2]) > 150
        assert (red.sum() > want) if want else (red.sum() == 0)
    heights = _colour_pixels(drawn, subject_qc.HEIGHT_RGB)
    plates = _colour_pixels(drawn, subject_qc.ENDPLATE_RGB)
    assert len(heights) > 100 and len(plates) > 60  # 3 bodies x 3 heights, 2 endplates
    # the same projection as the picture's: rows of voxels -> y, columns -> x
    h, w = inst.shape[1:]
    out_h = 720
    sy = out_h / h
    sx = round(w * SPACING[2] * out_h / (h * SPACING[1])) / w
    bodies = {n: p for n, p in points.items() if "-" not in n}
    px = np.concatenate(
        list(subject_qc.landmark_pixels(bodies, SPACING, (60, 24), (sy, sx)).values())
    )
    lo, hi = px.min(axis=0) - 2, px.max(axis=0) + 2  # (x, y)
    for yx in (heights, plates):
        assert (yx[:, 1] >= lo[0]).all() and (yx[:, 1] <= hi[0]).all()
        assert (yx[:, 0] >= lo[1]).all() and (yx[:, 0] <= hi[1]).all()


def _cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hand-made tables: 6 subjects, ages 35-72 (bands 30-39 and 70-79), one without an
    age; L1, L2 bodies and the L1-L2 disc, the old band's heights lower."""
    subjects = pd.DataFrame({
        "subject": [f"s{i}" for i in range(6)],
        "processed": [True] * 6,
        "transitional_status": ["normal"] * 6,
        "sex": ["F", "M", "F", "M", "F", "M"],
        "age": [35.0, 38.0, 31.0, 72.0, 75.0, np.nan],
    })  # fmt: skip
    rows = []
    for i, age in enumerate(subjects["age"]):
        old = age >= 70
        for label, kind, hp, dhi in (("L1", "vertebra", 27.0, np.nan),
                                     ("L1-L2", "disc", np.nan, 0.6),
                                     ("L2", "vertebra", 28.0, np.nan)):  # fmt: skip
            rows.append({
                "subject": f"s{i}", "label": label, "kind": kind, "truncated": False,
                "height_posterior_mm": hp - 3.0 * old + 0.1 * i,
                "disc_height_index": dhi - 0.2 * old,
            })  # fmt: skip
    return pd.DataFrame(rows), subjects


def test_age_bands_and_level_curves():
    """Synthetic tables: bands as the strata label them; medians per band and level."""
    morpho, subjects = _cohort()
    spec = StrataSpec(("sex", "age"), "age", (0.0, 30.0, 40.0, 70.0, 80.0))
    bands = age_bands(subjects, spec)
    assert bands.to_dict() == {"s0": "age=30-39", "s1": "age=30-39", "s2": "age=30-39",
                               "s3": "age=70-79", "s4": "age=70-79", "s5": None}  # fmt: skip
    rows = morpho.assign(band=morpho["subject"].map(bands))
    c = level_curves(rows[rows["kind"] == "vertebra"], "height_posterior_mm")
    c = c.set_index(["band", "label"])
    assert c.loc[("age=30-39", "L1"), "n"] == 3
    assert c.loc[("age=30-39", "L1"), "p50"] == 27.1  # 27.0, 27.1, 27.2
    assert c.loc[("age=70-79", "L2"), "p50"] == 28.0 - 3.0 + 0.35
    assert not any(b is None for b, _l in c.index)  # no band for the subject without age
    no_age = age_bands(subjects.drop(columns="age"), spec)
    assert set(no_age) == {ALL_AGES} and len(no_age) == 6


def _write_tables(tmp_path, morpho: pd.DataFrame, subjects: pd.DataFrame, strata: dict):
    pq.write_table(pa.Table.from_pandas(morpho, preserve_index=False),
                   tmp_path / "morphometrics.parquet")  # fmt: skip
    pq.write_table(pa.Table.from_pandas(subjects, preserve_index=False),
                   tmp_path / "subjects.parquet")  # fmt: skip
    ref = pa.table({"label": pa.array([], pa.string())})
    ref = ref.replace_schema_metadata({b"spinecensus.strata": json.dumps(strata).encode()})
    pq.write_table(ref, tmp_path / "reference.parquet")


def test_curves_png_two_bands_no_ages_and_empty(tmp_path):
    """Synthetic tables: the figure is written from the tables (two age bands), without an
    age column (one pooled line), and with no measurement at all; the banded figure has
    the colours of two lines."""
    morpho, subjects = _cohort()
    strata = {"strata": ["sex"], "age_column": "age", "age_bins": [0, 30, 40, 70, 80]}
    _write_tables(tmp_path, morpho, subjects, strata)
    morphometrics_curves(tmp_path, tmp_path / "bands.png", min_n=1)
    pooled = tmp_path / "pooled"
    pooled.mkdir()
    _write_tables(pooled, morpho, subjects.drop(columns="age"), strata)
    morphometrics_curves(pooled, pooled / "one.png", min_n=1)
    # 3 and 2 subjects per band: under the default minimum no band is drawn, pooled (5) is
    morphometrics_curves(tmp_path, tmp_path / "sparse.png")
    morphometrics_curves(pooled, pooled / "pooled_default.png")
    empty = morpho.iloc[:0]
    curves_png(empty, age_bands(subjects, StrataSpec()), tmp_path / "empty.png")
    for png in (tmp_path / "bands.png", pooled / "one.png", tmp_path / "empty.png"):
        assert Image.open(png).size[0] >= 1000
    banded = np.asarray(Image.open(tmp_path / "bands.png").convert("RGB")).reshape(-1, 3)
    single = np.asarray(Image.open(pooled / "one.png").convert("RGB")).reshape(-1, 3)
    assert len(np.unique(banded, axis=0)) > len(np.unique(single, axis=0))
    sparse = np.asarray(Image.open(tmp_path / "sparse.png").convert("RGB")).reshape(-1, 3)
    pooled_default = np.asarray(Image.open(pooled / "pooled_default.png").convert("RGB"))
    assert len(np.unique(sparse, axis=0)) < len(np.unique(single, axis=0))
    assert len(np.unique(pooled_default.reshape(-1, 3), axis=0)) > len(np.unique(sparse, axis=0))


def test_cohort_qc_cli_takes_the_morphometrics_png():
    """The ``cohort-qc`` verb accepts the figure's path (the workflow passes it)."""
    argv = "cohort-qc --tables t --prevalence-png p.png --volumes-png v.png"
    a = jobs.build_parser().parse_args([*argv.split(), "--morphometrics-png", "m.png"])
    assert a.morphometrics_png == "m.png"
