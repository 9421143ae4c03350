"""DICOM series reading (synthetic series written with pydicom from synthetic volumes).

Every series here is synthetic: either written by ``spinecensus.io.dicom_write.write_series`` from
a synthetic volume with a known NIfTI affine (round trip against the NIfTI path of
``spinecensus.io``) or built slice by slice with pydicom in this file with hand-set LPS
geometry (an independent check of the orientation conventions).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from corpus_loader import load_corpus_module
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from spinecensus import io
from spinecensus.io import dicom_series, dicom_write

make_corpus = load_corpus_module()


def _synthetic_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic spine image (``spinecensus.synthetic``, tiny preset) as int16 in its
    non-canonical storage order, with its affine turned 6 degrees about left-right so
    that the DICOM geometry is oblique."""
    from spinecensus import synthetic

    subj = synthetic.generate_subject(seed, "normal", synthetic.SyntheticConfig.tiny())
    img = subj.to_nifti()[0]
    data = np.asarray(img.dataobj)
    data = np.rint(1000 * (data - data.min()) / max(float(np.ptp(data)), 1e-6)).astype(np.int16)
    th = np.radians(6.0)
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    return data, rot @ np.asarray(img.affine, dtype=float)


def _world_of_canonical(scan: io.Scan) -> np.ndarray:
    """World (RAS mm) coordinates of every canonical voxel centre, shape (*canon, 3)."""
    stored_shape = scan.orientation.stored_shape
    grids = np.meshgrid(*[np.arange(n) for n in stored_shape], indexing="ij")
    world = [
        sum(scan.affine[r, c] * grids[c] for c in range(3)) + scan.affine[r, 3] for r in range(3)
    ]
    return np.stack([scan.orientation.canonical(w) for w in world], axis=-1)


def _lr_axis(affine: np.ndarray) -> int:
    return int(np.argmax(np.abs(affine[0, :3])))


def test_round_trip_matches_nifti(tmp_path: Path) -> None:
    """A synthetic volume written as DICOM loads to the same canonical array, spacing
    and world coordinates as the same volume read from NIfTI (synthetic)."""
    data, aff = _synthetic_volume()
    ref = io.scan_from_image(nib.Nifti1Image(data, aff), path="ref")
    dicom_write.write_series(data, aff, tmp_path / "s", slice_axis=_lr_axis(aff))
    got = io.load_scan(tmp_path / "s")
    assert got.data.shape == ref.data.shape
    assert np.array_equal(got.data, ref.data)
    assert np.allclose(got.spacing_mm, ref.spacing_mm, atol=1e-6)
    assert np.allclose(_world_of_canonical(got), _world_of_canonical(ref), atol=1e-4)
    assert got.path == str(tmp_path / "s")
    # the NIfTI header built for outputs carries only geometry
    assert got.header is not None and int(got.header["sform_code"]) == 1


def test_slice_axis_other_than_sagittal(tmp_path: Path) -> None:
    """Slices written along a non-sagittal array axis still reorient to the same
    canonical volume: reading depends on geometry only (synthetic)."""
    data, aff = _synthetic_volume()
    ref = io.scan_from_image(nib.Nifti1Image(data, aff))
    other = (_lr_axis(aff) + 1) % 3
    dicom_write.write_series(data, aff, tmp_path / "s", slice_axis=other)
    got = io.load_scan(tmp_path / "s")
    assert np.array_equal(got.data, ref.data)
    assert np.allclose(_world_of_canonical(got), _world_of_canonical(ref), atol=1e-4)


