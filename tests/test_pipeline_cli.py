"""`spinecensus split` and spinecensus.census.subject_analysis: synthetic phantom masks."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from spine_phantom import make_phantom

from spinecensus import io as sio
from spinecensus.anatomy import labels
from spinecensus.census.subject_analysis import (
    analyse_semantic,
    process_semantic,
    write_subject_outputs,
)
from spinecensus.cli import main
from spinecensus.split.instances import UNSPLITTABLE_NO_DISCS

# stored axis orders to write the canonical (R, I, P) phantom in: (permutation, flips)
ORIENTATIONS = {
    "RIP": ((0, 1, 2), (0, 0, 0)),
    "LPS": ((0, 2, 1), (1, 0, 1)),  # slices L->R reversed, AP then IS reversed = S
    "SRA": ((1, 0, 2), (1, 0, 1)),
}


def write_canonical(canonical: np.ndarray, spacing, path: Path, orient: str = "RIP") -> Path:
    """Write a canonical-order array as NIfTI in another stored orientation (test helper)."""
    perm, flips = ORIENTATIONS[orient]
    world_dir = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]])  # R, I, P in RAS
    arr = np.transpose(canonical, perm)
    aff = np.eye(4)
    for i, ax in enumerate(perm):
        aff[:3, i] = world_dir[ax] * spacing[ax]
    aff[:3, 3] = (-31.25, 17.5, 102.0)
    for i, f in enumerate(flips):
        if f:
            arr = np.flip(arr, i)
            aff[:3, 3] += aff[:3, i] * (arr.shape[i] - 1)
            aff[:3, i] = -aff[:3, i]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr).astype(np.uint8), aff), str(path))
    return path


@pytest.fixture(scope="module")
def lumbarized():
    return make_phantom("lumbarization", spacing_mm=(4.0, 2.0, 1.6))


@pytest.mark.parametrize("orient", list(ORIENTATIONS))
def test_cli_split_writes_outputs(tmp_path, lumbarized, orient, capsys):
    """Synthetic phantom (lumbarization) stored in several orientations: instances on the
    input grid with the input affine, GT names, summary fields, same volumes."""
    p = lumbarized
    src = write_canonical(p.semantic, p.spacing_mm, tmp_path / "sem.nii.gz", orient)
    out = tmp_path / "out"
    assert main(["split", str(src), "--out", str(out)]) == 0
    assert "25 vertebrae" in capsys.readouterr().out
    inp = nib.load(str(src))
    res = nib.load(str(out / "instances.nii.gz"))
    assert np.array_equal(res.affine, inp.affine)
    assert res.shape == inp.shape and res.get_data_dtype() == np.uint16
    truth = sio.Orientation.from_affine(inp.affine, inp.shape).stored(p.instances)
    assert np.array_equal(np.asarray(res.dataobj), truth)
    names = json.loads((out / "labels.json").read_text())
    assert names == {str(k): v for k, v in p.id_to_name.items()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["split_valid"] is True and summary["invalid_reason"] is None
    assert summary["transitional_status"] == "lumbarization"
    assert summary["lumbar_count"] == 6
    assert summary["n_vertebrae"] == 25 and summary["n_discs"] == 24
    assert summary["first_visible_label"] == "C2" and summary["last_visible_label"] == "S1"
    assert summary["decided_by"] == "count" and summary["qc_flags"] == []
    vox = abs(np.linalg.det(inp.affine[:3, :3]))
    counts = np.bincount(p.instances.ravel())
    assert summary["volumes_mm3"]["L6"] == pytest.approx(
        counts[labels.class_id("L6", "lumbarization")] * vox
    )


def test_cli_no_discs_reports_unsplittable(tmp_path, capsys):
    """A vertebra-only mask: exit 0, outputs written, verdict in summary and on stderr."""
    sem = np.zeros((4, 30, 10), dtype=np.uint8)
    sem[1:3, 5:25, 2:8] = 1
    src = write_canonical(sem, (3.0, 1.0, 1.0), tmp_path / "sem.nii.gz")
    assert main(["split", str(src), "--out", str(tmp_path / "o")]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["split_valid"] is False
    assert summary["invalid_reason"] == UNSPLITTABLE_NO_DISCS
    assert summary["transitional_status"] == "undetermined"
    assert UNSPLITTABLE_NO_DISCS in capsys.readouterr().err


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = np.zeros((3, 8, 4), dtype=np.uint8)
    good[1, 2:6, 1:3] = 1
    out: dict[str, tuple[Path, str]] = {}
    out["missing"] = (tmp / "nope.nii.gz", "does not exist")
    empty = tmp / "empty.nii.gz"
    empty.write_bytes(b"")
    out["empty file"] = (empty, "empty")
    junk = tmp / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"not a nifti at all" * 20))
    out["not nifti"] = (junk, "not a readable NIfTI")
    # a mask large enough that half its gzip stream still holds the whole header: the data
    # are what is cut off
    noise = np.random.default_rng(0).integers(0, 3, (4, 64, 64)).astype(np.uint8)
    full = write_canonical(noise, (1, 1, 1), tmp / "full.nii.gz")
    trunc = tmp / "trunc.nii.gz"
    trunc.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    out["truncated"] = (trunc, "truncated or corrupt image data")
    header_cut = tmp / "header_cut.nii.gz"
    header_cut.write_bytes(full.read_bytes()[:60])
    out["header cut"] = (header_cut, "not a readable NIfTI")
    bad_labels = good.copy()
    bad_labels[0, 0, 0] = 7
    out["labels"] = (write_canonical(bad_labels, (1, 1, 1), tmp / "lab.nii.gz"), "labels")
    flt = tmp / "float.nii.gz"
    nib.save(nib.Nifti1Image(good.astype(np.float32) + 0.25, np.eye(4)), str(flt))
    out["non-integer"] = (flt, "non-integer")
    twod = tmp / "twod.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5), np.uint8), np.eye(4)), str(twod))
    out["2-D"] = (twod, "3-D")
    return out


def test_cli_bad_inputs_exit_nonzero_with_one_line(tmp_path, capsys):
    """Each bad input: exit code 2, exactly one stderr line naming the file and problem."""
    for what, (path, needle) in _bad_inputs(tmp_path).items():
        rc = main(["split", str(path), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert rc == 2, what
        assert len(err.splitlines()) == 1, (what, err)
        assert str(path) in err and needle in err, (what, err)
    assert not (tmp_path / "o" / "summary.json").exists()


def test_cli_console_script_exit_code(tmp_path):
    """The real process: `python -m spinecensus split` on a missing file exits non-zero."""
    r = subprocess.run(
        [sys.executable, "-m", "spinecensus", "split", str(tmp_path / "x.nii.gz"), "--out", "o"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip().endswith("file does not exist")


def test_analyse_semantic_with_model_log_probs(tmp_path, lumbarized):
    """Synthetic phantom + model log-probs that agree with the truth: decided by both."""
    p = lumbarized
    src = write_canonical(p.semantic, p.spacing_mm, tmp_path / "sem.nii.gz", "LPS")
    scan = sio.load_mask(src)
    names = labels.all_names()
    lp = np.full((len(p.id_to_name), len(names)), np.log(0.2 / 48))
    for i, nm in p.id_to_name.items():
        lp[i - 1, names.index(nm)] = np.log(0.8)
    a = analyse_semantic(scan.data, scan, log_probs=lp)
    assert a.labeling.decided_by == "count+model"
    assert a.summary["decided_by"] == "count+model"
    assert all(r["confidence"] == pytest.approx(0.8) for r in a.structures)
    write_subject_outputs(a, scan, tmp_path / "o")
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["n_instances"] == 49
    again = process_semantic(src, tmp_path / "o2")
    assert again.labeling.id_to_name == p.id_to_name


def test_cli_split_on_synthetic_subject(tmp_path, synthetic_tiny):
    """Synthetic sacralization subject as written by the generator (non-canonical stored
    axes): CLI names every structure and reports the anomaly."""
    s = synthetic_tiny["sacralization"][0]
    _, sem_img, inst_img = s.to_nifti()
    nib.save(sem_img, str(tmp_path / "semantic.nii.gz"))
    assert main(["split", str(tmp_path / "semantic.nii.gz"), "--out", str(tmp_path / "o")]) == 0
    names = json.loads((tmp_path / "o" / "labels.json").read_text())
    assert names == {str(k): v for k, v in s.id_to_name.items()}
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["transitional_status"] == "sacralization" and summary["lumbar_count"] == 4
    out = nib.load(str(tmp_path / "o" / "instances.nii.gz"))
    assert np.array_equal(np.asarray(out.dataobj), np.asarray(inst_img.dataobj))
    assert np.array_equal(out.affine, nib.load(str(tmp_path / "semantic.nii.gz")).affine)
