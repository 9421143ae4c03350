"""Cohort tables: Wilson intervals, prevalence strata, schemas, metadata (synthetic rows)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from spinecensus.census import prevalence, tables


def test_wilson_known_values():
    # 0/10 and 5/10: textbook values; 66/1000 worked by hand from the Wilson formula
    low, high = prevalence.wilson_interval(np.array([0, 5, 66]), np.array([10, 10, 1000]))
    assert low[0] == pytest.approx(0.0, abs=1e-12)
    assert high[0] == pytest.approx(0.27753, abs=1e-4)
    assert low[1] == pytest.approx(0.23659, abs=1e-4)
    assert high[1] == pytest.approx(0.76341, abs=1e-4)
    assert low[2] == pytest.approx(0.05221, abs=1e-4)
    assert high[2] == pytest.approx(0.08311, abs=1e-4)


def test_wilson_zero_denominator_is_nan():
    low, high = prevalence.wilson_interval(0, 0)
    assert np.isnan(low) and np.isnan(high)


def _subjects():
    return pd.DataFrame(
        {
            "subject": [f"S{i}" for i in range(8)],
            "processed": [True] * 7 + [False],
            "transitional_status": [
                "normal",
                "lumbarization",
                "normal",
                "sacralization",
                "undetermined",
                "normal",
                "lumbarization",
                "undetermined",
            ],
            "sex": ["F", "M", "F", "F", "M", "M", "F", "F"],
            "age": [51.0, 55.0, 62.0, 69.5, 40.0, np.nan, 59.9, 30.0],
            "true_status": [
                "normal",
                "lumbarization",
                "lumbarization",
                "sacralization",
                "normal",
                "normal",
                "lumbarization",
                "normal",
            ],
        }
    )


def test_prevalence_strata_and_denominators():
    """Synthetic table: denominator excludes undetermined and failed subjects."""
    prev = prevalence.prevalence_table(_subjects(), ["sex", "age"]).to_pandas()
    allrow = prev[(prev.status == "lumbarization") & (prev.stratum == "all")].iloc[0]
    assert allrow.denominator == 6 and allrow.n == 2
    assert allrow.prevalence == pytest.approx(2 / 6)
    assert allrow.ci_low < allrow.prevalence < allrow.ci_high
    # ground truth over the same 6 determinable subjects: S1, S2, S6 are lumbarization
    assert allrow.true_n == 3
    strata = set(prev.stratum)
    assert {"all", "sex=F", "sex=M", "age=50-59", "age=60-69"} <= strata
    assert not any("true_status" in s or "anomaly" in s for s in strata)
    f = prev[(prev.status == "lumbarization") & (prev.stratum == "sex=F")].iloc[0]
    assert (f.n, f.denominator) == (1, 4)
    a = prev[(prev.status == "sacralization") & (prev.stratum == "age=60-69")].iloc[0]
    assert (a.n, a.denominator) == (1, 2)


def test_aggregate_writes_four_tables_with_metadata(tmp_path):
    """Synthetic per-subject files -> cohort tables; failures collected, metadata present."""
    summaries, structs = [], []
    for i, status in enumerate(["normal", "lumbarization", "failed"]):
        d = tmp_path / f"S{i}"
        d.mkdir()
        if status == "failed":
            summ = {"subject": f"S{i}", "status": "failed", "rule": "segment", "error": "x: bad"}
            rows = []
        else:
            summ = {
                "subject": f"S{i}",
                "status": "ok",
                "transitional_status": status,
                "split_valid": True,
                "n_vertebrae": 2,
                "n_discs": 1,
                "lumbar_count": 5,
                "volumes_mm3": {"L1": 10.0, "L1-L2": 2.0, "L2": 11.0},
                "qc_flags": [],
            }
            rows = [
                {
                    "label": "L1",
                    "kind": "vertebra",
                    "region": "lumbar",
                    "instance_id": 1,
                    "voxel_count": 10,
                    "volume_mm3": 10.0,
                    "centroid_x_mm": 0.0,
                    "centroid_y_mm": 1.0,
                    "centroid_z_mm": 2.0,
                    "confidence": None,
                },
                {
                    "label": "L1-L2",
                    "kind": "disc",
                    "region": "lumbar",
                    "instance_id": 2,
                    "voxel_count": 2,
                    "volume_mm3": 2.0,
                },
                {
                    "label": "L2",
                    "kind": "vertebra",
                    "region": "lumbar",
                    "instance_id": 3,
                    "voxel_count": 11,
                    "volume_mm3": 11.0,
                },
            ]
        (d / "summary.json").write_text(json.dumps(summ))
        tables.write_subject_structures(f"S{i}", rows, d / "structures.parquet")
        summaries.append(d / "summary.json")
        structs.append(d / "structures.parquet")
    sheet = pd.DataFrame(
        {
            "subject": ["S0", "S1", "S2"],
            "image": ["a", "b", "c"],
            "sex": ["F", "M", "F"],
            "anomaly": ["normal", "lumbarization", "normal"],
        }
    )
    paths = tables.write_cohort_tables(
        summaries, structs, tmp_path / "tables", sheet=sheet, config={"samples": ""}
    )
    st = pq.read_table(paths["structures"])
    assert st.schema.equals(tables.STRUCTURES_SCHEMA, check_metadata=False)
    assert st.num_rows == 6
    sub = pq.read_table(paths["subjects"]).to_pandas().set_index("subject")
    assert list(sub.index) == ["S0", "S1", "S2"]
    assert sub.loc["S1", "true_status"] == "lumbarization"
    assert sub.loc["S0", "n_lumbar"] == 2 and pd.isna(sub.loc["S2", "n_lumbar"])
    assert not sub.loc["S2", "processed"]
    fail = pq.read_table(paths["failures"]).to_pandas()
    assert fail.to_dict("records") == [{"subject": "S2", "rule": "segment", "error": "x: bad"}]
    meta = tables.read_metadata(paths["prevalence"])
    assert {"pipeline_version", "config_hash", "created_utc"} <= set(meta)
    prev = pq.read_table(paths["prevalence"]).to_pandas()
    row = prev[(prev.status == "lumbarization") & (prev.stratum == "all")].iloc[0]
    assert (row.n, row.denominator) == (1, 2)


def test_empty_failures_table_has_schema(tmp_path):
    t = tables.failures_table([{"subject": "A", "status": "ok"}])
    assert t.num_rows == 0 and t.schema.names == ["subject", "rule", "error"]
