"""Reading scans and writing results: NIfTI and DICOM series -> canonical-order
:class:`Scan`, input checks before the model, atomic writes, and :class:`InputError`.

Entry points: :func:`load_scan` (NIfTI file or DICOM folder), :func:`load_mask`,
:func:`save_like` (a canonical array back onto the input's grid), :func:`atomic_path`,
:func:`write_json`; :func:`spinecensus.io.checks.load_checked` adds the plausibility checks.
Module map:

* ``scan``: canonical voxel order, ``Scan``, ``Orientation``, ``InputError``.
* ``nifti``: NIfTI files in (``load_scan``, ``load_mask``) and out (``save_like``).
* ``dicom``: a DICOM series folder -> ``Scan`` (``load_series``), built from
  ``dicom_slice`` (candidate files, the tags read from one file, its pixels),
  ``dicom_series`` (the one series of a folder, UID hashes) and ``dicom_geometry``
  (order along the slice normal, gap/orientation checks, the RAS affine).
* ``dicom_write``: synthetic DICOM series for tests (``write_series``).
* ``checks``: plausibility checks of a spine MRI before the model (``load_checked``).
* ``atomic``: atomic writes (``atomic_path``, ``write_json``).
"""

from spinecensus.io.atomic import atomic_path, write_json
from spinecensus.io.nifti import load_mask, load_nifti, load_scan, save_like
from spinecensus.io.scan import (
    CANONICAL_AXCODES,
    InputError,
    Orientation,
    Scan,
    scan_from_image,
    validate_image_array,
)

__all__ = [
    "CANONICAL_AXCODES",
    "InputError",
    "Orientation",
    "Scan",
    "atomic_path",
    "load_mask",
    "load_nifti",
    "load_scan",
    "save_like",
    "scan_from_image",
    "validate_image_array",
    "write_json",
]