def _write_slice(
    path: Path,
    pixels: np.ndarray,
    ipp: tuple[float, float, float],
    iop: tuple[float, ...],
    spacing: tuple[float, float],
    series_uid: str,
    instance: int,
    thickness: float = 4.0,
    slope: float = 1.0,
    intercept: float = 0.0,
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dicom_write.MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = dicom_write.MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "MR"
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = list(ipp)
    ds.ImageOrientationPatient = list(iop)
    ds.PixelSpacing = list(spacing)
    ds.SliceThickness = thickness
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


# sagittal slices in LPS: row direction (increasing column) = posterior (+y),
# column direction (increasing row) = inferior (-z); normal = r x c = -x (towards right)
SAG_IOP = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _hand_series(folder: Path, xs: list[float], **kw: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    rows, cols = 6, 5
    for n, x in enumerate(xs):
        # pixel value encodes the slice's x position and the row: 100 * slice + row
        pix = np.full((rows, cols), 100 * n, np.uint16) + np.arange(rows, dtype=np.uint16)[:, None]
        # file order and InstanceNumber deliberately unrelated to position
        _write_slice(
            folder / f"f{(7 * n) % len(xs)}.dcm",
            pix,
            (x, -20.0, 50.0),
            SAG_IOP,
            (0.8, 0.7),
            uid,
            instance=len(xs) - n,
            **kw,
        )


def test_hand_built_sagittal_geometry(tmp_path: Path) -> None:
    """Independent of write_series: LPS sagittal slices at x = +8 (left) ... -8 (right)
    land in canonical order (left -> right, superior -> inferior, anterior -> posterior),
    with spacing from PixelSpacing and positions, not SliceThickness (synthetic)."""
    xs = [4.0, -8.0, 8.0, 0.0, -4.0]  # unsorted on purpose; 4 mm apart
    _hand_series(tmp_path / "s", xs, thickness=2.5)
    scan = io.load_scan(tmp_path / "s")
    assert scan.data.shape == (5, 6, 5)
    assert scan.spacing_mm == pytest.approx((4.0, 0.8, 0.7))
    # canonical slice 0 is the most left one (LPS x = +8, written as n = 2)
    order = [int(scan.data[k, 0, 0]) // 100 for k in range(5)]
    assert order == [2, 0, 3, 4, 1]  # x = 8, 4, 0, -4, -8
    # row 0 most superior: pixel row index increases inferiorly (c = -z) -> unchanged
    assert list(scan.data[0, :, 0] % 100) == [0, 1, 2, 3, 4, 5]
    # RAS affine: the first stored voxel is at LPS (x, -20, 50) -> RAS (-x, 20, 50)
    first = scan.affine @ np.array([0, 0, 0, 1.0])
    assert first[1:3] == pytest.approx([20.0, 50.0])
    assert abs(first[0]) == pytest.approx(8.0)


def test_rescale_slope_intercept(tmp_path: Path) -> None:
    """RescaleSlope/Intercept are applied per slice; output becomes float32 (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 6.0], slope=0.5, intercept=-10.0)
    scan = io.load_scan(tmp_path / "s")
    assert scan.data.dtype == np.float32
    raw_min = 0  # slice n=0, row 0
    assert float(scan.data.min()) == pytest.approx(raw_min * 0.5 - 10.0)
    assert float(scan.data.max()) == pytest.approx((200 + 5) * 0.5 - 10.0)


def test_float_volume_quantised_round_trip(tmp_path: Path) -> None:
    """A float volume goes through uint16 + rescale; values agree within one step."""
    data, aff = _synthetic_volume(1)
    fdata = data.astype(np.float32) * 0.37 + 5.0
    ref = io.scan_from_image(nib.Nifti1Image(fdata, aff))
    dicom_write.write_series(fdata, aff, tmp_path / "s", slice_axis=_lr_axis(aff))
    got = io.load_scan(tmp_path / "s")
    step = float(np.ptp(fdata)) / 65535
    assert np.max(np.abs(got.data - ref.data)) <= step


def test_mixed_series_rejected_with_list(tmp_path: Path) -> None:
    """Two series in one folder: rejected, each series listed (number, protocol name,
    slice count, UID fingerprint), the UID itself never printed (synthetic)."""
    vol = make_corpus.base_volume(0, (6, 20, 20))
    aff = make_corpus.SAGITTAL_AFFINE
    dicom_write.write_series(
        vol,
        aff,
        tmp_path,
        series_number=2,
        series_description="SAG T2 TSE",
        series_uid="1.2.826.0.1.3680043.2.1125.1.111",
    )
    dicom_write.write_series(
        vol[:3],
        aff,
        tmp_path,
        series_number=10,
        series_description="SAG T1",
        series_uid="1.2.826.0.1.3680043.2.1125.1.222",
        file_prefix="b",
    )
    with pytest.raises(io.InputError) as err:
        io.load_scan(tmp_path)
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path}: folder holds 2 DICOM series")
    assert "series 2 'SAG T2 TSE' (6 slices" in msg
    assert "series 10 'SAG T1' (3 slices" in msg
    assert msg.index("series 2 ") < msg.index("series 10 ")  # numeric order
    assert "1.2.826.0.1.3680043.2.1125.1.111" not in msg
    assert f"uid#{dicom_series.series_fingerprint('1.2.826.0.1.3680043.2.1125.1.111')}" in msg


def test_missing_slices_rejected(tmp_path: Path) -> None:
    """A gap of 3 slice steps = 2 missing slices, reported with the gap in mm (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 6.0, 15.0, 18.0])
    with pytest.raises(io.InputError, match=r"2 slice\(s\) missing: gap of 9 mm"):
        io.load_scan(tmp_path / "s")


def test_non_uniform_spacing_rejected(tmp_path: Path) -> None:
    """A gap that is not a multiple of the step is "non-uniform" (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 6.0, 10.5, 13.5])
    with pytest.raises(io.InputError, match="non-uniform slice spacing"):
        io.load_scan(tmp_path / "s")


def test_duplicate_positions_rejected(tmp_path: Path) -> None:
    """Two slices at the same position (two echoes in one series) (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 3.0, 6.0])
    with pytest.raises(io.InputError, match="occur more than once"):
        io.load_scan(tmp_path / "s")


def test_mixed_orientation_rejected(tmp_path: Path) -> None:
    """A localizer slice with another orientation in the series (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 6.0])
    f = next((tmp_path / "s").glob("*.dcm"))
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]  # axial
    ds.save_as(f)
    with pytest.raises(io.InputError, match="2 different orientations"):
        io.load_scan(tmp_path / "s")


def test_single_slice_and_empty_folder(tmp_path: Path) -> None:
    """One slice is not a 3-D series; a folder of non-DICOM files names the count (synthetic)."""
    _hand_series(tmp_path / "one", [0.0])
    with pytest.raises(io.InputError, match="single slice"):
        io.load_scan(tmp_path / "one")
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.bin").write_bytes(b"hello")
    with pytest.raises(io.InputError, match=r"no DICOM image files found .*1 files checked"):
        io.load_scan(tmp_path / "none")


def test_sidecar_files_ignored(tmp_path: Path) -> None:
    """Converter sidecars (.json) and stray non-DICOM files do not break a series (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 6.0])
    (tmp_path / "s" / "series.json").write_text("{}")
    (tmp_path / "s" / "README").write_text("not dicom")
    assert io.load_scan(tmp_path / "s").data.shape == (3, 6, 5)


