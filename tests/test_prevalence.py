"""Prevalence by declared strata, the status definition (presacral count) and the
misclassification-corrected (Rogan–Gladen) estimate; small in-memory inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from spinecensus.census import misclassification as mc
from spinecensus.census import prevalence, tables
from spinecensus.census.presacral import STATUS_DEFINITION, presacral_counts
from spinecensus.census.sheet import OUTPUT_COLUMNS, SampleSheetError, check_columns
from spinecensus.census.strata import StrataSpec, check_declaration, strata
from spinecensus.review.apply import apply_overrides
from spinecensus.synthetic import cohort

REPO = Path(__file__).resolve().parents[1]


def _subjects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": [f"S{i}" for i in range(8)],
            "processed": [True] * 6 + [False, False],
            "transitional_status": [
                "normal",
                "lumbarization",
                "normal",
                "undetermined",
                "sacralization",
                "undetermined",
                "undetermined",
                "undetermined",
            ],
            "sex": ["F", "M", "F", "F", "M", "M", "F", "M"],
            "age": [51.0, 55.0, 62.0, 69.5, 40.0, np.nan, 59.9, 30.0],
            "stage": [1, 2, 1, 2, 1, 2, 1, 2],
            "image_quality": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2],
        }
    )


# --------------------------------------------------------------------------- declaration


def test_only_declared_columns_are_strata_and_only_the_age_column_is_binned():
    """``stage`` and ``image_quality`` contain "age" but are not binned, nor strata undeclared."""
    labels = [s[0] for s in strata(_subjects(), StrataSpec(("sex",)))]
    assert labels == ["all", "sex=F", "sex=M"]
    labels = [s[0] for s in strata(_subjects(), StrataSpec(("stage", "age")))]
    assert labels == ["all", "stage=1", "stage=2", "age=30-39", "age=40-49", "age=50-59",
                      "age=60-69"]  # fmt: skip
    prev = prevalence.prevalence_table(_subjects()).to_pandas()
    assert set(prev.stratum) == {"all"}


def test_age_bins_from_config_label_open_ends_and_half_open_bins():
    spec = StrataSpec.from_config({"prevalence": {"strata": ["age"], "age_bins": [40, 60]}})
    got = {lab: int(m.sum()) for lab, _, m in strata(_subjects(), spec)}
    # 30 -> <40; 40, 51, 55, 59.9 -> [40, 60); 62, 69.5 -> >=60; NaN in none
    assert got == {"all": 8, "age<40": 1, "age=40-59": 4, "age>=60": 2}
    spec = StrataSpec(("age",), age_bins=(0.0, 52.5))
    assert "age=[0,52.5)" in [s[0] for s in strata(_subjects(), spec)]
    with pytest.raises(ValueError, match="age_bins"):
        StrataSpec.from_config({"prevalence": {"age_bins": [10, 10, 20]}})


def test_age_column_must_be_numeric():
    df = _subjects()[["subject", "sex", "age"]].assign(age=["old"] * 8)
    with pytest.raises(SampleSheetError, match="age_column 'age' is not numeric"):
        check_declaration(df, StrataSpec(("age",)), "s.tsv")


@pytest.mark.parametrize("col", ["model", "error", "labeler", "decided_by", "presacral_count"])
def test_covariate_named_like_an_output_column_is_a_sheet_error(col):
    with pytest.raises(SampleSheetError, match=f"s.tsv: column '{col}' collides"):
        check_columns(["subject", "image", "sex", col], ["sex"], "s.tsv")


def test_declared_stratum_missing_from_the_sheet_is_a_sheet_error_naming_it():
    with pytest.raises(SampleSheetError, match="declares column 'site', which the sheet lacks"):
        check_declaration(["subject", "image", "sex"], StrataSpec(("sex", "site")), "s.tsv")
    with pytest.raises(SampleSheetError, match="'anomaly'.*never a stratum"):
        check_declaration(["subject", "image", "anomaly"], StrataSpec(("anomaly",)))


def test_aggregate_refuses_a_colliding_sheet_column(tmp_path):
    sheet = pd.DataFrame({"subject": ["A"], "image": ["a"], "decided_by": ["reader 1"]})
    with pytest.raises(SampleSheetError, match="'decided_by'"):
        tables.write_cohort_tables([], [], tmp_path, sheet=sheet, config={})


def test_shipped_config_fits_the_synthetic_sheet():
    """The demo's declared strata are columns the generator writes (the parse-time check)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    spec = StrataSpec.from_config(config)
    assert spec.columns == ("sex", "age") and spec.age_column == "age"
    check_declaration(list(cohort.SAMPLE_COLUMNS), spec)


