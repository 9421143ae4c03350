"""The sacrum rule: the lowest fused block, on whole spines (:func:`read_sacrum`, in mm) and
on small fields of view (naming upward from it, :func:`names_up_from_sacrum`).

The most caudal instance is the sacrum when it is a vertebra below a disc and clearly
larger than the bodies above it (:func:`last_is_sacrum`, the one sacrum rule; S1 plus the
fused segments, and a fused L5 in sacralization, form one instance).  Many adults' T2 MRI
show a remnant S1-S2 disc, and a segmentation then splits the sacrum into an S1 piece and
an S2-S5 piece; counted as it stands, a normal spine would read as lumbarization.  The
sacrum is therefore the lowest fused *block*: the pieces below a remnant disc belong to it
(:func:`read_sacrum` on whole spines, by disc and piece sizes in mm; :func:`sacral_tail`,
by voxel counts, on small fields of view, where the status is withheld anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.naming.shape import ShapeReader

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


# --- whole spines: the lowest fused block, read in mm -----------------------------------
# Figures (synthetic ground truth, 15 subjects per anomaly and preset, default and tiny),
# each relative to the (up to) three discs or vertebrae above: a remnant S1-S2 disc (variant
# ``sacral_disc``, 3-5 mm) 0.36-0.64 of their height and 0.26-0.48 of their volume, a
# lumbosacral disc (L5-S1, L6-S1, L4-S1) 0.82-1.34 and 0.81-1.33; the S2-S5 piece below a
# remnant 1.09-1.72 x the lumbar bodies' volume and 2.03-2.64 x their height, a whole
# sacrum 2.09-4.85 x and 2.74-4.62 x; both taper to about a third (0.23-0.49; a vertebral
# body about 1).  A real L6 (lumbarization) sits on a full-size L6-S1 disc: that disc alone
# keeps it lumbar, whatever the piece below looks like.  Real discs are smaller at the
# junction than in synthetic spines: on the three real IVD scans (young adults, manual masks,
# ``../shared/data/real``) L5-S1 measured 0.92-1.32 of L2-L3..L4-L5 in height and 0.70-0.89 in
# volume, hence the full-size volume threshold of 0.6.

#: a remnant disc: at most these fractions of the discs above, in height and in volume
REMNANT_DISC_MAX = (0.7, 0.55)
#: a full-size disc: at least these fractions in height and in volume (the piece below is
#: then the sacrum, as a real L6-S1 disc makes an L6)
FULL_DISC_MIN = (0.75, 0.6)
#: the piece(s) below a remnant disc, S2-S5: at most these multiples of the lumbar bodies'
#: median volume and height, tapering to at most :data:`SACRAL_TAPER_MAX`
SACRAL_PIECE_MAX = (1.85, 2.8)
SACRAL_TAPER_MAX = 0.7
#: a whole sacrum: at least these multiples of the lumbar bodies' volume and height
WHOLE_SACRUM_MIN = (2.0, 2.7)
#: a disc above a whole sacrum under this fraction of the discs above in volume is
#: rudimentary: a sacralised L5's bony-bridged remnant or a collapsed (or half-segmented)
#: L5-S1 disc; which one the masks cannot tell, so the status is withheld.  The shipped
#: model segments the generator's sacralisation rudiment as such a disc (0.01-0.15, 3 of 8
#: synthetic sacralisations); a free L5-S1 disc measured 0.81-1.33 on ground truth.
RUDIMENT_DISC_MAX = 0.25
#: remnant discs looked for above one another (S1-S2, S2-S3, ...)
MAX_REMNANT_DISCS = 3


@dataclass
class SacrumReading:
    """The sacrum of a whole-spine split.

    Attributes:
        sacrum_id: the top instance of the lowest fused block (named S1), or None.
        tail: remnant discs and sacral pieces below it: part of the sacrum, left unnamed.
        withheld: the junction is ambiguous (flagged ``sacral_junction_ambiguous``).
        flags: QC flags (``sacral_remnant_disc`` is informational).
    """

    sacrum_id: int | None
    tail: tuple[int, ...] = ()
    withheld: bool = False
    flags: list[str] = field(default_factory=list)


def read_sacrum(
    kinds: Sequence[str],
    voxel_counts: Sequence[float],
    shapes: ShapeReader,
    min_ratio: float = SACRUM_MIN_RATIO,
) -> SacrumReading:
    """The lowest fused block of a whole-spine split (instances cranio-caudal, ids 1..N).

    Walking up from the last instance, the disc above the block so far is a *remnant* (the
    block grows by the vertebra above it) when the disc is small in height and volume
    (:data:`REMNANT_DISC_MAX`) and the block below it looks like S2-S5: smaller than a
    whole sacrum, tapering, not cut by the field of view (:data:`SACRAL_PIECE_MAX`).  The
    walk stops at a full-size disc (:data:`FULL_DISC_MIN`) or above a block that is a whole
    sacrum (:data:`WHOLE_SACRUM_MIN`; the disc above it is then a thin lumbosacral disc,
    unless it is rudimentary, :data:`RUDIMENT_DISC_MAX`).  Anything in between is
    ambiguous: the status is withheld with the QC flag ``sacral_junction_ambiguous``.  The
    block is the sacrum when its volume is at least ``min_ratio`` x the median of the (up
    to) three vertebrae above it.  Without shapes (a split built by hand) this is
    :func:`last_is_sacrum`.
    """
    n = len(kinds)
    if not shapes.available:
        return SacrumReading(n if last_is_sacrum(kinds, voxel_counts, min_ratio) else None)
    if n < 2 or kinds[-1] != "vertebra" or "disc" not in kinds[:-1]:
        return SacrumReading(None)
    top, flags, withheld = n, [], False
    for _ in range(MAX_REMNANT_DISCS):
        step = _junction(kinds, shapes, top)
        if step is None or step[0] == "stop":
            break
        verdict, text = step
        flags.append(text)
        if verdict == "ambiguous":
            withheld = True
            break
        top -= 2  # a remnant disc: the vertebra above it is the block's top
    verts_above = [i + 1 for i in range(top - 1) if kinds[i] == "vertebra"][-3:]
    block = sum(shapes.volume_mm3(i) for i in range(top, n + 1))
    ref = float(np.median([shapes.volume_mm3(i) for i in verts_above])) if verts_above else 0.0
    if not verts_above or block < min_ratio * ref:
        return SacrumReading(None, flags=flags, withheld=withheld)
    return SacrumReading(top, tuple(range(top + 1, n + 1)), withheld, flags)


def _junction(kinds: Sequence[str], shapes: ShapeReader, top: int) -> tuple[str, str] | None:
    """The disc above the block ``top..N``: ``("stop", "")`` (full-size disc, or a whole
    sacrum below), ``("remnant", flag)`` or ``("ambiguous", flag)``; None when there is
    too little above to compare with."""
    d, a = top - 1, top - 2
    if a < 1 or kinds[d - 1] != "disc" or kinds[a - 1] != "vertebra":
        return None
    discs = [i + 1 for i in range(d - 1) if kinds[i] == "disc"][-3:]
    verts = [i + 1 for i in range(a - 1) if kinds[i] == "vertebra"][-3:]
    block = tuple(range(top, len(kinds) + 1))
    if len(discs) < 2 or len(verts) < 2 or not all(map(shapes.measured, (*discs, *verts, d))):
        return None
    if not all(map(shapes.measured, block)):
        return None
    disc = shapes.of(d)
    h = disc.height_mm / float(np.median([shapes.of(i).height_mm for i in discs]))
    v = shapes.volume_mm3(d) / float(np.median([shapes.volume_mm3(i) for i in discs]))
    if h >= FULL_DISC_MIN[0] and v >= FULL_DISC_MIN[1]:
        return "stop", ""
    piece = shapes.of(block)
    pv = piece.volume_mm3 / float(np.median([shapes.volume_mm3(i) for i in verts]))
    ph = piece.height_mm / float(np.median([shapes.of(i).height_mm for i in verts]))
    whole = pv >= WHOLE_SACRUM_MIN[0] and ph >= WHOLE_SACRUM_MIN[1]
    if whole and v >= RUDIMENT_DISC_MAX:
        return "stop", ""
    what = (
        f"disc {d} {disc.height_mm:.1f} mm high ({h:.2f} x the discs above in height, "
        f"{v:.2f} x in volume, {disc.depth_mm:.0f} mm deep); below it instances "
        f"{block[0]}..{block[-1]}, {pv:.2f} x the lumbar bodies' volume, {ph:.2f} x their "
        f"height, taper {piece.taper:.2f}"
    )
    small = h <= REMNANT_DISC_MAX[0] and v <= REMNANT_DISC_MAX[1]
    sacral = (
        pv <= SACRAL_PIECE_MAX[0]
        and ph <= SACRAL_PIECE_MAX[1]
        and piece.taper <= SACRAL_TAPER_MAX
        and not piece.cut_caudally
    )
    if small and sacral:
        return "remnant", (
            f"sacral_remnant_disc: {what}: a remnant S1-S2 disc; the pieces below belong "
            "to the sacrum (left unnamed, S1's volume is the piece above the disc)"
        )
    why = (
        "a rudimentary disc above the whole sacrum (a sacralised L5 or a collapsed disc)"
        if whole
        else "neither a remnant disc above S2-S5 nor a full-size disc above the sacrum"
    )
    return "ambiguous", f"sacral_junction_ambiguous: {what}: {why}; status withheld"
