"""MRI input/output and the package's canonical voxel order.

Canonical order (every algorithm in the package works on it)
-------------------------------------------------------------
``array[slice, row, col]`` with

* axis 0 — sagittal slice index, patient's left -> right (axis code ``R``),
* axis 1 — superior -> inferior (code ``I``; row 0 is the most cranial),
* axis 2 — anterior -> posterior (code ``P``).

So ``array[k]`` shown with ``imshow`` is a sagittal slice with the head at the top and
the face on the left.  ``spacing_mm`` is given in the same axis order.  Conversion from
any stored orientation uses only axis permutations and flips derived from the affine
(``nibabel.orientations``), never resampling, so it is exactly reversible and outputs
carry the input affine bit-for-bit.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

CANONICAL_AXCODES: tuple[str, str, str] = ("R", "I", "P")


class InputError(ValueError):
    """A bad input file.  The message always names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = self.path if self.path is not None else "<array>"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Orientation:
    """How a stored array maps to canonical order, and back.

    ``source`` is the stored array's nibabel orientation (``io_orientation(affine)``);
    ``stored_shape`` the shape of the stored (3-D) array.
    """

    source: np.ndarray
    stored_shape: tuple[int, int, int]

    @classmethod
    def from_affine(cls, affine: np.ndarray, shape: tuple[int, ...]) -> Orientation:
        return cls(ornt.io_orientation(affine), tuple(int(s) for s in shape[:3]))  # type: ignore[arg-type]

    @property
    def to_canonical(self) -> np.ndarray:
        """nibabel transform stored -> canonical (row i: canonical axis and flip of axis i)."""
        return ornt.ornt_transform(self.source, ornt.axcodes2ornt(CANONICAL_AXCODES))

    def canonical(self, stored: np.ndarray) -> np.ndarray:
        """Stored-order array -> canonical-order array (a view where possible)."""
        return ornt.apply_orientation(stored, self.to_canonical)

    def stored(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical-order array -> stored order (exact inverse of :meth:`canonical`)."""
        back = ornt.ornt_transform(ornt.axcodes2ornt(CANONICAL_AXCODES), self.source)
        return ornt.apply_orientation(canonical, back)

    def spacing(self, stored_zooms: tuple[float, ...]) -> tuple[float, float, float]:
        """Voxel spacing (mm) in canonical axis order."""
        z = [0.0, 0.0, 0.0]
        for src_axis, (dst_axis, _flip) in enumerate(self.to_canonical):
            z[int(dst_axis)] = float(stored_zooms[src_axis])
        return z[0], z[1], z[2]


@dataclass
class Scan:
    """A 3-D scan in canonical order with everything needed to write results back.

    Attributes:
        data: canonical-order array (slice L->R, superior->inferior, anterior->posterior).
        spacing_mm: voxel size in mm, canonical axis order.
        affine: the *stored* file's affine (4x4), kept bit-for-bit for outputs.
        orientation: the stored <-> canonical mapping.
        header: the stored file's NIfTI header (copied into outputs), or None.
        path: source path, used in error messages.
    """

    data: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray
    orientation: Orientation
    header: nib.Nifti1Header | None = None
    path: str | None = None

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm³: |det(affine[:3, :3])|."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def to_stored(self, canonical: np.ndarray) -> np.ndarray:
        """Map a canonical-order array (e.g. a mask) back onto the stored grid."""
        return self.orientation.stored(canonical)


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


def validate_image_array(data: np.ndarray, zooms: tuple[float, ...], path: object) -> np.ndarray:
    """Check an image array and return it as 3-D.

    Accepts 3-D arrays and 4-D arrays whose last axis has length 1.  Raises
    :class:`InputError` for other dimensionality, non-finite values, empty or constant
    images and zero/negative/non-finite spacing.
    """
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(
            path, f"expected a 3-D image (or 4-D with one volume), got shape {data.shape}"
        )
    if data.size == 0 or min(data.shape) == 0:
        raise InputError(path, f"image is empty (shape {data.shape})")
    z = np.asarray(zooms[:3], dtype=float)
    if z.size < 3 or not np.all(np.isfinite(z)) or np.any(z <= 0):
        raise InputError(path, f"voxel spacing must be positive and finite, got {tuple(z)} mm")
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            n_bad = int(data.size - np.count_nonzero(finite))
            raise InputError(path, f"image contains {n_bad} NaN/inf voxels")
    lo, hi = np.min(data), np.max(data)
    if lo == hi:
        raise InputError(path, f"image is constant (every voxel = {lo})")
    return data


def scan_from_image(img: nib.Nifti1Image, path: str | None = None, check: bool = True) -> Scan:
    """Build a canonical :class:`Scan` from a nibabel image (validating it if ``check``)."""
    data = np.asanyarray(img.dataobj)
    zooms = tuple(float(z) for z in img.header.get_zooms())
    if check:
        data = validate_image_array(data, zooms, path)
    elif data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3-D array, got shape {data.shape}")
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) == 0:
        raise InputError(path, "affine is singular or not finite (zero spacing?)")
    orient = Orientation.from_affine(affine, data.shape)
    canon = orient.canonical(data)
    # spacing from the affine's column norms (robust when pixdim and affine disagree)
    col_norms = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return Scan(
        data=canon,
        spacing_mm=orient.spacing(col_norms),
        affine=img.affine.copy(),
        orientation=orient,
        header=img.header.copy(),
        path=path,
    )


def load_scan(path: str | os.PathLike[str], check: bool = True) -> Scan:
    """Load a NIfTI file (or, where supported, a DICOM series folder) as a canonical Scan."""
    p = Path(path)
    if p.is_dir():
        from spinecensus import dicom  # optional module; raises InputError itself

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


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Keeps the final suffixes (``.nii.gz``, ``.parquet``) so writers that infer the format
    from the name still work.  On error the temporary file is removed and ``path`` is
    untouched, so a crash never leaves a half-written output under the final name.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name.split('.')[0]}.", suffix=suffix, dir=dest.parent
    )
    os.close(fd)
    # mkstemp creates 0600; give the output the permissions a plain open() would (umask)
    os.chmod(tmp, 0o666 & ~_UMASK)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def save_like(
    canonical: np.ndarray,
    like: Scan,
    path: str | os.PathLike[str],
    dtype: type | np.dtype = np.uint16,
) -> None:
    """Write a canonical-order array on ``like``'s stored grid with its affine, atomically.

    The output's affine (qform and sform) equals the input's bit-for-bit.
    """
    stored = np.ascontiguousarray(like.to_stored(canonical).astype(dtype, copy=False))
    header = like.header.copy() if like.header is not None else None
    img = nib.Nifti1Image(stored, like.affine, header=header)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1, 0)
    if header is not None:
        img.set_qform(like.affine, code=int(header["qform_code"]) or 1)
        img.set_sform(like.affine, code=int(header["sform_code"]) or 1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def write_json(obj: object, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically (sorted keys are *not* forced: order is meaningful)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
