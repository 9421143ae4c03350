"""What makes measuring cheap in the analyse job changes no number: the split's boxes, the
moments from box projections, the sampling's single-dtype arithmetic, the bodies' axis
hints in one batch, and the pandas-free table the job writes.

Synthetic data throughout: the ``synthetic_tiny`` subjects of ``conftest.py`` (generated
whole spines on the coarse tiny grid) and seeded random arrays.
"""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import ndimage

from spinecensus.census.analyse_job import analyse
from spinecensus.io import load_mask
from spinecensus.measure import plausibility, structures
from spinecensus.measure.midsagittal import moments, padded, sample_points
from spinecensus.measure.morphometrics import (
    MORPHOMETRICS_SCHEMA,
    columns_arrow,
    measure_columns,
    measure_subject,
    measure_subject_with_landmarks,
)
from spinecensus.split.instances import split_instances


@pytest.fixture(scope="module")
def split_subject(synthetic_tiny):
    """A tiny synthetic whole spine split from its semantic mask, with its names."""
    sub = synthetic_tiny["normal"][0]
    split = split_instances(sub.semantic, sub.spacing_mm)
    names = {i: n for i, n in sub.id_to_name.items() if i <= split.n_instances}
    return sub, split, names


def test_split_boxes_are_find_objects(split_subject):
    """Synthetic: the split's boxes are exactly what ``ndimage.find_objects`` finds."""
    _sub, split, _names = split_subject
    assert split.n_instances > 5
    assert split.boxes == ndimage.find_objects(split.instances)


def test_boxes_given_or_found_measure_the_same(split_subject):
    """Synthetic: passing the split's boxes gives the same table, alignment and points as
    finding them, and the Arrow table equals the DataFrame's (NaN written as null)."""
    sub, split, names = split_subject
    found = measure_columns(split.instances, names, sub.spacing_mm)
    given = measure_columns(split.instances, names, sub.spacing_mm, split.boxes)
    assert columns_arrow(found[0]).equals(columns_arrow(given[0]))
    assert found[1] == given[1]
    assert found[2].keys() == given[2].keys() and found[2]
    assert all(np.array_equal(found[2][k], given[2][k]) for k in found[2])
    frame, _spine, _points = measure_subject_with_landmarks(split.instances, names, sub.spacing_mm)
    via_pandas = pa.Table.from_pandas(frame, schema=MORPHOMETRICS_SCHEMA, preserve_index=False)
    arrow = columns_arrow(given[0])
    assert arrow.equals(via_pandas.replace_schema_metadata(arrow.schema.metadata))
    assert arrow.column("height_anterior_mm").null_count > 0  # C2 and S1: NaN -> null


def test_moments_equal_voxel_list_moments():
    """Seeded random blobs: count, centroid (mm), covariance (mm²) and box corners equal
    those of the voxel coordinates listed with ``np.nonzero``."""
    rng = np.random.default_rng(3)
    vol = np.zeros((9, 40, 30), dtype=np.uint16)
    for iid in (1, 2, 3):
        lo = rng.integers(0, [4, 20, 15])
        vol[lo[0] : lo[0] + 5, lo[1] : lo[1] + 18, lo[2] : lo[2] + 14][
            rng.random((5, 18, 14)) < 0.6
        ] = iid
    sp = np.array([3.3, 0.7, 1.1])
    ids = np.array([1, 3, 2])
    m = moments(vol, ids, ndimage.find_objects(vol), sp)
    for k, iid in enumerate(ids):
        xyz = np.argwhere(vol == iid) * sp
        assert m.count[k] == len(xyz)
        np.testing.assert_allclose(m.centroid[k], xyz.mean(axis=0), rtol=0, atol=1e-9)
        np.testing.assert_allclose(m.cov[k], np.cov(xyz.T, bias=True), rtol=0, atol=1e-9)
        assert np.allclose(m.box[k].min(axis=0), xyz.min(axis=0))
        assert np.allclose(m.box[k].max(axis=0), xyz.max(axis=0))


