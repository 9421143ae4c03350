"""End-to-end runs of the Snakemake workflow through its command line (synthetic data).

1. A tiny synthetic cohort (``synthetic.preset: tiny``, 6 subjects containing every anomaly,
   ``segmentation.method: ground_truth``, the shipped labeler as cross-check): the tables
   agree with the generator's ground truth (statuses, counts, per-structure volumes).
2. A sample-sheet cohort of phantom subjects plus a corrupt and a missing image: the bad
   subjects land in failures.parquet, the others complete; touching one image reruns only
   that subject's batch, its analysis and the aggregate.
3. The default configuration (the shipped segmentation model) on the demo cohort's first 8
   subjects: statuses, names and volumes against the generator's truth.
4. Run integrity: a cohort whose every image is unreadable ends non-zero with the failure
   guard's line (tables written); a labeler given as segmentation weights stops the run
   before any job, naming the file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _snakemake(
    workdir: Path, *args: str, timeout: int = 300, ok: bool = True
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(workdir), "--cores", "2", *args]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _true_volumes(synthetic_dir: Path, row) -> dict[str, float]:
    """Ground-truth volume (mm³) of every named structure of a generated subject."""
    gt_inst = nib.load(synthetic_dir / row["instances"])
    names = json.loads((synthetic_dir / row["labels"]).read_text())
    vox = float(abs(np.linalg.det(gt_inst.affine[:3, :3])))
    counts = np.bincount(np.asarray(gt_inst.dataobj).ravel().astype(np.int64))
    return {names[str(i)]: counts[i] * vox for i in range(1, len(counts)) if str(i) in names}


def _write_config(workdir: Path, **overrides) -> None:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for key, value in overrides.items():
        if isinstance(value, dict):
            cfg.setdefault(key, {}).update(value)
        else:
            cfg[key] = value
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_tiny_synthetic_cohort_matches_ground_truth(tmp_path):
    """Synthetic: statuses, counts and volumes of the tables equal the generator's truth."""
    _write_config(
        tmp_path,
        synthetic={"n": 6, "seed": 4, "preset": "tiny", "lumbarization": 0.3,
                   "sacralization": 0.3},
        segmentation={"method": "ground_truth", "subjects_per_job": 4},
        labeling={"weights": "shipped"},
    )  # fmt: skip
    _snakemake(tmp_path)
    res = tmp_path / "results"
    sheet = pd.read_csv(res / "synthetic" / "samples.tsv", sep="\t")
    assert set(sheet["anomaly"]) == {"normal", "lumbarization", "sacralization"}
    subjects = pq.read_table(res / "tables" / "subjects.parquet").to_pandas()
    assert len(subjects) == 6 and subjects["processed"].all()
    merged = subjects.merge(sheet[["subject", "anomaly"]], on="subject")
    assert (merged["transitional_status"] == merged["anomaly"]).all()
    assert (merged["true_status"] == merged["anomaly"]).all()
    expected_lumbar = merged["anomaly"].map({"normal": 5, "lumbarization": 6, "sacralization": 4})
    assert (merged["lumbar_count"] == expected_lumbar).all()
    assert (merged["n_cervical"] == 6).all() and (merged["n_thoracic"] == 12).all()
    # the shipped labeler ran and was cross-checked by the count on these whole spines
    assert (subjects["labeler"] == "labeling.pt").all()
    assert subjects["decided_by"].isin(["count", "count+model"]).all()
    disagree = subjects["qc_flags"].str.contains("count_model_disagree")
    assert ((subjects["decided_by"] == "count") == disagree).all()

    structures = pq.read_table(res / "tables" / "structures.parquet").to_pandas()
    for _, row in sheet.iterrows():
        truth = _true_volumes(res / "synthetic", row)
        got = structures[structures["subject"] == row["subject"]].set_index("label")["volume_mm3"]
        assert set(got.index) == set(truth)
        # ground-truth masks split along the discs give the generator's instances voxel for
        # voxel, so the volumes are equal (up to float summation)
        for name, volume in truth.items():
            assert got[name] == pytest.approx(volume, rel=1e-9), (row["subject"], name)

    prev = pq.read_table(res / "tables" / "prevalence.parquet").to_pandas()
    allrows = prev[(prev["stratum"] == "all") & (prev["estimate"] == "called")]
    allrows = allrows.set_index("status")
    for st in ("lumbarization", "sacralization"):
        assert allrows.loc[st, "n"] == (sheet["anomaly"] == st).sum()
        assert allrows.loc[st, "denominator"] == 6
    assert pq.read_table(res / "tables" / "failures.parquet").num_rows == 0
    # the morphometrics tables (issue 21): present, with rows (values: test_morphometrics*)
    for name in ("morphometrics", "spine_alignment", "reference"):
        assert pq.read_table(res / "tables" / f"{name}.parquet").num_rows > 0, name
    assert pq.read_table(res / "tables" / "spine_alignment.parquet").num_rows == 6
    for name in ("prevalence.png", "volumes.png", "morphometrics_curves.png"):
        assert (res / "qc" / name).stat().st_size > 5000


