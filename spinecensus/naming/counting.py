"""Naming by counting: whole-spine scans from C2 down, lumbar fields of view up from the
sacrum.

Whole-spine scans (:func:`count_labels`): the topmost vertebral body is C2 (C1 has no
body, so the vertebra class starts at C2 in real and synthetic masks), structures are
named downward along the split's cranio-caudal order, and the sacrum is the lowest fused
block: the last vertebra instance, below the last full-size disc and clearly larger than
the bodies above it, together with any pieces below a remnant S1-S2 disc
(``naming.sacrum.read_sacrum``, in mm; S1 plus the fused segments, and a fused L5 in
sacralization, form one block named S1, the pieces below it stay unnamed).  The thoracic
count is fixed at 12 and the cervical at 6 bodies (C2-C7), as in the thesis, so the
number of free lumbar vertebrae is ``n_vertebrae - 18 - 1`` and gives the transitional
status (4 sacralization, 5 normal, 6 lumbarization): a status *by presacral count*
(``spinecensus.census.presacral``), so 11 thoracic + 5 lumbar vertebrae read as
sacralization and 13 + 5 as lumbarization, and every level is named by its position
below C2 (with 11 thoracic vertebrae the body named T12 is the first lumbar one).

The count is trusted only when it can be: the top instance must be C2 by shape
(``naming.origin.read_origin``: the dens makes C2 far taller than C3; a C2-C3 block is
counted as two bodies where its size says so), the split must be valid, the sacral
junction unambiguous and no disc missed; otherwise the names stay and the status is
``"undetermined"`` with a QC flag saying why.  Scans declared ``field_of_view="lumbar"``
(C2 not in view) are named upward from the sacrum where one is in view
(``naming.sacrum.names_up_from_sacrum``, five lumbar vertebrae assumed) and their status
is withheld.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.naming.labeling import Labeling, check_field_of_view
from spinecensus.naming.origin import Origin, read_origin
from spinecensus.naming.sacrum import (
    SACRUM_MIN_RATIO,
    SacrumReading,
    names_up_from_sacrum,
    read_sacrum,
)
from spinecensus.naming.shape import ShapeReader
from spinecensus.split.instances import SplitResult

#: number of vertebral bodies above the lumbar spine: C2..C7 (6) + T1..T12 (12)
N_ABOVE_LUMBAR = len(labels.CERVICAL) + len(labels.THORACIC)
TOP = labels.CERVICAL[0]  # "C2", the count origin


def _name_run(
    kinds: Sequence[str], start: int, stop: int, names: Sequence[str]
) -> tuple[dict[int, str], list[str]]:
    """Name instances ``start + 1 .. stop`` (0-based slice ``[start, stop)``) along
    ``names``; stop at a kind mismatch or when the names run out (QC flags)."""
    out: dict[int, str] = {}
    flags: list[str] = []
    pos = 0
    for i in range(start, stop):
        if pos >= len(names):
            flags.append(f"beyond_schema: instances {i + 1}..{stop} left unnamed")
            break
        if labels.kind(names[pos]) != kinds[i]:
            flags.append(
                f"sequence_break: instance {i + 1} is a {kinds[i]} where "
                f"{names[pos]} was expected; it and those below are unnamed"
            )
            break
        out[i + 1] = names[pos]
        pos += 1
    return out, flags


def _missed_disc_suspects(
    split: SplitResult, max_gap_ratio: float, between: tuple[int, int] | None = None
) -> list[tuple[int, int, float]]:
    """Consecutive disc pairs (ids) whose centroid distance is ``max_gap_ratio`` x the median
    of the neighbouring gaps (two on each side) or more, with that ratio; only the discs
    between instances ``between`` (the count origin and the sacrum) when given: a dropped
    stray disc above C2 lies C2's height above C2-C3, a remnant disc inside the sacrum a
    sacral segment below the lumbosacral disc, and neither is a missed disc.

    A disc the segmentation missed merges two vertebrae into one instance that is still one
    connected piece, so the split looks valid while every name below it shifts by one level
    (a normal spine then reads as sacralization).  Inter-disc distances change slowly along
    the spine (vertebral heights grow ~1 mm per level), so a gap of twice its neighbours
    gives the merge away: on synthetic ground truth the largest ratio seen was 1.18, on
    merged predictions 1.6-2.2.  (A merge of C2 with C3, above the first disc, is not seen
    here but by the count-origin check, ``naming.origin``: two bodies below the dens.)
    """
    lo, hi = between if between is not None else (0, split.n_instances + 1)
    discs = [d for d in split.ids_of("disc") if lo < d < hi]
    if len(discs) < 3:
        return []
    cents = np.asarray(split.centroids_mm, dtype=float)
    if cents.ndim != 2 or len(cents) < max(discs):
        return []  # a split built without geometry (e.g. by hand): nothing to check
    c = cents[np.asarray(discs) - 1]
    gaps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    n = len(gaps)
    out = []
    for i in range(n):  # ~25 gaps, not voxels
        nb = np.concatenate([gaps[max(0, i - 2) : i], gaps[i + 1 : i + 3]])
        ratio = float(gaps[i] / max(np.median(nb), 1e-9))
        if ratio >= max_gap_ratio:
            out.append((discs[i], discs[i + 1], ratio))
    return out


def _small_fov_labels(split: SplitResult, flags: list[str]) -> Labeling:
    """Names for a small-field-of-view split: upward from the sacrum where it is in view
    (:func:`names_up_from_sacrum`), otherwise none.  The status stays "undetermined": a
    transitional vertebra is counted from C2 only (a labeler's reading of one stays
    unvalidated on real scans; :func:`label_with_model`)."""
    names = names_up_from_sacrum(split.kinds, split.voxel_counts) or {}
    n_verts = len(split.ids_of("vertebra"))
    how = (
        "named upward from the sacrum, five lumbar vertebrae assumed"
        if names
        else "no sacrum recognised, left unnamed"
    )
    flags.append(
        f"small_field_of_view: {n_verts} vertebrae, lumbar field of view; {how}; status "
        "undetermined (a transitional vertebra needs the count from C2)"
    )
    sacrum_id = next((i for i, n in names.items() if n == labels.SACRUM), None)
    return Labeling(names, "undetermined", None, "count", flags, sacrum_id=sacrum_id)


def count_labels(
    split: SplitResult,
    sacrum_ratio: float = SACRUM_MIN_RATIO,
    max_gap_ratio: float = 1.4,
    field_of_view: str = "whole_spine",
) -> Labeling:
    """Name a whole-spine split by counting from C2 (see the module docstring).

    Args:
        split: the split (cranio-caudal ids).
        sacrum_ratio: ``min_ratio`` of :func:`read_sacrum` (the lowest fused block is the
            sacrum when its volume is at least this multiple of the median volume of the
            three vertebrae above it; so a spine cut off in the thoracic region, with
            equal-sized bodies, has no "sacrum").
        max_gap_ratio: two consecutive discs further apart than this multiple of their
            neighbours' spacing suggest a missed disc (see :func:`_missed_disc_suspects`);
            the names are kept but the status becomes ``"undetermined"`` with a QC flag.
        field_of_view: ``"lumbar"``: C2 is not in view, so the split is named upward from
            the sacrum instead (:func:`names_up_from_sacrum`) and its status is withheld.
            Counting from the top vertebra as C2 would call a lumbar scan's T11 "C2".

    The status is withheld (``"undetermined"``, with the flag) when the split is invalid
    (``split_invalid``), the top instance is not C2 by shape (``count_origin_unverified``,
    ``block_vertebra_suspected``; :func:`read_origin`), the sacral junction is ambiguous
    (``sacral_junction_ambiguous``), a disc seems missed (``missed_disc_suspected``), no
    sacrum is recognised or the lumbar count is outside 4-6.  A split without voxels (built
    by hand) is counted without the shape checks.

    Never raises; problems become ``qc_flags`` and an ``"undetermined"`` status.
    """
    check_field_of_view(field_of_view)
    flags: list[str] = []
    if not split.valid:
        flags.append(f"split_invalid: {split.invalid_reason}")
    if not split.ids_of("vertebra"):
        flags.append("no_vertebrae: nothing to count from")
        return Labeling({}, "undetermined", None, "count", flags)
    if field_of_view == "lumbar":
        return _small_fov_labels(split, flags)
    shapes = ShapeReader(split)
    origin = read_origin(split, shapes)
    sacrum = read_sacrum(split.kinds, split.voxel_counts, shapes, sacrum_ratio)
    flags += origin.flags + sacrum.flags
    top = origin.top_id if origin.top_id is not None else 1
    end = sacrum.sacrum_id if sacrum.sacrum_id is not None else split.n_instances + 1
    counted = [v for v in split.ids_of("vertebra") if top <= v < end]
    n_free = len(counted) + origin.n_bodies - 1
    lumbar = n_free - N_ABOVE_LUMBAR
    id_to_name = _names_down_from_c2(split.kinds, origin, sacrum, n_free, flags)
    found = sacrum.sacrum_id is not None
    merged = _missed_disc_suspects(split, max_gap_ratio, (top, end))
    if merged:
        flags.append(_missed_disc_flag(merged))
    readable = origin.verified and not sacrum.withheld
    trusted = (
        found
        and lumbar in labels.VARIANT_BY_LUMBAR_COUNT
        and readable
        and split.valid
        and not merged
    )
    status = labels.transitional_status(id_to_name.values()) if trusted else "undetermined"
    return Labeling(
        id_to_name,
        status,
        lumbar if found and readable and lumbar >= 0 else None,
        "count",
        flags,
        sacrum_id=sacrum.sacrum_id,
    )


def _names_down_from_c2(
    kinds: Sequence[str], origin: Origin, sacrum: SacrumReading, n_free: int, flags: list[str]
) -> dict[int, str]:
    """Names counted down from the origin (C2) for ``n_free`` free vertebrae, then the
    sacrum when recognised (the pieces below a remnant disc stay unnamed); the schema
    variant follows the lumbar count, a C2-C3 block (``origin.n_bodies == 2``) is named C2
    and the disc below it C3-C4.  Appends QC flags to ``flags``."""
    first_vertebra = kinds.index("vertebra")
    if first_vertebra > 0:
        flags.append(
            f"top_not_vertebra: {first_vertebra} disc(s) above the topmost vertebra left unnamed"
        )
    start = (origin.top_id or 1) - 1
    block = ("C2-C3", "C3") if origin.n_bodies == 2 else ()
    lumbar = n_free - N_ABOVE_LUMBAR
    s1 = sacrum.sacrum_id
    if s1 is not None and lumbar in labels.VARIANT_BY_LUMBAR_COUNT:
        schema = labels.structures(labels.variant_for_lumbar_count(lumbar))
        id_to_name, f = _name_run(kinds, start, s1, [n for n in schema if n not in block])
    elif s1 is not None:
        flags.append(
            f"lumbar_count_out_of_range: {lumbar} free lumbar vertebrae counted from C2 "
            f"(schema: 4-6); only C2 downward and the sacrum are named"
        )
        names = [n for n in labels.all_names() if "S1" not in n and n not in block]
        n_names = 2 * (n_free - origin.n_bodies + 1) - 1
        id_to_name, f = _name_run(kinds, start, s1 - 2, names[:n_names])
        id_to_name[s1] = labels.SACRUM
    else:
        flags.append("sacrum_not_recognised: last structure is not the largest vertebra")
        variant = "normal" if n_free <= N_ABOVE_LUMBAR + 5 else "lumbarization"
        schema = [n for n in labels.structures(variant) if n != labels.SACRUM and n not in block]
        id_to_name, f = _name_run(kinds, start, len(kinds), schema)
    flags += f
    return id_to_name


def _missed_disc_flag(merged: list[tuple[int, int, float]]) -> str:
    """The QC flag for :func:`_missed_disc_suspects` (disc id pairs and their gap ratios)."""
    return (
        "missed_disc_suspected: "
        + "; ".join(
            f"discs {a} and {b} are {r:.1f}x further apart than their neighbours"
            for a, b, r in merged
        )
        + " (two vertebrae counted as one shifts every name below; status withheld)"
    )
