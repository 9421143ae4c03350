"""DICOM series folders -> :class:`spinecensus.io.Scan`: :func:`load_series`.

Library choice: **pydicom** rather than SimpleITK.  pydicom is pure Python (no compiled
dependency to build on clusters, already a package dependency), it lets us read *only*
the tags we need (``specific_tags``), so patient identifiers in the headers are never
even decoded into memory, and it exposes the raw geometry tags so that we can check
the stack ourselves (missing slices, mixed series) with precise error messages.
SimpleITK's ``ImageSeriesReader`` would silently pick one series out of a mixed
folder and interpolate over gaps only with warnings, and its error strings are
outside our control (privacy: they may echo header values).

Steps, each in its own module: :mod:`~spinecensus.io.dicom_slice` (candidate files, the
tags read from one file, its pixels), :mod:`~spinecensus.io.dicom_series` (the one series
of the folder), :mod:`~spinecensus.io.dicom_geometry` (order along the slice normal, gap
and orientation checks, the affine; its docstring states the LPS geometry).  Writing
synthetic series for tests: :mod:`~spinecensus.io.dicom_write`.

Privacy
-------
Only the tags in :data:`spinecensus.io.dicom_slice.READ_TAGS` are read (geometry, pixel
encoding, series identity).  Error messages name files and geometry only; a multi-series
folder is described by ``SeriesNumber``, ``SeriesDescription`` (the acquisition protocol
name), slice count and a short *hash* of ``SeriesInstanceUID`` (UIDs are linkable
identifiers in the DICOM de-identification profile, PS3.15 E.1, so the UID itself is
never printed).  ``StudyDescription`` is free text written at registration and is treated
as patient information: never read.  Exceptions from pydicom are re-raised with our
own wording (``from None``) because their messages can quote element values.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.io.dicom_geometry import (
    check_slice_gaps,
    order_along_normal,
    regular_step_vector,
    series_affine,
    slice_axes,
)
from spinecensus.io.dicom_series import find_series
from spinecensus.io.dicom_slice import DicomSlice, decode_pixels
from spinecensus.io.scan import Scan, scan_from_image


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
    slices = find_series(root)
    axes = slice_axes(root, slices)
    slices, ipps, gaps = order_along_normal(slices, axes.normal)
    check_slice_gaps(root, gaps)
    step_vec = regular_step_vector(root, ipps, slices[0].pixel_spacing)
    data = _stack_pixels(slices)
    affine = series_affine(axes, step_vec, slices[0].pixel_spacing, ipps[0])
    return _scan_from_volume(data, affine, root, check)


def _stack_pixels(slices: list[DicomSlice]) -> np.ndarray:
    """The ``(slice, row, col)`` volume of the sorted slices, rescaled to float32 with
    each slice's ``RescaleSlope``/``RescaleIntercept`` when any is not the identity."""
    # one decode per file (I/O bound), then a single stack
    data = np.stack([decode_pixels(s) for s in slices])  # (N, rows, cols)
    slopes = np.asarray([s.slope for s in slices])
    intercepts = np.asarray([s.intercept for s in slices])
    if np.any(slopes != 1.0) or np.any(intercepts != 0.0):
        data = data.astype(np.float32) * slopes[:, None, None].astype(np.float32) + intercepts[
            :, None, None
        ].astype(np.float32)
    return data


def _scan_from_volume(data: np.ndarray, affine: np.ndarray, root: Path, check: bool) -> Scan:
    """Wrap the stored volume and its RAS affine (qform = sform, scanner coordinates, mm)
    as a NIfTI image and reorient it to a canonical :class:`Scan`."""
    header = nib.Nifti1Header()
    header.set_data_dtype(data.dtype)
    header.set_xyzt_units("mm", "sec")
    img = nib.Nifti1Image(data, affine, header=header)
    img.set_qform(affine, code=1, update_affine=False)  # scanner coordinates
    img.set_sform(affine, code=1, update_affine=False)
    return scan_from_image(img, path=str(root), check=check)
