"""Cohort morphometrics tables (spinecensus.census.morphometrics_tables): reference
percentiles, robust z-scores, exclusions and review renames, on tiny hand-made frames
(synthetic numbers, no images)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spinecensus.census import morphometrics_tables as mt
from spinecensus.census.strata import StrataSpec
from spinecensus.census.tables import STRUCTURES_SCHEMA, structures_table

SPEC = StrataSpec(("sex", "age"), "age", (0.0, 50.0, 100.0))


def _morpho(values: dict[str, list[float]], label: str = "L1", iid: int = 40) -> pa.Table:
    """Per-subject rows of one vertebra ``label``: ``{subject: [height_anterior_mm]}``."""
    subjects = list(values)
    n = len(subjects)
    cols: dict[str, object] = {"subject": subjects, "label": [label] * n, "kind": ["vertebra"] * n}
    cols["instance_id"] = np.full(n, iid, np.int32)
    cols["truncated"] = np.zeros(n, bool)
    for name, t, _u in mt.COLUMNS:
        if name not in cols and pa.types.is_floating(t):
            cols[name] = np.full(n, np.nan)
    cols["height_anterior_mm"] = [values[s][0] for s in subjects]
    cols["deformity"] = [None] * n
    cols["measure_flag"] = [None] * n
    cols["genant_grade"] = pa.array([0] * n, pa.int8())
    arrays = [pa.array(cols[f.name], f.type) for f in mt.SUBJECT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=mt.SUBJECT_SCHEMA)


def _subjects(names, sex, age, processed=None, final=None) -> pa.Table:
    n = len(names)
    return pa.Table.from_pandas(
        pd.DataFrame(
            {
                "subject": names,
                "processed": processed if processed is not None else [True] * n,
                "final_status": final if final is not None else ["normal"] * n,
                "sex": sex,
                "age": age,
            }
        ),
        preserve_index=False,
    )


def _cohort(n: int = 12, seed: int = 3):
    rng = np.random.default_rng(seed)
    names = [f"S{i:02d}" for i in range(n)]
    x = rng.normal(25.0, 2.0, n)
    morpho = _morpho({s: [float(v)] for s, v in zip(names, x, strict=True)})
    subjects = _subjects(names, ["F"] * n, [60.0] * n)
    return names, x, morpho, subjects


def _ref_row(ref: pd.DataFrame, stratum: str, measure: str = "height_anterior_mm") -> pd.Series:
    sel = ref[(ref["label"] == "L1") & (ref["stratum"] == stratum) & (ref["measure"] == measure)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_reference_percentiles_equal_numpy() -> None:
    """p5..p95 and n of a cell equal numpy's percentiles of its values (synthetic)."""
    names, x, morpho, subjects = _cohort()
    out, ref = mt.cohort_morphometrics(morpho, subjects, STRUCTURES_SCHEMA.empty_table(), SPEC)
    ref = ref.to_pandas()
    for stratum in ("all", "sex=F;age=50-99"):
        row = _ref_row(ref, stratum)
        assert row["n"] == len(x)
        for p in mt.PERCENTILES:
            assert row[f"p{p}"] == pytest.approx(np.percentile(x, p), rel=1e-12)
    assert set(out.column("stratum").to_pylist()) == {"sex=F;age=50-99"}


def test_z_score_formula() -> None:
    """z = (x - p50) / ((p75 - p25) / 1.349) of the subject's own cell (synthetic)."""
    names, x, morpho, subjects = _cohort()
    out, _ = mt.cohort_morphometrics(morpho, subjects, STRUCTURES_SCHEMA.empty_table(), SPEC)
    df = out.to_pandas().set_index("subject")
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    want = (x - q50) / ((q75 - q25) / 1.349)
    got = df.loc[names, "z_height_anterior_mm"].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # measures without values: NaN z, never an error
    assert df["z_disc_height_index"].isna().all()
    units = json.loads(out.schema.metadata[mt.UNITS_KEY.encode()])
    assert units["height_anterior_mm"] == "mm" and units["z_wedge_ratio"] == "1"


def test_small_cell_gives_nan_z() -> None:
    """A cell with n < 10 values (9 here) gets NaN z-scores; one of 10 gets numbers."""
    for n, finite in ((9, False), (10, True)):
        _, _, morpho, subjects = _cohort(n)
        out, ref = mt.cohort_morphometrics(morpho, subjects, STRUCTURES_SCHEMA.empty_table(), SPEC)
        z = out.column("z_height_anterior_mm").to_numpy(zero_copy_only=False)
        assert np.isfinite(z).all() == finite and (np.isnan(z).all() != finite)
        assert _ref_row(ref.to_pandas(), "all")["n"] == n


def test_zero_iqr_gives_nan_z() -> None:
    """Equal values in a cell (IQR 0): NaN z, not inf (synthetic)."""
    names = [f"S{i:02d}" for i in range(12)]
    morpho = _morpho({s: [20.0] for s in names})
    subjects = _subjects(names, ["M"] * 12, [30.0] * 12)
    out, _ = mt.cohort_morphometrics(morpho, subjects, STRUCTURES_SCHEMA.empty_table(), SPEC)
    assert np.isnan(out.column("z_height_anterior_mm").to_numpy(zero_copy_only=False)).all()


def test_failed_and_excluded_subjects_not_in_reference() -> None:
    """A failed and an excluded subject add nothing to the reference (their outlying values
    would move p95); the excluded subject's own rows stay in the table (synthetic)."""
    names, x, morpho, _ = _cohort(12)
    extra = _morpho({"EXCL": [500.0], "FAIL": [900.0]})
    both = pa.concat_tables([morpho, extra])
    all_names = [*names, "EXCL", "FAIL"]
    subjects = _subjects(
        all_names,
        ["F"] * 14,
        [60.0] * 14,
        processed=[True] * 13 + [False],
        final=["normal"] * 12 + ["excluded", "undetermined"],
    )
    out, ref = mt.cohort_morphometrics(both, subjects, STRUCTURES_SCHEMA.empty_table(), SPEC)
    row = _ref_row(ref.to_pandas(), "all")
    assert row["n"] == 12
    assert row["p95"] == pytest.approx(np.percentile(x, 95))
    assert "EXCL" in set(out.column("subject").to_pylist())


def test_cells_cross_sex_and_age_band() -> None:
    """Cells are sex x age band; a subject without age has no cell (NaN z) but counts in
    ``all`` (synthetic)."""
    subjects = pd.DataFrame(
        {"subject": ["a", "b", "c"], "sex": ["F", "M", "F"], "age": [49.0, 50.0, np.nan]}
    )
    cells = mt.subject_cells(subjects, SPEC)
    assert cells["a"] == "sex=F;age=0-49" and cells["b"] == "sex=M;age=50-99"
    assert pd.isna(cells["c"])
    assert set(mt.subject_cells(subjects, StrataSpec()).tolist()) == {"all"}


def test_review_rename_applies_to_morphometrics() -> None:
    """A level renamed in the (review-applied) structures table is renamed in the
    morphometrics rows of that subject only, matched by instance id (synthetic)."""
    morpho = pa.concat_tables([_morpho({"A": [20.0]}, "L5", 40), _morpho({"B": [21.0]}, "L5", 40)])
    rows = [{"label": "L6", "kind": "vertebra", "region": "lumbar", "instance_id": 40}]
    structures = pa.concat_tables(
        [
            structures_table("A", rows),
            structures_table("B", [dict(rows[0], label="L5")]),
        ]
    )
    subjects = _subjects(["A", "B"], ["F", "F"], [60.0, 60.0])
    out, ref = mt.cohort_morphometrics(morpho, subjects, structures, SPEC)
    got = out.select(["subject", "label"]).to_pylist()
    labels = {r["subject"]: r["label"] for r in got}
    assert labels == {"A": "L6", "B": "L5"}
    assert set(ref.column("label").to_pylist()) == {"L5", "L6"}


def test_subject_file_round_trip_and_alignment_table(tmp_path) -> None:
    """Per-subject file (empty for a failure) reads back with the subject column; the
    alignment table has one row per subject, null where absent, with the reason where a
    withheld outline nulled an angle (synthetic)."""
    one = _morpho({"A": [20.0]}).drop_columns(["subject"]).cast(mt.MORPHOMETRICS_SCHEMA)
    mt.write_subject_morphometrics("A", one, tmp_path / "A.parquet")
    mt.write_subject_morphometrics("B", None, tmp_path / "B.parquet")
    t = mt.read_morphometrics([tmp_path / "A.parquet", tmp_path / "B.parquet"])
    assert t.column("subject").to_pylist() == ["A"]
    assert pq.read_schema(tmp_path / "A.parquet").field("height_anterior_mm").metadata
    al = mt.alignment_table(
        [
            {"subject": "B", "status": "failed"},
            {"subject": "A", "alignment": {"lordosis_deg": 45.0, "kyphosis_deg": None}},
            {
                "subject": "C",
                "alignment": {
                    "lordosis_deg": None,
                    "kyphosis_deg": 30.0,
                    "withheld": {"lordosis_deg": "L6-S1: frame_disagrees"},
                },
            },
        ]
    ).to_pylist()
    none = {"lordosis_withheld": None, "kyphosis_withheld": None}
    assert al == [
        {"subject": "A", "lordosis_deg": 45.0, "kyphosis_deg": None, **none},
        {"subject": "B", "lordosis_deg": None, "kyphosis_deg": None, **none},
        {
            "subject": "C",
            "lordosis_deg": None,
            "kyphosis_deg": 30.0,
            "lordosis_withheld": "L6-S1: frame_disagrees",
            "kyphosis_withheld": None,
        },
    ]