def test_multiframe_rejected(tmp_path: Path) -> None:
    """Enhanced multi-frame files are rejected with a conversion hint (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0])
    f = next((tmp_path / "s").glob("*.dcm"))
    ds = pydicom.dcmread(f)
    ds.NumberOfFrames = 2
    ds.save_as(f)
    with pytest.raises(io.InputError, match="multi-frame DICOM is not supported") as err:
        io.load_scan(tmp_path / "s")
    assert str(f) in str(err.value)


def test_truncated_file_named(tmp_path: Path) -> None:
    """A file cut in its header or in its pixel data is named in the error (synthetic)."""
    for cut in (400, -100):
        folder = tmp_path / f"cut{cut}"
        files = dicom_write.write_series(
            make_corpus.base_volume(0, (5, 20, 20)), make_corpus.SAGITTAL_AFFINE, folder
        )
        size = files[2].stat().st_size
        with open(files[2], "r+b") as fh:
            fh.truncate(cut if cut > 0 else size + cut)
        with pytest.raises(io.InputError, match="truncated") as err:
            io.load_scan(folder)
        assert str(err.value).startswith(str(files[2]))


def test_check_flag_passes_through(tmp_path: Path) -> None:
    """load_scan(check=False) on a constant series loads; check=True rejects (synthetic)."""
    files = dicom_write.write_series(
        np.full((4, 20, 20), 5, np.int16), make_corpus.SAGITTAL_AFFINE, tmp_path / "s"
    )
    assert len(files) == 4
    with pytest.raises(io.InputError, match="constant"):
        io.load_scan(tmp_path / "s")
    assert io.load_scan(tmp_path / "s", check=False).data.shape == (4, 20, 20)


def test_tilted_stack_keeps_true_positions(tmp_path: Path) -> None:
    """A stack whose slice origins shift in-plane (gantry tilt / sheared acquisition):
    the affine's slice column is the true step, so every slice's first voxel lands on its
    ImagePositionPatient (synthetic)."""
    folder = tmp_path / "s"
    folder.mkdir()
    uid = generate_uid()
    positions = [(-4.0 * k, -20.0 + 0.5 * k, 50.0 - 0.3 * k) for k in range(5)]  # LPS mm
    for k, ipp in enumerate(positions):
        pix = np.full((6, 5), 10 * k + 1, np.uint16)
        _write_slice(folder / f"f{k}.dcm", pix, ipp, SAG_IOP, (0.8, 0.7), uid, instance=k + 1)
    scan = io.load_scan(folder)
    world = _world_of_canonical(scan)  # RAS
    for k, (x, y, z) in enumerate(positions):
        # canonical slice order is left -> right = decreasing LPS x = increasing k here
        assert int(scan.data[k, 0, 0]) == 10 * k + 1
        assert world[k, 0, 0] == pytest.approx([-x, -y, z], abs=1e-6)


def test_compressed_transfer_syntax_named(tmp_path: Path) -> None:
    """Pixel data pydicom cannot decode here (JPEG without a decoder plugin) fail with the
    transfer syntax named, not a pydicom traceback (synthetic)."""
    _hand_series(tmp_path / "s", [0.0, 3.0, 6.0])
    for f in (tmp_path / "s").glob("*.dcm"):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8not a jpeg\xff\xd9"])
        ds.save_as(f)
    with pytest.raises(io.InputError, match="transfer syntax JPEG Baseline"):
        io.load_scan(tmp_path / "s")


def test_series_in_subfolder_hint(tmp_path: Path) -> None:
    """A study folder holding the series one level down gets a hint (synthetic)."""
    _hand_series(tmp_path / "study" / "series1", [0.0, 3.0])
    with pytest.raises(io.InputError, match="1 subfolder.*series folder itself"):
        io.load_scan(tmp_path / "study")
    assert io.load_scan(tmp_path / "study" / "series1").data.shape == (2, 6, 5)
