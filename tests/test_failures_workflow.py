"""Workflow-level failure handling over the bad-input corpus (end to end, synthetic data).

A cohort mixes good subjects (tiny synthetic spines from ``spinecensus.synthetic``, one of
them as a DICOM series with planted patient information) with one subject per per-subject
bad-input kind of ``tests/data/bad/make_corpus.py``.  The workflow runs with
``segmentation.method: ground_truth`` (masks from the generator) and must:

* finish (exit 0) with every bad subject in ``failures.parquet`` with its reason (the file
  and the problem) and the rule where it failed;
* give every good subject exactly the results of a clean run over the good subjects only;
* end with a summary (analysed / failed counts and one line per failure);
* write nothing outside ``results/`` (the work directory's tree and the input data are
  snapshotted before and after; Snakemake's own ``.snakemake/`` bookkeeping is the one
  documented exception);
* leak no planted patient information into any output or log.

Sheet-level errors (duplicate / unsafe IDs, non-UTF-8 sheet) stop the run before any job,
naming the row.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
import test_privacy  # noqa: E402  (planted-PHI DICOM writer and the grep)

make_corpus = test_privacy.make_corpus
pytestmark = pytest.mark.e2e

#: columns that legitimately differ between two runs (timings, process ages)
VOLATILE = ("seconds", "compute_s", "process_age_at_start_s", "created", "runtime")


# ----------------------------------------------------------------------------- helpers


def snakemake(
    workdir: Path, *args: str, timeout: int = 540, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` (``--directory``) with 2 cores."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


def write_config(workdir: Path, sheet: Path, subjects_per_job: int = 4) -> None:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["samples"] = str(sheet)
    cfg.setdefault("segmentation", {}).update(
        method="ground_truth", subjects_per_job=subjects_per_job, threads=1
    )
    # a corpus of bad inputs on purpose: the failure guard (tests/test_workflow_e2e.py and
    # tests/test_run_integrity.py) is switched off so that the run completes
    cfg["qc"] = {"max_failed_fraction": 1.0, "fail_on_whole_batch": False}
    # the corpus sheets (write_sheet) have `site`, not the shipped strata's sex and age
    cfg["prevalence"] = {**cfg.get("prevalence", {}), "strata": ["site"]}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def write_sheet(path: Path, rows: list[dict]) -> Path:
    cols = ["subject", "image", "semantic", "site"]
    lines = ["\t".join(cols)] + ["\t".join(str(r.get(c) or "") for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def good_synthetic_rows(data: Path, n: int = 3, seed: int = 7) -> list[dict]:
    """Tiny synthetic subjects in the ``spinecensus synth`` layout; absolute paths."""
    from spinecensus import synthetic

    sheet = synthetic.write_cohort(
        data / "synth",
        n=n,
        seed=seed,
        lumbarization=0.34,
        sacralization=0.33,
        config=synthetic.SyntheticConfig.tiny(),
    )
    df = pd.read_csv(sheet, sep="\t", dtype=str)
    return [
        {
            "subject": r.subject,
            "image": str(sheet.parent / r.image),
            "semantic": str(sheet.parent / r.semantic),
            "site": "A",
        }
        for r in df.itertuples()
    ]


def tree_snapshot(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, tuple]:
    """{relative path: (kind, size, mtime_ns, sha256)} of everything under ``root``."""
    snap: dict[str, tuple] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if any(rel == e or rel.startswith(e + "/") for e in exclude):
            continue
        st = p.lstat()
        if p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            snap[rel] = ("file", st.st_size, st.st_mtime_ns, digest)
        else:
            snap[rel] = ("dir",)
    return snap


def stable(df: pd.DataFrame) -> pd.DataFrame:
    """A table without run-dependent columns, rows sorted, index reset."""
    drop = [c for c in df.columns if any(v in c for v in VOLATILE)]
    keys = [c for c in ("subject", "label", "instance_id") if c in df.columns]
    out = df.drop(columns=drop)
    out = out.sort_values(keys).reset_index(drop=True) if keys else out
    # one null representation (NaN / None / pd.NA differ with the column's inferred dtype)
    return out.astype(object).where(out.notna(), None)


# ----------------------------------------------------------------------------- cohort


@pytest.fixture(scope="module")
def mixed_cohort(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Good synthetic subjects (3 NIfTI + 1 planted-PHI DICOM) and one subject per
    per-subject bad kind; sheets for the mixed and the clean cohort (synthetic)."""
    root = tmp_path_factory.mktemp("mixed")
    data = root / "data"
    good = good_synthetic_rows(data)
    folder, sem = test_privacy.write_phi_series(data / "dicom" / "D001")
    good.append({"subject": "D001", "image": str(folder), "semantic": str(sem), "site": "B"})

    corpus = make_corpus.make_file_corpus(data / "bad")
    noise = nib.load(str(corpus["pure_noise"]))
    noise_sem = data / "bad" / "noise_semantic.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(noise.shape, np.uint8), noise.affine), str(noise_sem))
    bad_rows, expected = [], {}
    for kind, path in sorted(corpus.items()):
        subject = f"BAD_{kind}"
        sem_path = str(noise_sem) if kind == "pure_noise" else ""
        bad_rows.append({"subject": subject, "image": str(path), "semantic": sem_path})
        exp = make_corpus.FILE_KINDS[kind]
        expected[subject] = (
            "analyse" if exp.level == "verdict" else "segment",
            exp.fragment,
            str(path),
        )
    return {
        "root": root,
        "data": data,
        "good": [r["subject"] for r in good],
        "expected": expected,
        "sheet_all": write_sheet(root / "all.tsv", good + bad_rows),
        "sheet_clean": write_sheet(root / "clean.tsv", good),
    }


