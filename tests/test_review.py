"""Review and correct (issue 22): the overrides file's validation, how aggregate applies it,
the level rename, provenance in every table, the workflow's parse-time check and the page's
data.  All on the tiny synthetic cohort of ``tests/review_cohort.py`` (synthetic data)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from review_cohort import FLAGGED, SUBJECTS, build_tables, write_subjects

from spinecensus.anatomy import labels
from spinecensus.census import tables
from spinecensus.review import overrides as ov
from spinecensus.review.page import flag_codes, page_data, review_page
from spinecensus.review.provenance import provenance
from spinecensus.review.relabel import rename_levels

REPO = Path(__file__).resolve().parents[1]
HEADER = "subject\taction\tvalue\treviewer\tnote\tdate\n"


def _write(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    p = tmp_path / "overrides.tsv"
    p.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return p


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("S9\taccept\t\tAB\t\t", "unknown subject 'S9'"),
        ("S1\tdelete\t\tAB\t\t", "unknown action 'delete'"),
        ("S1\tset_status\tLSTV\tAB\t\t", "set_status value 'LSTV' is not a status"),
        ("S1\trename_from\tL5=L7\tAB\t\t", "level 'L7' is not in the label schema"),
        ("S1\trename_from\tL5\tAB\t\t", "not '<instance label>=<new label>'"),
        ("S1\trename_from\tL5=L5-S1\tAB\t\t", "a vertebra cannot be renamed to a disc"),
        ("S1\texclude\t\tAB\t\t", "exclude needs a reason"),
        ("S1\taccept\t\tAB\t\t03/05/2024", "date '03/05/2024' is not YYYY-MM-DD"),
    ],
)
def test_a_bad_row_is_refused_naming_the_file_and_row(tmp_path, row, problem):
    p = _write(tmp_path, "S0\taccept\t\tAB\tok\t2024-05-02", row)
    with pytest.raises(ov.OverridesError) as err:
        ov.read_overrides(p, SUBJECTS)
    assert str(err.value).startswith(f"overrides file {p}: row 3: ")
    assert problem in str(err.value)


def test_a_bad_header_is_refused(tmp_path):
    p = _write(tmp_path, "S0\taccept", header="subject\tverdict\n")
    with pytest.raises(ov.OverridesError, match="row 1: header"):
        ov.read_overrides(p)


def test_good_rows_are_read_in_file_order_with_optional_columns_absent(tmp_path):
    p = _write(
        tmp_path,
        "S1\tset_status\tnormal",
        "S2\trename_from\tL4=L5",
        header="subject\taction\tvalue\n",
    )
    df = ov.read_overrides(p, SUBJECTS)
    assert df["subject"].tolist() == ["S1", "S2"]
    assert df["row"].tolist() == [2, 3]
    assert df["reviewer"].tolist() == ["", ""]


def test_the_tsv_schema_lists_the_actions_and_statuses_of_the_code():
    schema = yaml.safe_load((REPO / "workflow/schemas/overrides.schema.yaml").read_text())
    assert tuple(schema["properties"]["action"]["enum"]) == ov.ACTIONS
    then = schema["allOf"][0]["then"]["properties"]["value"]["enum"]
    assert tuple(then) == ov.STATUSES
    assert set(schema["properties"]) == set(ov.COLUMNS)


# --------------------------------------------------------------------------- relabel


def _normal():
    names = list(labels.structures("normal"))
    return names, [labels.kind(n) for n in names]


def test_rename_from_a_level_renames_the_levels_below_and_keeps_the_sacrum():
    names, kinds = _normal()
    out = rename_levels(names, kinds, "L4", "L5")
    assert out[: names.index("L4")] == names[: names.index("L4")]  # above: untouched
    assert out[names.index("L4") :] == ["L5", "L5-L6", "L6", "L6-S1", "S1"]


def test_rename_names_an_unnamed_instance_below():
    names = ["T11", "T11-T12", "T12", None, "L1", "L1-L2", "L2"]
    kinds = ["vertebra", "disc", "vertebra", "vertebra", "vertebra", "disc", "vertebra"]
    assert rename_levels(names, kinds, "T12", "T12") == [
        "T11", "T11-T12", "T12", "L1", "L2", "L2-L3", "L3"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("L2", "L4", "runs past L6"),
        ("L5", "S1", "sacrum (S1) lies below"),
        ("L3", "L2", "names L2"),
        ("L6", "L5", "no structure named 'L6'"),
    ],
)
def test_an_impossible_rename_is_an_error(old, new, problem):
    names, kinds = _normal()
    with pytest.raises(ValueError, match=re.escape(problem)):
        rename_levels(names, kinds, old, new)


# --------------------------------------------------------------------------- applying


def _tables(paths):
    sub = pq.read_table(paths["subjects"]).to_pandas().set_index("subject")
    st = pq.read_table(paths["structures"]).to_pandas()
    prev = pq.read_table(paths["prevalence"]).to_pandas()
    return sub, st, prev


def test_without_overrides_final_status_is_the_pipeline_status(tmp_path):
    sub, _, prev = _tables(build_tables(tmp_path))
    assert (sub["final_status"] == sub["transitional_status"]).all()
    assert (
        sub["reviewer"].isna().all()
        and (sub["decided_by"] == sub["pipeline_decided_by"]).fillna(True).all()
    )
    assert (prev["n_excluded"] == 0).all()


def test_set_status_gives_final_status_and_decided_by_review(tmp_path):
    """Synthetic: the one wrong call (S1) corrected makes the called prevalence the truth."""
    p = _write(tmp_path, "S1\tset_status\tlumbarization\tAB\tsix lumbar\t2024-05-02")
    sub, _, prev = _tables(build_tables(tmp_path, p))
    assert sub.loc["S1", "transitional_status"] == "normal"  # the pipeline's value is kept
    assert sub.loc["S1", "final_status"] == "lumbarization"
    assert sub.loc["S1", "decided_by"] == "review"
    assert sub.loc["S1", "pipeline_decided_by"] == "count"
    assert sub.loc["S1", "reviewer"] == "AB"
    assert sub.loc["S1", "review_note"] == "set_status lumbarization: six lumbar"
    assert sub.loc["S0", "decided_by"] == "count" and pd.isna(sub.loc["S0", "reviewer"])
    called = prev[(prev.stratum == "all") & (prev.estimate == "called")].set_index("status")
    for status in ("lumbarization", "sacralization"):
        assert called.loc[status, "n"] == called.loc[status, "true_n"]
        assert called.loc[status, "prevalence"] == called.loc[status, "true_prevalence"]


def test_accept_records_the_reviewer_and_keeps_the_pipelines_decision(tmp_path):
    p = _write(tmp_path, "S5\taccept\t\tCD\tlooks right\t")
    sub, _, _ = _tables(build_tables(tmp_path, p))
    assert sub.loc["S5", "final_status"] == "sacralization"
    assert sub.loc["S5", "decided_by"] == "count" and sub.loc["S5", "reviewer"] == "CD"


def test_the_last_decision_of_a_subject_wins(tmp_path):
    p = _write(tmp_path, "S2\tset_status\tnormal\tAB\t\t", "S2\tset_status\tsacralization\tCD\t\t")
    sub, _, _ = _tables(build_tables(tmp_path, p))
    assert sub.loc["S2", "final_status"] == "sacralization"
    assert sub.loc["S2", "reviewer"] == "AB;CD"


def test_rename_from_relabels_that_subjects_structures_and_its_status(tmp_path):
    """S2 (undetermined, a whole spine C2-S1 named as normal): renaming L3 to L4 names the
    lumbar vertebrae L1, L2, L4, L5, L6 -- five, so the status the new names give is normal."""
    p = _write(tmp_path, "S2\trename_from\tL3=L4\tAB\tmissed disc\t")
    sub, st, _ = _tables(build_tables(tmp_path, p))
    s2 = st[st.subject == "S2"].sort_values("instance_id")
    before = list(labels.structures("normal"))
    i = before.index("L3")
    assert s2["label"].tolist()[:i] == before[:i]
    assert s2["label"].tolist()[i:] == ["L4", "L4-L5", "L5", "L5-L6", "L6", "L6-S1", "S1"]
    renamed = s2[s2["label"] != pd.Series(before, index=s2.index)]
    assert renamed["confidence"].isna().all() and len(renamed) == 6
    assert set(renamed["region"]) == {"lumbar"}
    # L1, L2, L4, L5, L6: five lumbar names between T12 and S1 -> normal, by review
    assert sub.loc["S2", "final_status"] == "normal"
    assert sub.loc["S2", "decided_by"] == "review"
    # other subjects untouched
    s0 = st[st.subject == "S0"].sort_values("instance_id")
    assert s0["label"].tolist() == before


def test_a_rename_the_subjects_levels_do_not_allow_names_the_row(tmp_path):
    p = _write(tmp_path, "S0\taccept\t\t\t\t", "S4\trename_from\tL6=L5\t\t\t")
    with pytest.raises(ov.OverridesError, match=r"row 3: S4: .*names L5"):
        build_tables(tmp_path, p)
    p = _write(tmp_path, "S3\trename_from\tL4=L5\t\t\t")
    with pytest.raises(ov.OverridesError, match=r"row 2: S3: the subject has no structures"):
        build_tables(tmp_path, p)


def test_excluded_subjects_leave_the_denominators_and_are_counted_per_stratum(tmp_path):
    p = _write(tmp_path, "S4\texclude\tmotion blur\tAB\t\t", "S3\texclude\tno image\tAB\t\t")
    sub, _, prev = _tables(build_tables(tmp_path, p))
    assert sub.loc["S4", "final_status"] == "excluded"
    called = prev[prev.estimate == "called"].set_index(["status", "stratum"])
    row = called.loc[("lumbarization", "all")]
    # S0, S1, S5 determinable; S2 undetermined; S3 (failed) and S4 excluded
    assert (row.denominator, row.n, row.n_undetermined, row.n_failed, row.n_excluded) == (
        3,
        0,
        1,
        0,
        2,
    )
    assert called.loc[("lumbarization", "sex=F"), "n_excluded"] == 1  # S4
    assert called.loc[("lumbarization", "sex=M"), "n_excluded"] == 1  # S3
    for _, r in prev.iterrows():
        group = [s for s in SUBJECTS if r.stratum == "all" or r.stratum.endswith(sub.loc[s, "sex"])]
        assert r.denominator + r.n_undetermined + r.n_failed + r.n_excluded == len(group)


# --------------------------------------------------------------------------- provenance


def test_every_table_carries_the_provenance(tmp_path):
    p = _write(tmp_path, "S1\tset_status\tlumbarization\tAB\t\t", "", "S5\taccept\t\t\t\t")
    config = {
        "segmentation": {"method": "model", "weights": ""},
        "labeling": {"weights": "shipped"},
    }
    paths = build_tables(tmp_path, p, config=config)
    from spinecensus.segment.weights import (
        DEFAULT_LABELING_WEIGHTS,
        DEFAULT_SEGMENTATION_WEIGHTS,
        sha256_file,
    )

    for path in paths.values():
        meta = tables.read_metadata(path)
        assert meta["segmentation_weights_sha256"] == sha256_file(DEFAULT_SEGMENTATION_WEIGHTS)
        assert meta["labeling_weights_sha256"] == sha256_file(DEFAULT_LABELING_WEIGHTS)
        assert meta["overrides_sha256"] == sha256_file(p)
        assert meta["overrides_rows"] == "2"
        assert meta["pipeline_version"] and meta["config_hash"] == tables.config_hash(config)
        assert "git_commit" in meta


def test_provenance_of_a_ground_truth_run_without_review():
    prov = provenance({"segmentation": {"method": "ground_truth"}, "labeling": {"weights": ""}})
    assert prov["segmentation_weights_sha256"] == prov["labeling_weights_sha256"] == ""
    assert prov["overrides_sha256"] == "" and prov["overrides_rows"] == "0"


def test_git_commit_is_that_of_the_checkout():
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert provenance(None)["git_commit"].split("+")[0] == head.stdout.strip()


def test_docs_name_the_review_columns_and_metadata_keys():
    text = (REPO / "docs" / "tables.md").read_text()
    for name in ("final_status", "pipeline_decided_by", "reviewer", "review_note", "n_excluded"):
        assert f"`{name}`" in text
    for key in provenance(None):
        assert f"`spinecensus.{key}`" in text


# --------------------------------------------------------------------------- workflow


def _dry_run(tmp_path: Path, overrides: Path) -> subprocess.CompletedProcess:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "results": str(tmp_path / "res"),
                "synthetic": {"n": 3, "seed": 1, "preset": "tiny"},
                "segmentation": {"method": "ground_truth"},
                "review": {"overrides": str(overrides)},
            }
        )
    )
    snakemake = Path(REPO / ".venv" / "bin" / "snakemake")
    exe = str(snakemake) if snakemake.exists() else "snakemake"
    return subprocess.run(
        [exe, "-n", "--cores", "1", "--configfile", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_workflow_refuses_a_bad_overrides_row_before_any_job(tmp_path):
    p = _write(tmp_path, "S0000\taccept\t\t\t\t", "S0001\trename_from\tL5=L9\t\t\t")
    done = _dry_run(tmp_path, p)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert f"overrides file {p}: row 3: level 'L9' is not in the label schema" in said
    assert "Job stats" not in said


def test_the_workflow_accepts_good_overrides_and_plans_the_review_page(tmp_path):
    p = _write(tmp_path, "S0000\tset_status\tnormal\tAB\t\t2024-05-02")
    done = _dry_run(tmp_path, p)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"^review_page\s+1$", done.stdout, re.M)


# --------------------------------------------------------------------------- the page's data


def test_the_page_lists_the_flagged_subjects_with_their_labels_and_images(tmp_path):
    build_tables(tmp_path)
    data = page_data(tmp_path / "tables", tmp_path / "subjects", tmp_path / "review/index.html")
    assert [s["subject"] for s in data["subjects"]] == list(FLAGGED)
    s1 = data["subjects"][0]
    assert s1["flag_codes"] == ["count_model_disagree"] and s1["status"] == "normal"
    assert s1["labels"] == list(labels.structures("normal"))
    assert s1["qc_link"] == "../subjects/S1/qc.png"
    assert data["images"]["S1"].startswith("data:image/jpeg;base64,")
    assert next(s for s in data["subjects"] if s["subject"] == "S3")["status"] == "failed"
    everyone = page_data(
        tmp_path / "tables", tmp_path / "subjects", tmp_path / "r.html", all_subjects=True
    )
    assert [s["subject"] for s in everyone["subjects"]] == list(SUBJECTS)


def test_the_page_is_self_contained(tmp_path):
    p = _write(tmp_path, "S1\tset_status\tlumbarization\tAB\t\t")
    build_tables(tmp_path, p)
    out = review_page(
        tmp_path / "tables", tmp_path / "subjects", tmp_path / "review/index.html", overrides=p
    )
    html = out.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing from the network
    assert "<script src" not in html and "<link" not in html
    blob = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html, re.S)
    data = json.loads(blob.group(1))
    assert data["overrides"][0]["action"] == "set_status"  # the file's rows carried on


def test_flag_codes():
    assert flag_codes("a: x; b_c: y z;") == ["a", "b_c"]
    real = "count_origin_unverified: C2 is >= 1.45 x (no C2?); status withheld;lumbar_count: 3"
    assert flag_codes(real) == ["count_origin_unverified", "lumbar_count"]
    assert flag_codes("") == [] and flag_codes(None) == []


def test_write_subjects_gives_one_png_per_subject(tmp_path):
    base = write_subjects(tmp_path)
    assert sorted(p.parent.name for p in base.glob("*/qc.png")) == list(SUBJECTS)
