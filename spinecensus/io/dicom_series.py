"""Grouping slices into series: the one DICOM series of a folder, or an error that lists
the series found.

Privacy: a multi-series folder is described by ``SeriesNumber``, ``SeriesDescription``
(the acquisition protocol name), slice count and a short *hash* of
``SeriesInstanceUID`` (:func:`series_fingerprint`); the UID itself is never printed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from spinecensus.io.dicom_slice import DicomSlice, candidate_files, read_slice
from spinecensus.io.scan import InputError


def series_fingerprint(uid: str) -> str:
    """A short, non-reversible tag for a SeriesInstanceUID (8 hex characters).

    Lets a user tell two series with the same number/description apart without the
    UID itself (a linkable identifier) appearing in logs or tables.
    """
    return hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()[:8]


def describe_series(slices: list[DicomSlice]) -> str:
    """One line per series in ``slices`` (number, description, slice count, UID hash),
    ordered by ``SeriesNumber``."""
    groups: dict[str, list[DicomSlice]] = {}
    for s in slices:
        groups.setdefault(s.series_uid, []).append(s)
    parts = []

    def key(kv: tuple[str, list[DicomSlice]]) -> tuple[int, str]:
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


def find_series(root: Path) -> list[DicomSlice]:
    """The slices of the single DICOM series in folder ``root``, in file-name order.

    Raises:
        InputError: the folder does not exist, holds no DICOM image files, holds several
            series (listed by :func:`describe_series`), or the series has one slice.
    """
    if not root.is_dir():
        raise InputError(root, "DICOM series folder does not exist")
    files = candidate_files(root)
    slices = [s for s in (read_slice(p) for p in files) if s is not None]
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
            f"and list the one to analyse: {describe_series(slices)}",
        )
    if len(slices) < 2:
        raise InputError(root, "DICOM series has a single slice; a 3-D series is required")
    return slices
