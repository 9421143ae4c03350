"""Writing a synthetic DICOM MR series (one file per slice) from an array and its NIfTI
affine: :func:`write_series`.

The package never writes DICOM as a product output; this exists so that tests and the
bad-input corpus can build series from synthetic NIfTI volumes with known geometry.
The DICOM geometry conventions (LPS, row/column directions) are those stated in
:mod:`spinecensus.io.dicom_geometry`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: SOP class UID of MR Image Storage.
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def write_series(
    data: np.ndarray,
    affine: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    slice_axis: int = 0,
    series_uid: str | None = None,
    study_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "SAG T2 synthetic",
    extra_tags: dict[str, object] | None = None,
    rescale: tuple[float, float] | None = None,
    file_prefix: str = "slice",
    seed: int = 0,
) -> list[Path]:
    """Write a 3-D array with a NIfTI (RAS) affine as a DICOM MR series, one file per slice.

    Args:
        data: stored array; integer values are written as-is (int16/uint16), floats are
            quantised to uint16 with a ``RescaleSlope``/``RescaleIntercept`` (or the
            given ``rescale = (slope, intercept)``).
        affine: 4x4 voxel -> RAS mm affine of ``data``.
        out_dir: folder to create/fill.
        slice_axis: array axis written as the DICOM slice axis.
        extra_tags: additional attributes by keyword (e.g. planted PHI for tests).
        file_prefix: file names are ``{prefix}{k:04d}.dcm``; files are written in a
            shuffled order of ``k`` vs position so that readers must sort by geometry.
        seed: seed for that shuffle and for generated UIDs.

    Returns:
        the written file paths.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.moveaxis(np.asarray(data), slice_axis, 0)
    lps = _lps_affine(affine, slice_axis)
    step = lps[:3, 0]
    pix, signed, slope, intercept = _quantise(arr, rescale)

    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid(entropy_srcs=[f"series-{seed}-{series_number}"])
    study_uid = study_uid or generate_uid(entropy_srcs=[f"study-{seed}"])
    shared = _shared_tags(lps, pix.shape, signed, slope, intercept)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = arr.shape[0]
    names = rng.permutation(n)  # file index unrelated to position
    written: list[Path] = []
    for k in range(n):  # one file per slice: unavoidable per-slice loop (file I/O)
        meta = FileMetaDataset()
        sop_uid = generate_uid(entropy_srcs=[f"sop-{seed}-{series_number}-{k}"])
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out / f"{file_prefix}{int(names[k]):04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.Modality = "MR"
        ds.SeriesNumber = series_number
        ds.SeriesDescription = series_description
        ds.InstanceNumber = int(names[k]) + 1
        pos = lps[:3, 3] + k * step
        ds.ImagePositionPatient = [f"{v:.10g}" for v in pos]
        for key, value in shared.items():
            setattr(ds, key, value)
        for key, value in (extra_tags or {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(pix[k]).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        written.append(path)
    return written


def _lps_affine(affine: np.ndarray, slice_axis: int) -> np.ndarray:
    """The 4x4 voxel -> LPS mm affine of the array with ``slice_axis`` moved to axis 0
    (columns: slice step, column direction * row spacing, row direction * column spacing)."""
    aff = np.asarray(affine, dtype=float)
    cols = [slice_axis] + [a for a in range(3) if a != slice_axis]
    ras = np.eye(4)
    ras[:3, :3] = aff[:3, cols]
    ras[:3, 3] = aff[:3, 3]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras


def _quantise(
    arr: np.ndarray, rescale: tuple[float, float] | None
) -> tuple[np.ndarray, int, float, float]:
    """Stored pixel values, ``PixelRepresentation`` (1 = signed), slope and intercept.

    Integers without a ``rescale`` are kept (uint16 when they fit, else int16); anything
    else is quantised to uint16 over its range, or with the given ``(slope, intercept)``.
    """
    if np.issubdtype(arr.dtype, np.integer) and rescale is None:
        if arr.min() >= 0 and arr.max() <= 65535:
            pix, signed = arr.astype(np.uint16), 0
        else:
            pix, signed = arr.astype(np.int16), 1
        slope, intercept = 1.0, 0.0
    else:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if rescale is None:
            slope = (hi - lo) / 65535.0 if hi > lo else 1.0
            intercept = lo
        else:
            slope, intercept = rescale
        pix = np.clip(np.rint((arr.astype(np.float64) - intercept) / slope), 0, 65535)
        pix, signed = pix.astype(np.uint16), 0
    return pix, signed, slope, intercept


def _shared_tags(
    lps: np.ndarray, shape: tuple[int, ...], signed: int, slope: float, intercept: float
) -> dict[str, object]:
    """The geometry and pixel-encoding tags that every slice file carries alike, by
    keyword (DS values as ``.10g`` strings); ``shape`` is the ``(slice, row, col)``
    shape of the stored pixels."""
    step, col_vec, row_vec = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    row_spacing, col_spacing = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    iop = np.concatenate([row_vec / col_spacing, col_vec / row_spacing])
    return {
        "ImageOrientationPatient": [f"{v:.10g}" for v in iop],
        "PixelSpacing": [f"{row_spacing:.10g}", f"{col_spacing:.10g}"],
        "SliceThickness": f"{float(np.linalg.norm(step)):.10g}",
        "Rows": int(shape[1]),
        "Columns": int(shape[2]),
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "BitsAllocated": 16,
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": signed,
        "RescaleSlope": f"{slope:.10g}",
        "RescaleIntercept": f"{intercept:.10g}",
    }
