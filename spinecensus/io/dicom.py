"""DICOM series folders -> :class:`spinecensus.io.Scan`.

Library choice: **pydicom** rather than SimpleITK.  pydicom is pure Python (no compiled
dependency to build on clusters, already a package dependency), it lets us read *only*
the tags we need (``specific_tags``), so patient identifiers in the headers are never
even decoded into memory, and it exposes the raw geometry tags so that we can check
the stack ourselves (missing slices, mixed series) with precise error messages.
SimpleITK's ``ImageSeriesReader`` would silently pick one series out of a mixed
folder and interpolate over gaps only with warnings, and its error strings are
outside our control (privacy: they may echo header values).

Geometry (DICOM PS3.3 C.7.6.2, patient coordinates are LPS)
-----------------------------------------------------------
* ``ImageOrientationPatient`` = row direction ``r`` (direction of increasing column
  index) and column direction ``c`` (increasing row index); slice normal ``n = r x c``.
* Slices are sorted by ``ImagePositionPatient . n`` (their position along the normal),
  never by ``InstanceNumber`` or file name, which scanners and anonymisers reorder.
* In-plane spacing comes from ``PixelSpacing`` (row spacing, column spacing); the slice
  step comes from the positions themselves (``SliceThickness`` is the excitation
  thickness and differs from the spacing when there are gaps or overlaps).
* The stored array is ``(slice, row, col)``; its affine has columns
  ``(step vector, c * row_spacing, r * col_spacing)`` and translation = first slice's
  position, converted LPS -> RAS (NIfTI convention) by negating x and y.

Privacy
-------
Only the tags in :data:`READ_TAGS` are read (geometry, pixel encoding, series
identity).  Error messages name files and geometry only; a multi-series folder is
described by ``SeriesNumber``, ``SeriesDescription`` (the acquisition protocol name),
slice count and a short *hash* of ``SeriesInstanceUID`` (UIDs are linkable identifiers
in the DICOM de-identification profile, PS3.15 E.1, so the UID itself is never
printed).  ``StudyDescription`` is free text written at registration and is treated
as patient information: never read.  Exceptions from pydicom are re-raised with our
own wording (``from None``) because their messages can quote element values.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.io.scan import InputError, Scan, scan_from_image

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

#: Relative tolerance on slice gaps: DS values carry ~16 characters, scanners round
#: positions to 0.01-0.1 mm; a missing slice shows up as a gap of ~2x the spacing.
GAP_RTOL = 0.05
#: Absolute tolerance (mm) on gaps and in-plane offsets of the stack.
POS_ATOL_MM = 0.02
#: Tolerance on direction cosines of different slices of one series.
IOP_ATOL = 1e-3

#: Files ignored when scanning a folder: sidecars that converters write next to series.
_SKIP_SUFFIXES = (".json", ".txt", ".md", ".xml", ".nii", ".gz", ".bval", ".bvec", ".csv", ".tsv")


@dataclass(frozen=True)
class _Slice:
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


def series_fingerprint(uid: str) -> str:
    """A short, non-reversible tag for a SeriesInstanceUID (8 hex characters).

    Lets a user tell two series with the same number/description apart without the
    UID itself (a linkable identifier) appearing in logs or tables.
    """
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:8]


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


def _candidate_files(folder: Path) -> list[Path]:
    files = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.upper() != "DICOMDIR"
        and not p.name.lower().endswith(_SKIP_SUFFIXES)
    ]
    return files


def _read_slice(path: Path) -> _Slice | None:
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
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return _Slice(
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


def _describe_series(slices: list[_Slice]) -> str:
    groups: dict[str, list[_Slice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    parts = []

    def key(kv: tuple[str, list[_Slice]]) -> tuple[int, str]:
        num = kv[1][0].series_number
        return (int(num) if num.isdigit() else 1 << 30, num)

    for uid, members in sorted(groups.items(), key=key):
        first = members[0]
        desc = f" '{first.series_description}'" if first.series_description else ""
        parts.append(
            f"series {first.series_number}{desc} ({len(members)} slices, "
            f"uid#{series_fingerprint(uid)})"
        )
    return "; ".join(parts)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _pixels(s: _Slice) -> np.ndarray:
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


def load_series(folder: str | os.PathLike[str], check: bool = True) -> Scan:
    """Load a folder holding one DICOM series (one file per slice) as a canonical Scan.

    Args:
        folder: directory with the series' files (non-DICOM sidecars are ignored).
        check: run :func:`spinecensus.io.validate_image_array` on the volume.

    Returns:
        A :class:`Scan` whose ``affine`` is the NIfTI-style (RAS, mm) affine of the
        stored ``(slice, row, col)`` array, slices sorted along the slice normal,
        intensities rescaled with ``RescaleSlope``/``RescaleIntercept`` (float32 when
        a rescale is present, the stored integer type otherwise).

    Raises:
        InputError: no DICOM files, several series (listed), inconsistent slice
            geometry, missing slices (non-uniform gaps), unreadable files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "DICOM series folder does not exist")
    files = _candidate_files(root)
    slices = [s for s in (_read_slice(p) for p in files) if s is not None]
    if not slices:
        n_sub = sum(1 for p in root.iterdir() if p.is_dir())
        hint = (
            f"; it has {n_sub} subfolder(s): point the sample sheet at the series folder itself"
            if n_sub
            else ""
        )
        raise InputError(
            root, f"no DICOM image files found in folder ({len(files)} files checked){hint}"
        )

    uids = {s.series_uid for s in slices}
    if len(uids) > 1:
        raise InputError(
            root,
            f"folder holds {len(uids)} DICOM series; put each series in its own folder "
            f"and list the one to analyse: {_describe_series(slices)}",
        )
    if len(slices) < 2:
        raise InputError(root, "DICOM series has a single slice; a 3-D series is required")

    # --- consistent in-plane geometry across slices -----------------------------------
    iops = np.stack([s.iop for s in slices])
    if np.max(np.abs(iops - iops[0])) > IOP_ATOL:
        n_distinct = len({tuple(np.round(v, 3)) for v in iops})
        raise InputError(
            root,
            f"slices have {n_distinct} different orientations (ImageOrientationPatient); "
            "a localizer or a second stack is mixed into the series",
        )
    shapes = {s.shape for s in slices}
    spacings = {s.pixel_spacing for s in slices}
    if len(shapes) > 1 or len(spacings) > 1:
        raise InputError(
            root,
            f"slices differ in size {sorted(shapes)} or pixel spacing {sorted(spacings)} mm",
        )
    row_dir = _unit(iops[0, :3])  # direction of increasing column index
    col_dir = _unit(iops[0, 3:])  # direction of increasing row index
    normal = np.cross(row_dir, col_dir)
    if np.linalg.norm(normal) < 0.5:
        raise InputError(root, "ImageOrientationPatient row and column directions are parallel")
    normal = _unit(normal)

    # --- sort along the normal and check the stack is regular --------------------------
    ipps = np.stack([s.ipp for s in slices])  # (N, 3) LPS mm
    dist = ipps @ normal
    order = np.argsort(dist, kind="stable")
    dist = dist[order]
    ipps = ipps[order]
    slices = [slices[i] for i in order]
    gaps = np.diff(dist)
    if np.any(gaps <= POS_ATOL_MM):
        n_dup = int(np.count_nonzero(gaps <= POS_ATOL_MM))
        raise InputError(
            root,
            f"{n_dup} slice position(s) occur more than once along the slice normal "
            "(several echoes, time points or acquisitions in one series); "
            "export a single 3-D stack",
        )
    step = float(np.median(gaps))
    bad = np.abs(gaps - step) > max(POS_ATOL_MM, GAP_RTOL * step)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        ratios = gaps[bad] / step
        n_missing = int(np.sum(np.maximum(np.rint(ratios) - 1, 0)))
        if np.all(np.abs(ratios - np.rint(ratios)) < 0.1) and n_missing > 0:
            what = f"{n_missing} slice(s) missing"
        else:
            what = "non-uniform slice spacing"
        raise InputError(
            root,
            f"{what}: gap of {gaps[first]:.3g} mm after sorted slice {first} of "
            f"{len(slices)} (expected {step:.3g} mm from the other slice positions; "
            f"{int(np.count_nonzero(bad))} irregular gap(s))",
        )
    n = len(slices)
    step_vec = (ipps[-1] - ipps[0]) / (n - 1)
    # every slice must sit on the straight line p0 + k * step (a second stack shifted
    # in-plane with the same orientation would otherwise pass the gap test)
    resid = ipps - (ipps[0] + np.arange(n)[:, None] * step_vec)
    if np.max(np.abs(resid)) > max(POS_ATOL_MM, 0.1 * min(slices[0].pixel_spacing)):
        raise InputError(
            root,
            f"slice positions do not form a regular stack (off by up to "
            f"{np.max(np.abs(resid)):.3g} mm); several stacks in one series?",
        )

    # --- pixels: one decode per file (I/O bound), then a single stack ------------------
    data = np.stack([_pixels(s) for s in slices])  # (N, rows, cols)
    slopes = np.asarray([s.slope for s in slices])
    intercepts = np.asarray([s.intercept for s in slices])
    if np.any(slopes != 1.0) or np.any(intercepts != 0.0):
        data = data.astype(np.float32) * slopes[:, None, None].astype(np.float32) + intercepts[
            :, None, None
        ].astype(np.float32)

    row_spacing, col_spacing = slices[0].pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = step_vec
    lps[:3, 1] = col_dir * row_spacing  # array axis 1 = row index
    lps[:3, 2] = row_dir * col_spacing  # array axis 2 = column index
    lps[:3, 3] = ipps[0]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS

    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    header.set_xyzt_units("mm", "sec")
    img = nib.Nifti1Image(data, affine, header=header)
    img.set_qform(affine, code=1, update_affine=False)  # scanner coordinates
    img.set_sform(affine, code=1, update_affine=False)
    return scan_from_image(img, path=str(root), check=check)


