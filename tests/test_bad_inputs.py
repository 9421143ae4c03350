"""Every kind of the bad-input corpus gives its clear error (synthetic corpus).

The corpus is generated at test time by ``tests/data/bad/make_corpus.py`` from small
synthetic volumes; nothing is a committed binary.  Per-file kinds must raise
:class:`spinecensus.io.InputError` from :func:`spinecensus.io.checks.load_checked` (the
entry point the workflow uses before the model) with a message ``"<file>: <problem>"``;
the pure-noise image passes the input checks on purpose and ends as the analysis's
"unsplittable" verdict; sheet kinds stop the run in the sample-sheet reader, naming the row.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from corpus_loader import load_corpus_module

from spinecensus import io
from spinecensus.io import checks

make_corpus = load_corpus_module()

FILE_LEVEL = sorted(k for k, e in make_corpus.FILE_KINDS.items() if e.level == "file")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus.make_file_corpus(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("kind", FILE_LEVEL)
def test_file_kind_raises_clear_error(corpus: dict[str, Path], kind: str) -> None:
    """Each per-file bad input raises InputError naming the file and the problem (synthetic)."""
    path = corpus[kind]
    with pytest.raises(io.InputError) as err:
        checks.load_checked(path)
    msg = str(err.value)
    # the file (or, for a DICOM folder, the folder or the offending file inside it)
    assert msg.startswith(str(path)), msg
    assert make_corpus.FILE_KINDS[kind].fragment in msg.lower(), msg
    assert "\n" not in msg  # one line, fit for a table cell
    assert err.value.path is not None and err.value.path.startswith(str(path))


def test_corpus_covers_every_kind(corpus: dict[str, Path]) -> None:
    """The generator writes every kind it declares (synthetic)."""
    assert set(corpus) == set(make_corpus.FILE_KINDS)
    assert not corpus["missing_path"].exists()
    assert corpus["zero_byte"].stat().st_size == 0


def test_good_base_image_passes(corpus: dict[str, Path]) -> None:
    """The valid volume every corruption starts from passes all checks (synthetic)."""
    scan = checks.load_checked(corpus["truncated_nii_gz"].with_name("good.nii.gz"))
    assert scan.data.shape == make_corpus.BASE_SHAPE


def test_four_d_single_volume_accepted(tmp_path: Path) -> None:
    """4-D with a singleton last axis is accepted as 3-D (synthetic)."""
    vol = make_corpus.base_volume(0)
    p = tmp_path / "four_d_one.nii.gz"
    nib.save(nib.Nifti1Image(vol[..., None], make_corpus.SAGITTAL_AFFINE), str(p))
    scan = checks.load_checked(p)
    assert scan.data.shape == vol.shape
    assert np.array_equal(scan.data, vol)


def test_zero_pixdim_with_sform_uses_the_sform(tmp_path: Path) -> None:
    """A zero pixdim is harmless when the sform defines the geometry (synthetic)."""

    def zero_pixdim_keep_sform(h: nib.Nifti1Header) -> None:
        h["pixdim"][1:4] = [3.0, 0.0, 1.0]
        h["qform_code"] = 0

    p = make_corpus._patched_nifti(
        make_corpus.base_volume(0), tmp_path / "z.nii.gz", zero_pixdim_keep_sform
    )
    scan = io.load_scan(p)
    assert scan.spacing_mm == pytest.approx((3.0, 1.0, 1.0))


def test_pure_noise_passes_checks_and_is_unsplittable(corpus: dict[str, Path]) -> None:
    """Pure noise is not rejected before the model (no intensity rule separates it from
    real spine MRI without false rejects); with no structure found its verdict is
    "unsplittable" from the analysis, not an exception (synthetic)."""
    scan = checks.load_checked(corpus["pure_noise"])
    assert checks.scan_problems(scan) == []
    from spinecensus.split import instances as split

    empty = np.zeros(scan.data.shape, np.uint8)
    result = split.split_instances(empty, scan.spacing_mm)
    assert result.valid is False
    assert result.invalid_reason is not None and result.invalid_reason.startswith("unsplittable")
    assert int(result.instances.max(initial=0)) == 0
    from spinecensus.census import subject_analysis

    analysis = subject_analysis.analyse_semantic(empty, scan)
    assert analysis.summary["split_valid"] is False
    assert analysis.summary["invalid_reason"].startswith("unsplittable")
    assert analysis.summary["transitional_status"] == "undetermined"


@pytest.mark.parametrize(
    ("spacing", "fragment"),
    [
        ((3.0, 0.05, 1.0), "0.05 mm along superior-inferior"),
        ((12.0, 1.0, 1.0), "12 mm along left-right"),
    ],
)
def test_spacing_bounds(tmp_path: Path, spacing: tuple[float, ...], fragment: str) -> None:
    """Spacing outside 0.1-10 mm on any axis is rejected with the axis named (synthetic)."""
    aff = make_corpus.SAGITTAL_AFFINE.copy()
    aff[:3, :3] = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0) * np.asarray(spacing)
    vol = make_corpus.base_volume(0, (12, 400, 48))  # big enough to pass the size check
    p = tmp_path / "s.nii.gz"
    nib.save(nib.Nifti1Image(vol, aff), str(p))
    with pytest.raises(io.InputError, match="implausible voxel spacing") as err:
        checks.load_checked(p)
    assert fragment in str(err.value)


def test_oblique_sagittal_axis_rejected() -> None:
    """No voxel axis near left-right (every axis 54.7 degrees oblique) -> no sagittal
    slice axis; a 3 mm slice axis turned 50 degrees towards anterior-posterior reads as a
    coronal-like stack; 20 degrees is an ordinary oblique sagittal scan (synthetic)."""
    vol = make_corpus.base_volume(0)
    diag = np.array([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=float) / np.array(
        [[np.sqrt(3)], [np.sqrt(2)], [np.sqrt(6)]]
    )
    aff = make_corpus.SAGITTAL_AFFINE.copy()
    aff[:3, :3] = diag @ np.diag([3.0, 1.0, 1.0])
    problems = checks.scan_problems(io.scan_from_image(nib.Nifti1Image(vol, aff)))
    assert any("no sagittal slice axis" in p and "55 degrees" in p for p in problems), problems

    def turned(deg: float) -> np.ndarray:
        th = np.radians(deg)  # rotation about superior-inferior
        rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
        a = make_corpus.SAGITTAL_AFFINE.copy()
        a[:3, :3] = rot @ a[:3, :3]
        return a

    problems = checks.scan_problems(io.scan_from_image(nib.Nifti1Image(vol, turned(50.0))))
    assert any("not a sagittal acquisition" in p for p in problems), problems
    assert checks.scan_problems(io.scan_from_image(nib.Nifti1Image(vol, turned(20.0)))) == []


def test_reoriented_input_accepted(tmp_path: Path) -> None:
    """A sagittal acquisition stored in another axis order is reoriented, not rejected
    (synthetic)."""
    vol = make_corpus.base_volume(0)
    aff = make_corpus.SAGITTAL_AFFINE
    perm = (2, 0, 1)
    stored = np.transpose(vol, perm)
    aff2 = aff.copy()
    aff2[:3, :3] = aff[:3, list(perm)]
    p = tmp_path / "permuted.nii.gz"
    nib.save(nib.Nifti1Image(stored, aff2), str(p))
    scan = checks.load_checked(p)
    ref = io.scan_from_image(nib.Nifti1Image(vol, aff))
    assert np.array_equal(scan.data, ref.data)


# ------------------------------------------------------------------ sample-sheet level


@pytest.fixture(scope="module")
def sheets(tmp_path_factory: pytest.TempPathFactory, corpus: dict[str, Path]) -> dict[str, Path]:
    good = corpus["truncated_nii_gz"].with_name("good.nii.gz")
    return make_corpus.make_sheet_corpus(tmp_path_factory.mktemp("sheets"), [good])


@pytest.mark.parametrize("kind", sorted(make_corpus.SHEET_KINDS))
def test_sheet_kind_stops_with_row(sheets: dict[str, Path], kind: str) -> None:
    """Sheet-level errors raise before any job, naming the sheet, the row and the ID
    (synthetic)."""
    from spinecensus.census import sheet as census_sheet

    with pytest.raises(census_sheet.SampleSheetError) as err:
        census_sheet.read_sheet(sheets[kind])
    msg = str(err.value)
    assert str(sheets[kind]) in msg
    assert make_corpus.SHEET_KINDS[kind].fragment in msg.lower(), msg
    expected_row = {"duplicate_subject": 4, "unsafe_id_dotdot": 3, "unsafe_id_space": 3}
    if kind in expected_row:
        assert f"row {expected_row[kind]}" in msg
    else:
        assert "row 2" in msg  # first Latin-1 byte is on the first data row


def test_missing_image_is_per_subject(tmp_path: Path, corpus: dict[str, Path]) -> None:
    """A sheet row whose image does not exist is not a sheet error: the sheet loads and
    the subject's segmentation records "file does not exist" (synthetic)."""
    from spinecensus.census import segment_job
    from spinecensus.census import sheet as census_sheet

    good = corpus["truncated_nii_gz"].with_name("good.nii.gz")
    sheet = make_corpus.write_sheet(
        tmp_path / "s.tsv", [("S001", str(good)), ("S002", "nowhere/missing.nii.gz")]
    )
    df = census_sheet.resolve_paths(census_sheet.read_sheet(sheet), sheet)
    assert list(df["subject"]) == ["S001", "S002"]
    info = segment_job.segment(
        ["S002"], [df["image"][1]], tmp_path / "seg", method="ground_truth", semantics=[""]
    )
    rec = info["subjects"][0]
    assert rec["ok"] is False
    assert "missing.nii.gz: file does not exist" in rec["error"]
    assert (tmp_path / "seg" / "S002.failed.json").exists()


def test_check_cli_reports_each_input(
    corpus: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """``spinecensus check``: one line per input, exit status 1 when any fails (synthetic)."""
    from spinecensus.cli import main

    good = corpus["truncated_nii_gz"].with_name("good.nii.gz")
    assert main(["check", str(good)]) == 0
    assert main(["check", str(good), str(corpus["dicom_missing_slices"])]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"ok   {good}: (12, 64, 48) voxels")
    assert out[-1].startswith(f"FAIL {corpus['dicom_missing_slices']}: 2 slice(s) missing")
