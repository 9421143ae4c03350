"""Per-subject input checks run before the model, beyond ``io.validate_image_array``.

``io`` already rejects what makes an array unusable at all (not 3-D / 4-D with one
volume, NaN/inf, empty, constant, zero or negative spacing, unreadable or truncated
files).  This module adds the checks that make a *usable array* an implausible
*sagittal spine MRI*:

* voxel spacing outside 0.1-10 mm on any axis (a header in metres or microns, a
  corrupt pixdim),
* no sagittal slice axis: every orientation is reoriented from the affine to canonical
  order (``io``), but the voxel axis that becomes the sagittal (left-right) axis must
  actually run roughly left-right (at most :attr:`CheckLimits.max_oblique_deg` off),
  and the thick-slice axis of a 2-D multi-slice acquisition must be that axis: an axial
  or coronal stack (its thickest spacing along superior-inferior or anterior-posterior)
  resliced into sagittal planes has no usable sagittal resolution,
* a minimum size in voxels and in mm (a spine segment needs a few centimetres of field
  of view in the sagittal plane).

What is deliberately **not** checked here: whether the image shows a spine.  A pure
noise volume, a knee or a brain passes these checks; no cheap intensity statistic
separates them from real, heterogeneous spine MRI without false rejects at some site.
Such an image instead ends as a per-subject verdict of the analysis itself (the
segmentation finds no vertebrae/discs -> the splitter reports ``"unsplittable: ..."``),
which the workflow records like any other failure.

All failures raise :class:`spinecensus.io.InputError` naming the file; several problems
are reported together (``"; "``-joined) so that one run shows everything wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np

from spinecensus.io.nifti import load_scan
from spinecensus.io.scan import InputError, Scan

_AXIS_NAMES = ("left-right", "superior-inferior", "anterior-posterior")


@dataclass(frozen=True)
class CheckLimits:
    """Thresholds of :func:`check_scan` (canonical axis order: slice, S-I, A-P).

    Attributes:
        min_spacing_mm / max_spacing_mm: plausible voxel size on every axis (mm).
        min_shape: minimum voxels per canonical axis.
        min_fov_mm: minimum field of view (voxels x spacing, mm) per canonical axis;
            25 mm S-I holds one vertebral body and a disc, 20 mm A-P one body's depth.
        max_oblique_deg: largest angle between the sagittal voxel axis and the
            patient's left-right axis.
        thick_ratio: a non-sagittal axis whose spacing exceeds the sagittal spacing by
            this factor marks an axial/coronal slice stack.
    """

    min_spacing_mm: float = 0.1
    max_spacing_mm: float = 10.0
    min_shape: tuple[int, int, int] = (2, 16, 16)
    min_fov_mm: tuple[float, float, float] = (0.0, 25.0, 20.0)
    max_oblique_deg: float = 45.0
    thick_ratio: float = 1.5


DEFAULT_LIMITS = CheckLimits()


def scan_problems(scan: Scan, limits: CheckLimits = DEFAULT_LIMITS) -> list[str]:
    """All plausibility problems of a loaded scan (empty list when it passes).

    Works on the canonical data/spacing and the stored affine only (no voxel loop).
    """
    problems: list[str] = []
    spacing = np.asarray(scan.spacing_mm, dtype=float)
    shape = np.asarray(scan.data.shape[:3])

    bad_sp = (spacing < limits.min_spacing_mm) | (spacing > limits.max_spacing_mm)
    if np.any(bad_sp):
        problems.append(
            "implausible voxel spacing "
            + ", ".join(
                f"{spacing[a]:.4g} mm along {_AXIS_NAMES[a]}" for a in np.flatnonzero(bad_sp)
            )
            + f" (expected {limits.min_spacing_mm}-{limits.max_spacing_mm} mm; "
            "header units wrong?)"
        )

    # the stored voxel axis that became canonical axis 0 (left-right)
    src_axis = int(np.flatnonzero(scan.orientation.to_canonical[:, 0] == 0)[0])
    direction = np.asarray(scan.affine[:3, src_axis], dtype=float)
    norm = float(np.linalg.norm(direction))
    if norm > 0:
        oblique = float(np.degrees(np.arccos(min(1.0, abs(direction[0]) / norm))))
        if oblique > limits.max_oblique_deg:
            problems.append(
                f"no sagittal slice axis: the voxel axis closest to left-right is "
                f"{oblique:.0f} degrees oblique (at most {limits.max_oblique_deg:.0f} allowed)"
            )
    thick = int(np.argmax(spacing))
    if thick != 0 and spacing[thick] > limits.thick_ratio * spacing[0]:
        problems.append(
            f"not a sagittal acquisition: the thickest voxel spacing ({spacing[thick]:.3g} mm) "
            f"runs {_AXIS_NAMES[thick]}, the sagittal spacing is {spacing[0]:.3g} mm "
            "(an axial or coronal slice stack cannot be analysed in sagittal planes)"
        )

    small = shape < np.asarray(limits.min_shape)
    fov = shape * spacing
    narrow = fov < np.asarray(limits.min_fov_mm)
    if np.any(small) or np.any(narrow):
        problems.append(
            f"image too small: {tuple(int(s) for s in shape)} voxels = "
            f"({', '.join(f'{f:.3g}' for f in fov)}) mm (slice, S-I, A-P); needs at least "
            f"{limits.min_shape} voxels and {limits.min_fov_mm} mm"
        )
    return problems


def check_scan(
    scan: Scan, limits: CheckLimits = DEFAULT_LIMITS, path: str | os.PathLike[str] | None = None
) -> Scan:
    """Raise :class:`InputError` (naming the file and every problem) or return ``scan``."""
    problems = scan_problems(scan, limits)
    if problems:
        raise InputError(path if path is not None else scan.path, "; ".join(problems))
    return scan


def load_checked(path: str | os.PathLike[str], limits: CheckLimits = DEFAULT_LIMITS) -> Scan:
    """Load a NIfTI file or DICOM series folder and run every input check on it.

    This is the entry point the per-subject workflow uses before the model: it raises
    :class:`InputError` ``"<file>: <problem>"`` for any unusable or implausible input.
    """
    return check_scan(load_scan(path, check=True), limits, path=path)


def _cmd_check(args: argparse.Namespace) -> int:
    """Pre-flight check of input files/folders: one line per input, exit 1 if any fails."""
    n_bad = 0
    for path in args.inputs:
        try:
            scan = load_checked(path)
        except InputError as exc:
            n_bad += 1
            print(f"FAIL {exc}")
            continue
        sp = ", ".join(f"{v:.3g}" for v in scan.spacing_mm)
        print(f"ok   {path}: {scan.data.shape} voxels, spacing ({sp}) mm")
    print(f"{len(args.inputs) - n_bad} ok, {n_bad} failed", file=sys.stderr)
    return 1 if n_bad else 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``spinecensus check INPUT...``: run the per-subject input checks, no analysis."""
    p = sub.add_parser(
        "check",
        help="check MRI inputs (NIfTI files, DICOM series folders) before a cohort run",
        description=(
            "Load each input and run the per-subject input checks the workflow runs before "
            "the model (readable, 3-D, finite, non-constant, spacing 0.1-10 mm, sagittal "
            "slice axis, minimum size; DICOM: one series, no missing slices).  Prints one "
            "line per input; exit status 1 if any input fails."
        ),
    )
    p.add_argument("inputs", nargs="+", help="NIfTI files or DICOM series folders")
    p.set_defaults(func=_cmd_check)