def test_mixed_cohort_failures_recorded_and_good_subjects_unchanged(mixed_cohort: dict) -> None:
    """Bad subjects -> failures.parquet with reason; good subjects = clean run; summary at
    the end; nothing written outside results/; no planted PHI anywhere (synthetic)."""
    root, data = mixed_cohort["root"], mixed_cohort["data"]
    work_all, work_clean = root / "work_all", root / "work_clean"
    write_config(work_all, mixed_cohort["sheet_all"])
    write_config(work_clean, mixed_cohort["sheet_clean"])
    data_before = tree_snapshot(data)
    work_before = tree_snapshot(work_all)

    run_all = snakemake(work_all)
    snakemake(work_clean)

    # nothing outside results/ (besides Snakemake's .snakemake/ bookkeeping), inputs intact
    assert tree_snapshot(work_all, exclude=("results", ".snakemake")) == work_before
    assert tree_snapshot(data) == data_before

    res_all, res_clean = work_all / "results", work_clean / "results"
    fails = pd.read_parquet(res_all / "tables" / "failures.parquet").set_index("subject")
    expected = mixed_cohort["expected"]
    assert sorted(fails.index) == sorted(expected)
    for subject, (rule, fragment, path) in expected.items():
        err = fails.loc[subject, "error"]
        assert fails.loc[subject, "rule"] == rule, (subject, fails.loc[subject].to_dict())
        assert fragment in err.lower(), (subject, err)
        assert path in err, (subject, err)
        assert "\n" not in err
    assert pd.read_parquet(res_clean / "tables" / "failures.parquet").empty

    # good subjects: identical results with and without the bad ones in the cohort
    good = mixed_cohort["good"]
    subj_all = pd.read_parquet(res_all / "tables" / "subjects.parquet")
    subj_clean = pd.read_parquet(res_clean / "tables" / "subjects.parquet")
    assert subj_all.set_index("subject").loc[good, "processed"].all()
    assert not subj_all.set_index("subject").loc[sorted(expected), "processed"].any()
    # values must match (stable() unifies null representations; Parquet types are fixed by
    # spinecensus.census.tables, so dtypes are not what this test is about)
    pd.testing.assert_frame_equal(
        stable(subj_all[subj_all["subject"].isin(good)]), stable(subj_clean), check_dtype=False
    )
    st_all = pd.read_parquet(res_all / "tables" / "structures.parquet")
    st_clean = pd.read_parquet(res_clean / "tables" / "structures.parquet")
    assert set(st_all["subject"]) == set(good)
    pd.testing.assert_frame_equal(stable(st_all), stable(st_clean))
    for s in good:
        a, c = res_all / "subjects" / s, res_clean / "subjects" / s
        assert json.loads((a / "labels.json").read_text()) == json.loads(
            (c / "labels.json").read_text()
        )
        ia, ic = nib.load(str(a / "instances.nii.gz")), nib.load(str(c / "instances.nii.gz"))
        assert np.array_equal(np.asarray(ia.dataobj), np.asarray(ic.dataobj))
        assert np.array_equal(ia.affine, ic.affine)
    # the DICOM subject was analysed like the others
    assert subj_all.set_index("subject").loc["D001", "n_vertebrae"] > 20

    # the run ends with a summary naming every failure
    out = run_all.stdout
    n = len(good) + len(expected)
    assert f"spinecensus: {n} subjects, {len(good)} analysed, {len(expected)} failed" in out
    for subject in expected:
        assert f"  {subject} [" in out
    # failures counted by rule, then the commonest messages (file paths removed)
    by_rule = pd.Series([exp[0] for exp in expected.values()]).value_counts()
    line = next(ln for ln in out.splitlines() if ln.startswith("  failed by rule: "))
    assert dict(
        kv.rsplit(" ", 1) for kv in line.removeprefix("  failed by rule: ").split(", ")
    ) == {r: str(k) for r, k in by_rule.items()}

    # privacy: no planted token in any output, log or console line
    assert test_privacy.grep_tree(res_all) == {}
    assert test_privacy.grep_tree(work_all / ".snakemake" / "log") == {}
    assert test_privacy.find_phi(run_all.stdout + run_all.stderr) == []


@pytest.mark.parametrize("kind", sorted(make_corpus.SHEET_KINDS))
def test_sheet_errors_stop_before_any_job(tmp_path: Path, kind: str) -> None:
    """A broken sheet stops the run at parse time, naming the sheet and the row; no job
    runs and no results/ appears (synthetic)."""
    good = make_corpus._save(
        make_corpus.base_volume(0), make_corpus.SAGITTAL_AFFINE, tmp_path / "good.nii.gz"
    )
    sheet = make_corpus.make_sheet_corpus(tmp_path / "sheets", [good])[kind]
    work = tmp_path / "work"
    write_config(work, sheet)
    proc = snakemake(work, timeout=120, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert str(sheet) in text
    assert make_corpus.SHEET_KINDS[kind].fragment in text.lower(), text[-2000:]
    assert "row " in text
    assert not (work / "results").exists()
    assert "Job stats" not in text and "rule segment" not in text