def test_output_columns_are_those_of_the_subjects_table():
    summary = {"subject": "A", "status": "ok", "transitional_status": "normal"}
    t = tables.subjects_table([summary], tables.STRUCTURES_SCHEMA.empty_table())
    # the review's columns (final_status, ...) are added by aggregate to every table
    t, _ = apply_overrides(t, tables.STRUCTURES_SCHEMA.empty_table(), None)
    assert set(t.column_names) - {"subject"} == set(OUTPUT_COLUMNS) - {"true_status"}


# --------------------------------------------------------------------------- counts


def test_n_undetermined_and_n_failed_per_stratum():
    prev = prevalence.prevalence_table(_subjects(), StrataSpec(("sex",))).to_pandas()
    prev = prev[prev.status == "lumbarization"].set_index("stratum")
    # all: 4 determinable (S0, S1, S2, S4), undetermined S3 and S5, failed S6 and S7
    assert prev.loc["all", ["denominator", "n_undetermined", "n_failed"]].tolist() == [4, 2, 2]
    assert prev.loc["sex=F", ["denominator", "n_undetermined", "n_failed"]].tolist() == [2, 1, 1]
    assert prev.loc["sex=M", ["denominator", "n_undetermined", "n_failed"]].tolist() == [2, 1, 1]
    assert set(prev.estimate) == {"called"}  # no expert_status: no corrected rows


def test_presacral_count_only_for_whole_determinable_spines():
    df = pd.DataFrame(
        {
            "processed": [True, True, True, True, True, False],
            "transitional_status": [
                "normal",
                "lumbarization",
                "sacralization",
                "normal",
                "undetermined",
                "undetermined",
            ],
            "first_label": ["C2", "C2", "C2", "T4", "C2", None],
            "last_label": ["S1", "S1", "S1", "S1", "L3", None],
            "n_cervical": [6, 6, 6, 0, 6, None],
            "n_thoracic": [12, 12, 12, 9, 12, None],
            "n_lumbar": [5, 6, 4, 5, 3, None],
        }
    )
    got = presacral_counts(df).tolist()
    assert got[:3] == [24, 25, 23]
    assert all(v is pd.NA for v in got[3:])


def _write_subject(root: Path, subject: str, status: str) -> tuple[Path, Path]:
    d = root / subject
    d.mkdir()
    lumbar = {"normal": 5, "lumbarization": 6, "sacralization": 4}[status]
    names = [f"C{i}" for i in range(2, 8)] + [f"T{i}" for i in range(1, 13)]
    names += [f"L{i}" for i in range(1, lumbar + 1)] + ["S1"]
    rows = [{"label": n, "kind": "vertebra", "region": {"C": "cervical", "T": "thoracic",
             "L": "lumbar", "S": "sacral"}[n[0]], "instance_id": i + 1, "voxel_count": 1,
             "volume_mm3": 1.0} for i, n in enumerate(names)]  # fmt: skip
    summary = {"subject": subject, "status": "ok", "transitional_status": status,
               "lumbar_count": lumbar, "first_visible_label": "C2", "last_visible_label": "S1",
               "split_valid": True, "qc_flags": []}  # fmt: skip
    (d / "summary.json").write_text(json.dumps(summary))
    tables.write_subject_structures(subject, rows, d / "structures.parquet")
    return d / "summary.json", d / "structures.parquet"


def test_cohort_tables_carry_presacral_count_definition_and_corrected_rows(tmp_path):
    calls = ["normal", "lumbarization", "normal", "sacralization"]
    files = [_write_subject(tmp_path, f"S{i}", s) for i, s in enumerate(calls)]
    sheet = pd.DataFrame(
        {
            "subject": ["S0", "S1", "S2", "S3"],
            "image": ["a", "b", "c", "d"],
            "sex": ["F", "M", "F", "M"],
            "expert_status": ["normal", "lumbarization", "lumbarization", None],
        }
    )
    config = {"prevalence": {"strata": ["sex"]}}
    paths = tables.write_cohort_tables(
        [f[0] for f in files], [f[1] for f in files], tmp_path / "t", sheet=sheet, config=config
    )
    sub = pq.read_table(paths["subjects"]).to_pandas().set_index("subject")
    assert sub["presacral_count"].tolist() == [24, 25, 24, 23]
    assert list(sub.columns).index("presacral_count") == list(sub.columns).index("lumbar_count") + 1
    assert tables.read_metadata(paths["subjects"])["status_definition"] == STATUS_DEFINITION
    meta = tables.read_metadata(paths["prevalence"])
    assert json.loads(meta["strata"])["strata"] == ["sex"]
    assert meta["correction"] == mc.METHOD
    prev = pq.read_table(paths["prevalence"]).to_pandas()
    lum = prev[(prev.status == "lumbarization") & (prev.stratum == "all")]
    assert lum.estimate.tolist() == ["called", "corrected"]
    corr = lum.iloc[1]
    # validated: S0 (normal, called normal), S1 (lumb., called lumb.), S2 (lumb., called
    # normal): Se = 1/2, Sp = 1/1 -> p = (1/4 + 1 - 1) / (1/2 + 1 - 1) = 1/2
    assert (corr.sensitivity, corr.specificity, corr.n_validated) == (0.5, 1.0, 3)
    assert corr.prevalence == pytest.approx(0.5)
    assert 0.0 <= corr.ci_low <= 0.5 <= corr.ci_high <= 1.0
    sac = prev[(prev.status == "sacralization") & (prev.stratum == "all")].iloc[1]
    assert math.isnan(sac.prevalence) and "Se not estimable" in sac.note


