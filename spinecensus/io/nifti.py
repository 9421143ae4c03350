"""NIfTI files -> canonical :class:`~spinecensus.io.scan.Scan`, and masks back onto the
input's grid (affine bit for bit).  DICOM series folders are read by :mod:`spinecensus.io.dicom`."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.io.atomic import atomic_path
from spinecensus.io.scan import InputError, Scan, scan_from_image


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_dir():
        raise InputError(path, "is a directory, not a NIfTI file (DICOM folders: use load_scan)")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)")


def load_nifti(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    """Read a NIfTI file, fully decoding it, with clear errors for broken files."""
    p = Path(path)
    _check_readable(p)
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises several types for a wrong magic / header
        raise InputError(p, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(p, f"not a NIfTI image but {type(img).__name__}")
    _check_raw_pixdim(p, img)
    try:
        # decode now: a truncated .nii.gz only fails when its data are read
        np.asanyarray(img.dataobj)
    except (EOFError, OSError, ValueError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(
            p, f"truncated or corrupt image data ({type(exc).__name__}: {exc})"
        ) from None
    return img  # type: ignore[return-value]


def _check_raw_pixdim(path: Path, img: nib.Nifti1Image | nib.Nifti2Image) -> None:
    """Reject a zero/non-finite spacing in the header when the affine is built from it.

    nibabel silently "fixes" zero ``pixdim`` to 1 mm when it reads a header, so a file
    whose spacing is missing would load as 1 mm isotropic and give wrong volumes.  Without
    an sform, the affine comes from ``pixdim`` (qform or the fallback), so we re-read the
    raw header (348 bytes, no data) and check the values the file really holds.
    """
    hdr = img.header
    if int(hdr["sform_code"]) != 0:
        return  # affine from srow_*; io takes spacing from the affine's column norms
    from nibabel.openers import ImageOpener

    with ImageOpener(str(path)) as f:
        raw = type(hdr).from_fileobj(f, check=False)
    k = min(3, max(int(raw["dim"][0]), 0))
    pixdim = np.asarray(raw["pixdim"][1 : 1 + k], dtype=float)
    if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
        raise InputError(
            path,
            f"voxel spacing in the header (pixdim) is {tuple(float(v) for v in pixdim)} mm: "
            "zero or not finite, and there is no sform affine to take it from",
        )


def load_scan(path: str | os.PathLike[str], check: bool = True) -> Scan:
    """Load a NIfTI file (or, where supported, a DICOM series folder) as a canonical Scan."""
    p = Path(path)
    if p.is_dir():
        from spinecensus.io import dicom  # raises InputError itself

        return dicom.load_series(p, check=check)
    return scan_from_image(load_nifti(p), path=str(p), check=check)


def load_mask(path: str | os.PathLike[str]) -> Scan:
    """Load an integer mask (semantic or instance) as a canonical Scan, without the
    intensity checks (an all-zero mask is legal)."""
    p = Path(path)
    img = load_nifti(p)
    scan = scan_from_image(img, path=str(p), check=False)
    scan.data = np.asarray(scan.data)
    if not np.issubdtype(scan.data.dtype, np.integer):
        rounded = np.rint(scan.data)
        if not np.array_equal(rounded, scan.data):
            raise InputError(p, "mask contains non-integer values")
        scan.data = rounded.astype(np.int32)
    return scan


#: gzip level of written ``.nii.gz`` masks: 1 is the fastest that still compresses (label
#: masks shrink ~20-50x at every level; 9 only saves a few more per cent at many times the
#: CPU), 0 stores the data uncompressed inside a valid ``.nii.gz``
DEFAULT_GZIP_LEVEL = 1


def save_like(
    canonical: np.ndarray,
    like: Scan,
    path: str | os.PathLike[str],
    dtype: type | np.dtype = np.uint16,
    gzip_level: int = DEFAULT_GZIP_LEVEL,
) -> None:
    """Write a canonical-order array on ``like``'s stored grid with its affine, atomically.

    The output's affine (qform and sform) equals the input's bit-for-bit.  A ``.gz`` path is
    gzip-compressed at ``gzip_level`` (0-9; 0 = stored, no compression, the least CPU; the
    gzip header carries no time stamp, so equal masks give equal files).
    """
    if not 0 <= int(gzip_level) <= 9:
        raise ValueError(f"gzip_level must be 0-9, not {gzip_level!r}")
    stored = np.ascontiguousarray(like.to_stored(canonical).astype(dtype, copy=False))
    header = like.header.copy() if like.header is not None else None
    img = nib.Nifti1Image(stored, like.affine, header=header)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1, 0)
    if header is not None:
        img.set_qform(like.affine, code=int(header["qform_code"]) or 1)
        img.set_sform(like.affine, code=int(header["sform_code"]) or 1)
    with atomic_path(path) as tmp:
        if str(path).endswith(".gz"):
            # nibabel's own writer fixes the level process-wide (Opener.default_compresslevel)
            tmp.write_bytes(gzip.compress(img.to_bytes(), compresslevel=int(gzip_level), mtime=0))
        else:
            nib.save(img, str(tmp))
