"""Naming by counting: whole-spine scans from C2 down, lumbar fields of view up from the
sacrum.

Whole-spine scans (:func:`count_labels`): the topmost vertebral body is C2 (C1 has no
body, so the vertebra class starts at C2 in real and synthetic masks), structures are
named downward along the split's cranio-caudal order, and the sacrum is recognised as the
last vertebra instance, below the last disc and clearly larger than the bodies above it
(``naming.sacrum.last_is_sacrum``, the one sacrum rule, also used upward on small-FOV
scans; S1 plus the fused segments, and a fused L5 in sacralization, form one instance).
The thoracic count is fixed at 12 and the cervical at 6 bodies (C2-C7), as in the thesis,
so the number of free lumbar vertebrae is ``n_vertebrae - 18 - 1`` and gives the
transitional status (4 sacralization, 5 normal, 6 lumbarization).  Thoracic-count variants
are not modelled (see ``spinecensus.anatomy.labels``).  Scans declared
``field_of_view="lumbar"`` (C2 not in view) are named upward from the sacrum where one is
in view (``naming.sacrum.names_up_from_sacrum``, five lumbar vertebrae assumed) and their
status is withheld.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.naming.labeling import Labeling, check_field_of_view
from spinecensus.naming.sacrum import SACRUM_MIN_RATIO, last_is_sacrum, names_up_from_sacrum
from spinecensus.split.instances import SplitResult

#: number of vertebral bodies above the lumbar spine: C2..C7 (6) + T1..T12 (12)
N_ABOVE_LUMBAR = len(labels.CERVICAL) + len(labels.THORACIC)
TOP = labels.CERVICAL[0]  # "C2", the count origin


def _name_from_top(kinds: Sequence[str], names: Sequence[str]) -> tuple[dict[int, str], list[str]]:
    """Walk instances (from the first vertebra) along ``names``; stop at a kind mismatch."""
    out: dict[int, str] = {}
    flags: list[str] = []
    first = next((i for i, k in enumerate(kinds) if k == "vertebra"), None)
    if first is None:
        return out, ["no_vertebrae: nothing to count from"]
    if first > 0:
        flags.append(f"top_not_vertebra: {first} disc(s) above the topmost vertebra left unnamed")
    pos = 0
    for i in range(first, len(kinds)):
        if pos >= len(names):
            flags.append(f"beyond_schema: instances {i + 1}..{len(kinds)} left unnamed")
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


def _missed_disc_suspects(split: SplitResult, max_gap_ratio: float) -> list[tuple[int, int, float]]:
    """Consecutive disc pairs (ids) whose centroid distance is ``max_gap_ratio`` x the median
    of the neighbouring gaps (two on each side) or more, with that ratio.

    A disc the segmentation missed merges two vertebrae into one instance that is still one
    connected piece, so the split looks valid while every name below it shifts by one level
    (a normal spine then reads as sacralization).  Inter-disc distances change slowly along
    the spine (vertebral heights grow ~1 mm per level), so a gap of twice its neighbours
    gives the merge away: on synthetic ground truth the largest ratio seen was 1.18, on
    merged predictions 1.6-2.2.  (A merge of C2 with C3, above the first disc, is not seen.)
    """
    discs = split.ids_of("disc")
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
        sacrum_ratio: ``min_ratio`` of :func:`last_is_sacrum` (the last instance is the
            sacrum when it is a vertebra below a disc with at least this multiple of the
            median voxel count of the three vertebrae above it; so a spine cut off in the
            thoracic region, with equal-sized bodies, has no "sacrum").
        max_gap_ratio: two consecutive discs further apart than this multiple of their
            neighbours' spacing suggest a missed disc (see :func:`_missed_disc_suspects`);
            the names are kept but the status becomes ``"undetermined"`` with a QC flag.
        field_of_view: ``"lumbar"``: C2 is not in view, so the split is named upward from
            the sacrum instead (:func:`names_up_from_sacrum`) and its status is withheld.
            Counting from the top vertebra as C2 would call a lumbar scan's T11 "C2".

    Never raises; problems become ``qc_flags`` and an ``"undetermined"`` status.
    """
    check_field_of_view(field_of_view)
    kinds = split.kinds
    flags: list[str] = []
    if not split.valid:
        flags.append(f"split_invalid: {split.invalid_reason}")
    verts = split.ids_of("vertebra")
    if not verts:
        flags.append("no_vertebrae: nothing to count from")
        return Labeling({}, "undetermined", None, "count", flags)
    if field_of_view == "lumbar":
        return _small_fov_labels(split, flags)
    last = len(kinds)
    sacrum = last_is_sacrum(kinds, split.voxel_counts, sacrum_ratio)
    n_free = len(verts) - 1 if sacrum else len(verts)
    lumbar = n_free - N_ABOVE_LUMBAR
    id_to_name = _names_down_from_c2(kinds, n_free, sacrum, flags)
    in_range = sacrum and lumbar in labels.VARIANT_BY_LUMBAR_COUNT
    merged = _missed_disc_suspects(split, max_gap_ratio)
    if merged:
        flags.append(_missed_disc_flag(merged))
    trusted = in_range and not merged
    status = labels.transitional_status(id_to_name.values()) if trusted else "undetermined"
    lumbar_count = lumbar if sacrum and lumbar >= 0 else None
    return Labeling(
        id_to_name,
        status,
        lumbar_count,
        "count",
        flags,
        sacrum_id=last if sacrum else None,
    )


def _names_down_from_c2(
    kinds: Sequence[str], n_free: int, sacrum: bool, flags: list[str]
) -> dict[int, str]:
    """Names counted down from C2 for ``n_free`` free vertebrae (plus the sacrum when
    recognised); the schema variant follows the lumbar count.  Appends QC flags to
    ``flags``."""
    last = len(kinds)
    lumbar = n_free - N_ABOVE_LUMBAR
    if sacrum and lumbar in labels.VARIANT_BY_LUMBAR_COUNT:
        schema = labels.structures(labels.variant_for_lumbar_count(lumbar))
        id_to_name, f = _name_from_top(kinds, schema)
        flags += f
    elif sacrum:
        flags.append(
            f"lumbar_count_out_of_range: {lumbar} free lumbar vertebrae counted from C2 "
            f"(schema: 4-6); only C2 downward and the sacrum are named"
        )
        top_part = [n for n in labels.all_names() if "S1" not in n][: 2 * n_free - 1]
        id_to_name, f = _name_from_top(kinds[: last - 2], top_part)
        flags += f
        id_to_name[last] = labels.SACRUM
    else:
        flags.append("sacrum_not_recognised: last structure is not the largest vertebra")
        variant = "normal" if n_free <= N_ABOVE_LUMBAR + 5 else "lumbarization"
        schema = [n for n in labels.structures(variant) if n != labels.SACRUM]
        id_to_name, f = _name_from_top(kinds, schema)
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