# --------------------------------------------------------------------------- estimator


def test_rogan_gladen_worked_example():
    """Worked by hand.  Validated subset: 10 expert positives of which 8 are called
    positive (Se = 8/10 = 0.8), 40 expert negatives of which 38 are called negative
    (Sp = 38/40 = 0.95).  Stratum: 20 of 200 called positive, p_obs = 0.1.

        p = (p_obs + Sp - 1) / (Se + Sp - 1) = (0.1 + 0.95 - 1) / (0.8 + 0.95 - 1)
          = 0.05 / 0.75 = 0.0667

    Interval, delta method as a check of the Monte Carlo one (J = Se + Sp - 1 = 0.75):
    dp/dp_obs = 1/J = 1.333, var(p_obs) = 0.1 * 0.9 / 200 = 0.00045  -> 0.00080;
    dp/dSe = -p/J = -0.0889, var(Se) = 0.8 * 0.2 / 10 = 0.016        -> 0.00013;
    dp/dSp = (1 - p)/J = 1.244, var(Sp) = 0.95 * 0.05 / 40 = 0.00119 -> 0.00184;
    sd = sqrt(0.00277) = 0.053, so about 0.067 +- 0.103: [0 (clipped), 0.17].

    p_obs = 0.02 lies below 1 - Sp = 0.05: (0.02 - 0.05) / 0.75 = -0.04, clipped to 0.
    """
    acc = mc.accuracy(
        called=np.r_[np.ones(8), np.zeros(2), np.ones(2), np.zeros(38)].astype(bool),
        expert=np.r_[np.ones(10), np.zeros(40)].astype(bool),
    )
    assert (acc.sensitivity, acc.specificity) == (0.8, 0.95)
    p, low, high, note = mc.corrected_prevalence(20, 200, acc)
    assert p == pytest.approx(0.05 / 0.75)
    assert note is None
    assert low == pytest.approx(0.0, abs=0.01)
    assert high == pytest.approx(0.17, abs=0.03)
    assert mc.corrected_prevalence(20, 200, acc) == (p, low, high, note)  # seeded
    assert mc.rogan_gladen(0.02, 0.8, 0.95) == 0.0
    assert mc.rogan_gladen(0.99, 0.8, 0.95) == 1.0


def test_rogan_gladen_degenerate_cases():
    assert math.isnan(mc.rogan_gladen(0.1, 0.5, 0.5))  # Se + Sp - 1 = 0
    none_pos = mc.Accuracy(0, 0, 10, 10)
    p, low, high, note = mc.corrected_prevalence(1, 10, none_pos, "lumbarization")
    assert math.isnan(p) and math.isnan(low) and math.isnan(high)
    assert note == "no validated subject with expert status lumbarization: Se not estimable"
    _, _, _, note = mc.corrected_prevalence(1, 10, mc.Accuracy(3, 3, 0, 0), "x")
    assert "Sp not estimable" in note
    _, _, _, note = mc.corrected_prevalence(1, 10, mc.Accuracy(1, 4, 1, 4), "x")
    assert "Se + Sp - 1 = -0.500 <= 0" in note
    _, _, _, note = mc.corrected_prevalence(0, 0, mc.Accuracy(4, 4, 4, 4), "x")
    assert note == "no determinable subject in the stratum"


# --------------------------------------------------------------------------- synthetic


def test_synthetic_expert_status_is_a_seeded_fifth_copying_the_truth():
    marks = [cohort.expert_status(2023, i, "lumbarization") for i in range(2000)]
    assert set(marks) == {"", "lumbarization"}
    assert abs(marks.count("lumbarization") / 2000 - cohort.VALIDATED_FRACTION) < 0.03
    assert marks == [cohort.expert_status(2023, i, "lumbarization") for i in range(2000)]
    assert marks != [cohort.expert_status(2024, i, "lumbarization") for i in range(2000)]
    assert cohort.SAMPLE_COLUMNS[-1] == "expert_status"