def _phantom_cohort(root: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from test_cohort import _write_subject

    rows = ["subject\timage\tsemantic\tsex\tage"]
    for i, (s, v) in enumerate([("P01", "normal"), ("P02", "lumbarization"),
                                ("P03", "sacralization")]):  # fmt: skip
        _write_subject(root, s, v)
        rows.append(f"{s}\t{s}/image.nii.gz\t{s}/semantic.nii.gz\t{'FM'[i % 2]}\t{50 + 7 * i}")
    (root / "BAD").mkdir()
    (root / "BAD" / "image.nii.gz").write_bytes(b"\x1f\x8b truncated")
    rows.append("BAD\tBAD/image.nii.gz\tBAD/semantic.nii.gz\tF\t61")
    rows.append("GONE\tGONE/image.nii.gz\tGONE/semantic.nii.gz\tM\t44")
    sheet = root / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet


def test_sheet_cohort_failures_and_single_subject_rerun(tmp_path):
    """Synthetic phantoms + a corrupt and a missing image: failures recorded, rest complete."""
    sheet = _phantom_cohort(tmp_path / "data")
    work = tmp_path / "work"
    # 2 of 5 failing on purpose, one batch whole: the failure guard is switched off here
    _write_config(work, samples=str(sheet),
                  segmentation={"method": "ground_truth", "subjects_per_job": 2},
                  qc={"max_failed_fraction": 1.0, "fail_on_whole_batch": False})  # fmt: skip
    _snakemake(work)
    res = work / "results"
    fails = pq.read_table(res / "tables" / "failures.parquet").to_pandas().set_index("subject")
    assert sorted(fails.index) == ["BAD", "GONE"]
    assert (fails["rule"] == "segment").all()
    assert "does not exist" in fails.loc["GONE", "error"]
    subjects = pq.read_table(res / "tables" / "subjects.parquet").to_pandas().set_index("subject")
    assert subjects.loc[["P01", "P02", "P03"], "transitional_status"].tolist() == [
        "normal", "lumbarization", "sacralization"]  # fmt: skip
    assert subjects.loc["P02", "sex"] == "M" and not subjects.loc["BAD", "processed"]

    # documented single-subject rerun: --forcerun <its summary.json> -> the analyse job of its
    # batch (one process; P03 is alone in b00002) + tables
    dry = _snakemake(work, "-n", "--forcerun", "results/subjects/P03/summary.json")
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, flags=re.M))
    assert "segment" not in stats and stats.get("analyse_b00002") == "1", dry.stdout[-2000:]
    assert not [k for k in stats if k.startswith("analyse_") and k != "analyse_b00002"]

    # batches of 2 over sorted IDs: [BAD, GONE], [P01, P02], [P03]; a changed image (content:
    # snakemake ignores a bare touch of an unchanged file) reruns its batch, the batch's
    # analyse job (both subjects, one process) and the aggregate, nothing else
    img = tmp_path / "data" / "P01" / "image.nii.gz"
    im = nib.load(img)
    nib.save(nib.Nifti1Image(np.asarray(im.dataobj) + 1.0, im.affine), img)
    dry = _snakemake(work, "-n")
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.stdout, flags=re.M))
    assert stats.get("segment") == "1" and stats.get("analyse_b00001") == "1", dry.stdout[-2000:]
    assert not [k for k in stats if k.startswith("analyse_") and k != "analyse_b00001"]
    assert stats.get("aggregate") == "1"
    assert "output: results/subjects/P03/summary.json" not in dry.stdout