# ----------------------------------------------------------------------------------------
# Writing (synthetic test series).  The package never writes DICOM as a product output;
# this exists so that tests and the bad-input corpus can build series from synthetic
# NIfTI volumes with known geometry.
# ----------------------------------------------------------------------------------------

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
    aff = np.asarray(affine, dtype=float)
    cols = [slice_axis] + [a for a in range(3) if a != slice_axis]
    ras = np.eye(4)
    ras[:3, :3] = aff[:3, cols]
    ras[:3, 3] = aff[:3, 3]
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    step, col_vec, row_vec = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    row_spacing, col_spacing = float(np.linalg.norm(col_vec)), float(np.linalg.norm(row_vec))
    iop = np.concatenate([row_vec / col_spacing, col_vec / row_spacing])

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

    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid(entropy_srcs=[f"series-{seed}-{series_number}"])
    study_uid = study_uid or generate_uid(entropy_srcs=[f"study-{seed}"])
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
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in iop]
        pos = lps[:3, 3] + k * step
        ds.ImagePositionPatient = [f"{v:.10g}" for v in pos]
        ds.PixelSpacing = [f"{row_spacing:.10g}", f"{col_spacing:.10g}"]
        ds.SliceThickness = f"{float(np.linalg.norm(step)):.10g}"
        ds.Rows, ds.Columns = int(pix.shape[1]), int(pix.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = signed
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = f"{intercept:.10g}"
        for key, value in (extra_tags or {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(pix[k]).tobytes()
        ds.save_as(str(path), enforce_file_format=True)
        written.append(path)
    return written