def test_sample_points_is_trilinear_occupancy():
    """Seeded random instances and points: the sampling equals a plain float64 trilinear
    interpolation of each instance's binary mask (0 outside the volume) to float32
    rounding, on a uint8 and a uint16 (ids above 255) volume."""
    rng = np.random.default_rng(5)
    for top in (9, 300):
        inst = rng.integers(0, top, (6, 7, 8)).astype(np.uint16)
        vol = padded(inst)
        assert vol.dtype == (np.uint8 if top < 256 else np.uint16)
        ids = np.array([1, 4, top - 1])
        coords = [rng.uniform(-1.5, n + 0.5, (3, 5, 11)).astype(np.float32) for n in vol.shape]
        got = sample_points(vol, ids, coords)
        x, y, z = (c.astype(np.float64) for c in coords)
        want = np.zeros(got.shape)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    i, j, k = np.floor(x) + dx, np.floor(y) + dy, np.floor(z) + dz
                    inside = (i >= 0) & (i < vol.shape[0]) & (j >= 0) & (j < vol.shape[1])
                    inside &= (k >= 0) & (k < vol.shape[2])
                    v = vol[tuple(np.clip(a, 0, n - 1).astype(int) for a, n in
                                  zip((i, j, k), vol.shape, strict=True))]  # fmt: skip
                    w = (1 - np.abs(x - i)) * (1 - np.abs(y - j)) * (1 - np.abs(z - k))
                    want += np.where(inside & (v == ids[:, None, None]), w, 0.0)
        ok = (x >= 0) & (x < vol.shape[0] - 1) & (y >= 0) & (y < vol.shape[1] - 1)
        ok &= (z >= 0) & (z < vol.shape[2] - 1)
        want = np.where(ok, want, 0.0)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_batched_disc_hint_equals_the_rule_body_by_body():
    """Seeded random unit axes: :func:`plausibility.disc_axes_hints` on bodies padded to
    three discs (one, two or three real ones, weight 0 for padding) gives bit for bit the
    rule written out body by body: the mean of the real axes within ``HINT_AGREE_DEG`` of
    the axis of largest weight (the first on a tie)."""
    rng = np.random.default_rng(11)
    axes = rng.normal(size=(200, 3, 3)) * [0.3, 1.0, 0.3]
    axes[:, 1:] = axes[:, :1] + rng.normal(size=(200, 2, 3)) * 0.5
    axes /= np.linalg.norm(axes, axis=2, keepdims=True)
    weights = rng.uniform(0.1, 5.0, (200, 3))
    weights[:40, 1:] = 0.0  # one disc
    weights[40:120, 2] = 0.0  # two discs
    weights[60:70, 1] = weights[60:70, 0]  # ties
    got = plausibility.disc_axes_hints(axes, weights)
    agreeing = []
    for k in range(200):
        real = weights[k] > 0
        a, w = axes[k][real], weights[k][real]
        best = a[int(np.argmax(w))]
        cos = np.clip(np.abs(np.sum(a * best, axis=1)), 0.0, 1.0)
        agree = np.degrees(np.arccos(cos)) <= plausibility.HINT_AGREE_DEG
        agreeing.append(agree.sum())
        assert np.array_equal(got[k], a[agree].sum(axis=0) / agree.sum()), k
        assert np.array_equal(plausibility.disc_axes_hint(a, w), got[k]), k
    assert 0 < sum(1 for n in agreeing[40:] if n == 1) < 160  # a far axis is left out
    assert sum(1 for n in agreeing[40:] if n > 1) > 20  # and agreeing ones are averaged


def test_measuring_imports_neither_pandas_nor_ndimage():
    """The measuring modules the analyse job imports leave pandas and ``scipy.ndimage``
    unimported (about 0.7 s of imports per batch job)."""
    code = (
        "import sys, spinecensus.measure.morphometrics, spinecensus.census.morphometrics_tables, "
        "spinecensus.census.analyse_job; "
        "print(sorted(m for m in ('pandas', 'scipy.ndimage') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_neighbour_median_is_nanmedian():
    """Seeded random values (some NaN) and neighbourhoods (some empty): the sort-based
    median equals ``np.nanmedian`` bit for bit, NaN where no finite value is covered."""
    rng = np.random.default_rng(2)
    values = rng.normal(30.0, 5.0, 40)
    values[rng.random(40) < 0.2] = np.nan
    near = rng.random((40, 40)) < 0.15
    near[:3] = False
    got = plausibility._neighbour_median(values, near)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning):
        want = np.nanmedian(np.where(near, values[None, :], np.nan), axis=1)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(got[:3]).all() and np.isfinite(got).sum() > 20


def test_analyse_job_measures_with_the_splits_boxes(synthetic_tiny, tmp_path, monkeypatch):
    """Synthetic: the analyse job measures without searching for the instances again, and
    its ``morphometrics.parquet`` holds the numbers of ``measure_subject`` on the
    instances it wrote."""
    sub = synthetic_tiny["normal"][1]
    seg = tmp_path / "seg"
    seg.mkdir()
    nib.save(sub.to_nifti()[1], seg / "S1.nii.gz")
    searched = []
    monkeypatch.setattr(structures, "find_boxes", lambda inst: searched.append(inst))
    summary = analyse("S1", seg, tmp_path / "out", qc_png=False)
    assert summary["status"] == "ok" and searched == []
    out = tmp_path / "out"
    inst = load_mask(out / "instances.nii.gz").data
    names = json.loads((out / "labels.json").read_text())
    monkeypatch.undo()
    want, spine = measure_subject(inst, names, summary["spacing_mm"])
    got = pq.read_table(out / "morphometrics.parquet").drop_columns(["subject"])
    via_pandas = pa.Table.from_pandas(want, schema=MORPHOMETRICS_SCHEMA, preserve_index=False)
    assert got.equals(via_pandas.replace_schema_metadata(got.schema.metadata))
    assert summary["alignment"]["lordosis_deg"] == spine["lordosis_deg"]