def test_default_configuration_with_the_shipped_model(tmp_path):
    """Synthetic: config.yaml as shipped (segmentation by the shipped U-Net), only fewer
    subjects: the demo cohort's first 8, two of them transitional. Every status and name is
    right; volumes are within the model's measured accuracy of the truth."""
    _write_config(tmp_path, synthetic={"n": 8})
    _snakemake(tmp_path, timeout=900)
    res = tmp_path / "results"
    sheet = pd.read_csv(res / "synthetic" / "samples.tsv", sep="\t")
    assert (sheet["anomaly"] != "normal").sum() >= 2
    subjects = pq.read_table(res / "tables" / "subjects.parquet").to_pandas()
    assert (subjects["segmentation_method"] == "model").all()
    assert (subjects["model"] == "segmentation.pt").all()
    merged = subjects.merge(sheet[["subject", "anomaly"]], on="subject")
    assert (merged["transitional_status"] == merged["anomaly"]).all(), merged
    structures = pq.read_table(res / "tables" / "structures.parquet").to_pandas()
    errors = []
    for _, row in sheet.iterrows():
        truth = _true_volumes(res / "synthetic", row)
        got = structures[structures["subject"] == row["subject"]].set_index("label")["volume_mm3"]
        assert set(got.index) == set(truth), row["subject"]
        rel = np.array([abs(got[k] - v) / v for k, v in truth.items()])
        errors.append(rel)
        # measured on this cohort: per-subject median 2-4 %
        assert np.median(rel) < 0.05, (row["subject"], np.median(rel))
    every = np.concatenate(errors)
    assert np.quantile(every, 0.9) < 0.15, np.quantile(every, 0.9)
    assert pq.read_table(res / "tables" / "failures.parquet").num_rows == 0
    assert (res / "tables" / "failure_guard.txt").exists()


def test_unreadable_cohort_fails_the_run_with_tables_written(tmp_path):
    data = tmp_path / "data"
    rows = ["subject\timage"]
    for s in ("U1", "U2", "U3"):
        (data / s).mkdir(parents=True)
        (data / s / "image.nii.gz").write_bytes(b"\x1f\x8b not an image")
        rows.append(f"{s}\t{s}/image.nii.gz")
    sheet = data / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    work = tmp_path / "work"
    _write_config(work, samples=str(sheet), prevalence={"strata": []})  # no sex/age columns
    proc = _snakemake(work, ok=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "spinecensus: run failed: 3 of 3 subjects failed" in out, out[-3000:]
    assert "every subject of batch b00000 failed" in out
    tables = work / "results" / "tables"
    assert pq.read_table(tables / "failures.parquet").num_rows == 3
    assert pq.read_table(tables / "subjects.parquet").num_rows == 3
    assert not (tables / "failure_guard.txt").exists()


def test_labeler_as_segmentation_weights_stops_before_any_job(tmp_path):
    labeler = REPO / "spinecensus" / "weights" / "labeling.pt"
    _write_config(tmp_path, synthetic={"n": 2}, segmentation={"weights": str(labeler)})
    proc = _snakemake(tmp_path, ok=False)
    assert proc.returncode != 0
    assert f"{labeler}: these are labeling weights" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
