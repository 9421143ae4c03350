"""What the workflow's rules run (spinecensus.census): sample sheet checks, batches,
per-subject failure capture (on the small synthetic phantom of tests/spine_phantom.py)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow.parquet as pq
import pytest
from spine_phantom import make_phantom

from spinecensus.anatomy import labels
from spinecensus.census.aggregate_job import aggregate
from spinecensus.census.analyse_job import analyse, label_ids
from spinecensus.census.batches import batch_of, make_batches
from spinecensus.census.segment_job import segment
from spinecensus.census.sheet import SampleSheetError, read_sheet, resolve_paths
from spinecensus.census.synthesize_job import synthesize


# stored axes = canonical (R, I, P): x = +axis0, z = -axis1, y = -axis2
def _affine(sp):
    return np.array(
        [[sp[0], 0, 0, 0], [0, 0, -sp[2], 0], [0, -sp[1], 0, 0], [0, 0, 0, 1]], dtype=float
    )


def _write_subject(root, subject, variant):
    ph = make_phantom(variant)
    d = root / subject
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = ph.semantic.astype(np.float32) * 100 + rng.normal(10, 3, ph.semantic.shape)
    aff = _affine(ph.spacing_mm)
    nib.save(nib.Nifti1Image(img.astype(np.float32), aff), d / "image.nii.gz")
    nib.save(nib.Nifti1Image(ph.semantic.astype(np.uint8), aff), d / "semantic.nii.gz")
    return ph


def test_sheet_checks_name_the_row(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text("subject\timage\nA\ta.nii.gz\nB\tb.nii.gz\nA\tc.nii.gz\n")
    with pytest.raises(SampleSheetError, match=r"row 4: duplicate subject ID 'A'.*row 2"):
        read_sheet(p)
    p.write_text("subject\timage\nA\ta.nii.gz\n../x\tb.nii.gz\n")
    with pytest.raises(SampleSheetError, match=r"row 3: subject ID '\.\./x' is not"):
        read_sheet(p)
    p.write_text("subject,image\nA B,a.nii.gz\n")
    with pytest.raises(SampleSheetError, match="row 2"):
        read_sheet(p)
    p.write_bytes("subject\timage\nA\ta.nii.gz\nB\t\xe9.nii.gz\n".encode("latin-1"))
    with pytest.raises(SampleSheetError, match="not UTF-8"):
        read_sheet(p)
    p.write_text("subj\timage\nA\ta\n")
    with pytest.raises(SampleSheetError, match="missing column 'subject'"):
        read_sheet(p)


def test_sheet_csv_and_relative_paths(tmp_path):
    p = tmp_path / "sub" / "s.csv"
    p.parent.mkdir()
    p.write_text("subject,image,age,sex\nB,img/b.nii.gz,51,F\nA,/abs/a.nii.gz,60,M\n")
    df = resolve_paths(read_sheet(p), p)
    assert df["image"].tolist() == [str(p.parent.resolve() / "img/b.nii.gz"), "/abs/a.nii.gz"]
    assert df["age"].dtype.kind in "if"


def test_batches_are_deterministic_sorted_chunks():
    b = make_batches(["S3", "S1", "S2", "S0", "S4"], 2)
    assert b == {"b00000": ["S0", "S1"], "b00001": ["S2", "S3"], "b00002": ["S4"]}
    assert batch_of(b)["S3"] == "b00001"


def test_segment_and_analyse_capture_failures(tmp_path):
    """Synthetic phantoms: good subjects analysed correctly, a bad image and a missing image
    become failures without stopping the batch."""
    data = tmp_path / "data"
    truth = {
        s: _write_subject(data, s, v)
        for s, v in [("A", "normal"), ("B", "lumbarization"), ("C", "sacralization")]
    }
    (data / "BAD").mkdir()
    (data / "BAD" / "image.nii.gz").write_bytes(b"not a nifti")
    subjects = ["A", "B", "C", "BAD", "MISSING"]
    images = [str(data / s / "image.nii.gz") for s in subjects]
    sems = [str(data / s / "semantic.nii.gz") for s in subjects]
    seg = tmp_path / "seg" / "b00000"
    info = segment(subjects, images, seg, method="ground_truth", semantics=sems)
    assert [r["ok"] for r in info["subjects"]] == [True, True, True, False, False]
    assert (seg / "A.nii.gz").exists() and (seg / "BAD.failed.json").exists()
    err = json.loads((seg / "MISSING.failed.json").read_text())["error"]
    assert "MISSING" in err and "does not exist" in err

    out = tmp_path / "subjects"
    for s, variant in [("A", "normal"), ("B", "lumbarization"), ("C", "sacralization")]:
        summ = analyse(s, seg, out / s, image=images[subjects.index(s)])
        assert summ["status"] == "ok", summ
        assert summ["transitional_status"] == variant
        rows = pq.read_table(out / s / "structures.parquet").to_pandas()
        assert set(rows["label"]) == set(truth[s].id_to_name.values())
        assert (out / s / "qc.png").stat().st_size > 1000
        lab = nib.load(out / s / "labels.nii.gz")
        assert np.array_equal(lab.affine, nib.load(images[subjects.index(s)]).affine)
        ids = label_ids()
        assert ids["C2"] in np.unique(np.asarray(lab.dataobj))
    for s in ("BAD", "MISSING"):
        summ = analyse(s, seg, out / s, image=images[subjects.index(s)])
        assert summ["status"] == "failed" and summ["rule"] == "segment"
        failed = json.loads((out / s / "failed.json").read_text())
        assert failed["subject"] == s and failed["rule"] == "segment" and failed["error"]
        assert pq.read_table(out / s / "structures.parquet").num_rows == 0
        assert not (out / s / "instances.nii.gz").exists()

    # a subject that used to succeed and now fails keeps no stale results
    (seg / "A.nii.gz").write_bytes(b"broken")
    summ = analyse("A", seg, out / "A")
    assert summ["status"] == "failed" and summ["rule"] == "analyse"
    assert not (out / "A" / "instances.nii.gz").exists()

    sheet = tmp_path / "samples.tsv"
    sheet.write_text("subject\timage\tsex\n" + "".join(f"{s}\tx\tF\n" for s in subjects))
    paths = aggregate(out, subjects, tmp_path / "tables", sheet=sheet)
    fails = pq.read_table(paths["failures"]).to_pandas()
    assert sorted(fails["subject"]) == ["A", "BAD", "MISSING"]
    assert set(fails["rule"]) == {"segment", "analyse"}


def test_label_ids_cover_every_variant():
    ids = label_ids()
    for v in labels.VARIANTS:
        assert set(labels.structures(v)) <= set(ids)
    assert sorted(ids.values()) == list(range(1, len(ids) + 1))


def test_parallel_synthesis_equals_write_cohort(tmp_path):
    """Synthetic: the process-pool generator writes the same cohort as write_cohort."""
    from spinecensus import synthetic

    a = synthesize(tmp_path / "a", 3, 5, 0.4, 0.3, preset="tiny", workers=2)
    b = synthetic.write_cohort(tmp_path / "b", 3, 5, 0.4, 0.3, synthetic.SyntheticConfig.tiny())
    assert a.read_text() == Path(b).read_text()
    for s in ("S0000", "S0002"):
        for f in ("image.nii.gz", "semantic.nii.gz"):
            x = np.asarray(nib.load(a.parent / s / f).dataobj)
            y = np.asarray(nib.load(Path(b).parent / s / f).dataobj)
            assert np.array_equal(x, y)


def test_labeler_votes_cross_checked_by_the_count(tmp_path):
    """Synthetic phantoms + an untrained (random) tiny labeler: the segment job writes the
    labeler's vote map, the analysis turns it into names, and on whole spines (C2 and the
    sacrum in view) the count overrules a disagreeing model, with the disagreement flagged
    and ``decided_by`` recorded."""
    import torch

    from spinecensus.segment.network import build_network
    from spinecensus.segment.spec import ModelSpec, labeling_classes
    from spinecensus.segment.weights import save_weights

    torch.manual_seed(0)
    spec = ModelSpec(
        task="labeling",
        classes=labeling_classes(),
        encoder_depth=3,
        decoder_channels=(16, 8, 8),
        target_spacing_mm=(4.0, 4.0),
        input_size=None,
    )
    weights = save_weights(build_network(spec), spec, tmp_path / "labeler.pt")
    data = tmp_path / "data"
    _write_subject(data, "A", "lumbarization")
    image, sem = str(data / "A" / "image.nii.gz"), str(data / "A" / "semantic.nii.gz")
    seg = tmp_path / "seg" / "b00000"
    info = segment(
        ["A"], [image], seg, method="ground_truth", semantics=[sem], labeler_weights=str(weights)
    )
    assert info["labeler"] == "labeler.pt" and info["subjects"][0]["ok"]
    votes = np.asarray(nib.load(seg / "A.labeler.nii.gz").dataobj)
    truth = np.asarray(nib.load(sem).dataobj)
    assert ((votes > 0) == (truth > 0)).all()  # votes exactly on the segmented spine
    summ = analyse("A", seg, tmp_path / "out" / "A", image=image)
    assert summ["status"] == "ok" and summ["labeler"] == "labeler.pt"
    assert summ["transitional_status"] == "lumbarization"
    assert summ["decided_by"] in ("count", "count+model")
    if summ["decided_by"] == "count":
        assert any(f.startswith("count_model_disagree") for f in summ["qc_flags"])
