"""One DICOM file = one slice: which files of a folder are candidates, the few header tags
read from each (:data:`READ_TAGS`, nothing identifying a patient), and its decoded pixels.

pydicom is silenced while it parses (:func:`_quiet_pydicom`) and its exceptions are
re-raised with our own wording (``from None``), because its warnings, log records and
messages can quote element values.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.io.scan import InputError

#: The only DICOM attributes ever read from a file (plus the file meta group, which
#: holds the transfer syntax).  Nothing identifying a patient is in this list.
READ_TAGS: tuple[str, ...] = (
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "Modality",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "PixelData",
)

#: Files ignored when scanning a folder: sidecars that converters write next to series.
_SKIP_SUFFIXES = (".json", ".txt", ".md", ".xml", ".nii", ".gz", ".bval", ".bvec", ".csv", ".tsv")


@dataclass(frozen=True)
class DicomSlice:
    """The header tags of one slice file that the reader uses (all in LPS, mm)."""

    path: Path
    series_uid: str
    series_number: str
    series_description: str
    iop: np.ndarray  # (6,) direction cosines, LPS
    ipp: np.ndarray  # (3,) position of the first voxel, LPS mm
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing) mm
    shape: tuple[int, int]  # (rows, columns)
    slope: float
    intercept: float
    dataset: object  # pydicom Dataset restricted to READ_TAGS


@contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom while it parses: its validation warnings and log records quote
    element values, and a host application (Snakemake) may route the ``pydicom`` logger
    to its log files.  We only read :data:`READ_TAGS`, but stay silent regardless."""
    import pydicom.config

    settings = pydicom.config.settings
    old_mode = settings.reading_validation_mode
    log = logging.getLogger("pydicom")
    old_disabled = log.disabled
    settings.reading_validation_mode = pydicom.config.IGNORE
    log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode = old_mode
        log.disabled = old_disabled


def candidate_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that may be slices, sorted by name: no hidden files, no
    ``DICOMDIR``, no converter sidecars (:data:`_SKIP_SUFFIXES`); subfolders are not
    entered."""
    files = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.upper() != "DICOMDIR"
        and not p.name.lower().endswith(_SKIP_SUFFIXES)
    ]
    return files


def read_slice(path: Path) -> DicomSlice | None:
    """Read one file's geometry + pixel tags; ``None`` if it is not a DICOM file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with _quiet_pydicom():
            ds = pydicom.dcmread(str(path), specific_tags=list(READ_TAGS))
    except InvalidDicomError:
        return None  # not DICOM (no 'DICM' preamble): a stray file, skipped
    except Exception as exc:
        raise InputError(
            path, f"unreadable or truncated DICOM file ({type(exc).__name__})"
        ) from None

    if "PixelData" not in ds:
        sop = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
        sop_name = str(getattr(sop, "name", ""))
        if "Image Storage" in sop_name or "Rows" in ds or "ImagePositionPatient" in ds:
            # an image object without pixels: the file was cut short
            raise InputError(path, "truncated DICOM file (image object without pixel data)")
        # e.g. a structured report / presentation state in the folder
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(
            path,
            "enhanced multi-frame DICOM is not supported; convert the series to NIfTI "
            "(e.g. with dcm2niix) or export it as one file per slice",
        )
    iop, ipp, ps = _geometry_tags(path, ds)
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return DicomSlice(
        path=path,
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        series_number=str(ds.get("SeriesNumber", "") or "?"),
        series_description=str(ds.get("SeriesDescription", "") or "").strip()[:64],
        iop=iop,
        ipp=ipp,
        pixel_spacing=(ps[0], ps[1]),
        shape=(int(ds.Rows), int(ds.Columns)),
        slope=slope,
        intercept=intercept,
        dataset=ds,
    )


def _geometry_tags(path: Path, ds: Any) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``ImageOrientationPatient`` (6,), ``ImagePositionPatient`` (3,) LPS mm and
    ``PixelSpacing`` (row, column) mm of one slice, checked present, numeric and finite."""
    missing = [
        t
        for t in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing")
        if t not in ds
    ]
    if missing:
        raise InputError(path, f"DICOM file lacks geometry tag(s) {', '.join(missing)}")
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=float)
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=float)
        ps = tuple(float(v) for v in ds.PixelSpacing)
    except (TypeError, ValueError):
        raise InputError(path, "DICOM geometry tags are not numeric") from None
    if iop.shape != (6,) or ipp.shape != (3,) or len(ps) != 2:
        raise InputError(path, "DICOM geometry tags have the wrong number of values")
    if not (np.all(np.isfinite(iop)) and np.all(np.isfinite(ipp)) and np.all(np.isfinite(ps))):
        raise InputError(path, "DICOM geometry tags are not finite")
    return iop, ipp, ps


def decode_pixels(s: DicomSlice) -> np.ndarray:
    """The stored ``(rows, columns)`` pixel values of one slice (before any rescale)."""
    try:
        with _quiet_pydicom():
            arr = s.dataset.pixel_array  # type: ignore[attr-defined]
    except Exception as exc:
        ts = getattr(getattr(s.dataset, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", str(ts))
        raise InputError(
            s.path,
            f"cannot decode DICOM pixel data (transfer syntax {ts_name}; "
            f"{type(exc).__name__}); truncated file or unsupported compression",
        ) from None
    if arr.ndim != 2:
        raise InputError(
            s.path, f"expected one grey-scale 2-D slice per file, got pixel array {arr.shape}"
        )
    return arr
