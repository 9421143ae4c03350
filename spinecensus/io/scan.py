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

import os
from dataclasses import dataclass

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
