"""The sacrum rule and naming upward from it (small-field-of-view scans without C2).

The most caudal instance is the sacrum when it is a vertebra below a disc and clearly
larger than the bodies above it (:func:`last_is_sacrum`, the one sacrum rule; S1 plus the
fused segments, and a fused L5 in sacralization, form one instance).  Sacral segments a
segmentation split off below S1 are set aside first (:func:`sacral_tail`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spinecensus.anatomy import labels

#: the most caudal vertebra is the sacrum when it holds at least this multiple of the median
#: voxel count of the (up to) three vertebrae above it: S1 plus the fused segments (and a
#: fused L5 in sacralization) form one instance, clearly larger than a lumbar body, while a
#: spine cut off in the thoracic region ends in a body of ordinary size
SACRUM_MIN_RATIO = 1.25
#: the same rule on small-field-of-view scans: the field of view's lower edge often cuts
#: the sacrum after S1-S2, so it need not out-size L5; it must still not be a small
#: fragment (0.8 x the vertebrae above; the real lumbar scans of docs/real_mri.md)
SMALL_FOV_SACRUM_MIN_RATIO = 0.8


def last_is_sacrum(
    kinds: Sequence[str], voxel_counts: Sequence[float], min_ratio: float = SACRUM_MIN_RATIO
) -> bool:
    """The one sacrum rule: is the most caudal instance the sacrum?

    It must be a vertebra lying below at least one disc, with a voxel count of at least
    ``min_ratio`` x the median of the (up to) three vertebrae above it (instances ordered
    cranio-caudally; counts in voxels of one grid, so the ratio is a volume ratio).
    """
    n = len(kinds)
    if n < 2 or kinds[-1] != "vertebra" or "disc" not in kinds[:-1]:
        return False
    counts = np.asarray(voxel_counts, dtype=float)
    above = [counts[i] for i in range(n - 1) if kinds[i] == "vertebra"][-3:]
    if not above:
        return False
    return bool(counts[n - 1] >= min_ratio * float(np.median(above)))


#: a disc with under this fraction of the median voxel count of the scan's discs, followed
#: only by vertebra pieces, may be a sacral remnant: the rudimentary S1-S2 disc that T2 MRI
#: often shows (or a stray fragment among the sacral segments).  A degenerated L5-S1 disc
#: loses height but keeps its width, so it usually stays above half of its neighbours.
SACRAL_REMNANT_DISC_RATIO = 0.5


def sacral_tail(
    kinds: Sequence[str],
    voxel_counts: Sequence[float],
    ratio: float = SACRAL_REMNANT_DISC_RATIO,
) -> int:
    """How many trailing instances are sacral segments split off below S1 (0 when none).

    A segmentation of a real scan often separates S2 (and lower segments) from S1 at the
    remnant S1-S2 disc; naming up from the last instance would then call S2 "S1" and shift
    every level by one.  The tail is a run of ``(small disc, vertebra)`` pairs at the
    caudal end, each disc under ``ratio`` x the median count of all the scan's discs, and
    it is set aside only when the vertebra above it is clearly sacrum-sized
    (:func:`last_is_sacrum` with the whole-spine ratio, ``SACRUM_MIN_RATIO``): an L5-S1
    disc that the model merely under-segmented is small too, but then the vertebra above
    it is L5, of ordinary size.
    """
    counts = np.asarray(voxel_counts, dtype=float)
    discs = [counts[i] for i, k in enumerate(kinds) if k == "disc"]
    if not discs:
        return 0
    small = ratio * float(np.median(discs))
    n = end = len(kinds)
    tail = 0
    while end >= 4 and kinds[end - 1] == "vertebra" and kinds[end - 2] == "disc":
        if counts[end - 2] >= small:
            break
        end -= 2
        if last_is_sacrum(kinds[:end], counts[:end], SACRUM_MIN_RATIO):
            tail = n - end
    return tail


def names_up_from_sacrum(
    kinds: Sequence[str],
    voxel_counts: Sequence[float],
    min_ratio: float = SMALL_FOV_SACRUM_MIN_RATIO,
) -> dict[int, str] | None:
    """Names for ordered instances (cranial first, ids ``1..N``), counted upward from S1.

    For small-field-of-view scans without C2: when :func:`last_is_sacrum` holds, naming runs
    upward through the normal schema (S1, L5-S1, L5, L4-L5, ...), i.e. it assumes five
    lumbar vertebrae - a transitional vertebra cannot be recognised from the sacrum alone
    (that needs the count origin, C2, or the learned labeler).  Sacral segments split off
    below S1 (:func:`sacral_tail`) are set aside first and stay unnamed.  Naming stops
    where vertebra/disc alternation breaks.  Returns None when no sacrum is found.
    """
    n = len(kinds) - sacral_tail(kinds, voxel_counts)
    kinds, voxel_counts = list(kinds)[:n], list(voxel_counts)[:n]
    if n < 3 or not last_is_sacrum(kinds, voxel_counts, min_ratio):
        return None
    schema = labels.structures("normal")[::-1]  # S1, L5-S1, L5, ...
    names: dict[int, str] = {}
    for pos, idx in enumerate(range(n - 1, -1, -1)):
        if pos >= len(schema) or labels.kind(schema[pos]) != kinds[idx]:
            break
        names[idx + 1] = schema[pos]
    return names
