"""Geometry of a DICOM slice stack: shared in-plane axes, order along the slice normal,
regular spacing, and the NIfTI (RAS) affine of the stacked array.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinecensus.io.dicom_slice import DicomSlice
from spinecensus.io.scan import InputError

#: Relative tolerance on slice gaps: DS values carry ~16 characters, scanners round
#: positions to 0.01-0.1 mm; a missing slice shows up as a gap of ~2x the spacing.
GAP_RTOL = 0.05
#: Absolute tolerance (mm) on gaps and in-plane offsets of the stack.
POS_ATOL_MM = 0.02
#: Tolerance on direction cosines of different slices of one series.
IOP_ATOL = 1e-3


@dataclass(frozen=True)
class SliceAxes:
    """Unit direction vectors (LPS) shared by every slice of a series."""

    row_dir: np.ndarray  # (3,) direction of increasing column index
    col_dir: np.ndarray  # (3,) direction of increasing row index
    normal: np.ndarray  # (3,) slice normal row_dir x col_dir


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def slice_axes(root: Path, slices: list[DicomSlice]) -> SliceAxes:
    """Check that all slices share one orientation, size and pixel spacing; their axes.

    Raises:
        InputError: several orientations (a localizer or second stack mixed in),
            differing sizes or pixel spacings, parallel row and column directions.
    """
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
    return SliceAxes(row_dir=row_dir, col_dir=col_dir, normal=_unit(normal))


def order_along_normal(
    slices: list[DicomSlice], normal: np.ndarray
) -> tuple[list[DicomSlice], np.ndarray, np.ndarray]:
    """Sort slices by their position along the slice normal (stable for ties).

    Returns:
        the sorted slices, their positions ``(N, 3)`` LPS mm, and the ``(N - 1,)`` gaps
        (mm) between neighbours along the normal.
    """
    ipps = np.stack([s.ipp for s in slices])  # (N, 3) LPS mm
    dist = ipps @ normal
    order = np.argsort(dist, kind="stable")
    dist = dist[order]
    ipps = ipps[order]
    slices = [slices[i] for i in order]
    return slices, ipps, np.diff(dist)


def check_slice_gaps(root: Path, gaps: np.ndarray) -> None:
    """Reject repeated slice positions and missing slices / non-uniform spacing.

    Args:
        gaps: ``(N - 1,)`` gaps (mm) between sorted neighbours along the normal.

    Raises:
        InputError: a position occurs twice (echoes, time points), or a gap differs from
            the median gap by more than :data:`GAP_RTOL` (:data:`POS_ATOL_MM` at least).
    """
    n_slices = len(gaps) + 1
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
            f"{n_slices} (expected {step:.3g} mm from the other slice positions; "
            f"{int(np.count_nonzero(bad))} irregular gap(s))",
        )


def regular_step_vector(
    root: Path, ipps: np.ndarray, pixel_spacing: tuple[float, float]
) -> np.ndarray:
    """The ``(3,)`` LPS mm step from one sorted slice to the next, after checking that
    every slice position ``ipps`` ``(N, 3)`` lies on the line ``p0 + k * step``.

    Raises:
        InputError: a position is off that line by more than a tenth of the smaller
            pixel spacing (:data:`POS_ATOL_MM` at least).
    """
    n = len(ipps)
    step_vec = (ipps[-1] - ipps[0]) / (n - 1)
    # every slice must sit on the straight line p0 + k * step (a second stack shifted
    # in-plane with the same orientation would otherwise pass the gap test)
    resid = ipps - (ipps[0] + np.arange(n)[:, None] * step_vec)
    if np.max(np.abs(resid)) > max(POS_ATOL_MM, 0.1 * min(pixel_spacing)):
        raise InputError(
            root,
            f"slice positions do not form a regular stack (off by up to "
            f"{np.max(np.abs(resid)):.3g} mm); several stacks in one series?",
        )
    return step_vec


def series_affine(
    axes: SliceAxes,
    step_vec: np.ndarray,
    pixel_spacing: tuple[float, float],
    origin: np.ndarray,
) -> np.ndarray:
    """The 4x4 voxel -> RAS mm affine of the stacked ``(slice, row, col)`` array.

    Args:
        axes: the series' in-plane directions (LPS).
        step_vec: ``(3,)`` LPS mm step between sorted slices.
        pixel_spacing: ``(row spacing, column spacing)`` mm.
        origin: ``(3,)`` LPS mm position of the first sorted slice's first voxel.
    """
    row_spacing, col_spacing = pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = step_vec
    lps[:3, 1] = axes.col_dir * row_spacing  # array axis 1 = row index
    lps[:3, 2] = axes.row_dir * col_spacing  # array axis 2 = column index
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS
