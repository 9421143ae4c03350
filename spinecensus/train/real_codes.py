"""Per-voxel loss codes for partially labelled real scans: which classes a voxel *may* be.

The real masks annotate one class (bodies on VB*, discs on IVD, see
``spinecensus.train.real_data``) and only some levels.  :func:`target_codes` turns such a
mask into a code per voxel (:data:`CODE_ALLOWED`), including a "trusted band" along the spine
outside which the mask says nothing (the masks annotate only some levels: T10 or S1 are
unlabelled but are vertebrae in our schema), and the anatomy that the annotated structures
imply about their unannotated neighbours (the disc between two bodies, the body beyond an
end disc).  The partial-label loss (``spinecensus.train.real_loss``) reads the codes.

Canonical voxel order ``[slice, SI, AP]`` (``spinecensus.io``); distances in mm.
"""

from __future__ import annotations

import math

import numpy as np

from spinecensus.train.real_data import BODY, DISC, LoadedSample

#: Per-voxel target codes for the partial-label loss.  A code names the *set* of classes
#: a voxel may belong to; the loss maximises the total probability of that set
#: (``-log sum_{c in set} p_c``).  Fully labelled data (synthetic) only use codes 0-2.
CODE_BG, CODE_BODY, CODE_DISC = 0, 1, 2
#: body-only mask, voxel not in a body: background *or an unannotated disc*
CODE_NOT_BODY = 3
#: disc-only mask, voxel not in a disc: background *or an unannotated vertebral body*
CODE_NOT_DISC = 4
#: outside the annotated levels: the mask says nothing (no loss)
CODE_UNKNOWN = 255
CODE_ALLOWED: dict[int, tuple[int, ...]] = {
    CODE_BG: (0,),
    CODE_BODY: (1,),
    CODE_DISC: (2,),
    CODE_NOT_BODY: (0, 2),
    CODE_NOT_DISC: (0, 1),
    CODE_UNKNOWN: (0, 1, 2),
}


def allowed_table(n_classes: int = 3) -> np.ndarray:
    """``(256, n_classes)`` bool lookup: row = target code, True = class allowed."""
    table = np.ones((256, n_classes), dtype=bool)
    for code, allowed in CODE_ALLOWED.items():
        table[code] = False
        table[code, list(allowed)] = True
    return table


def trusted_band(instances: np.ndarray) -> tuple[int, int]:
    """SI row range ``[lo, hi)`` (canonical axis 1) where the mask's negatives can be trusted.

    The masks annotate only some levels: above the most cranial annotated structure and
    below the most caudal one lie unannotated structures of the same kind (T10 above VB2's
    T11, the sacrum below L5, T12-L1 above IVD's L1-L2).  Their voxels are 0 in the mask but
    are not background, so negatives are trusted only between the *centroid rows* of the
    first and last annotated structure (centroids rather than extents: the lumbosacral
    disc is steeply tilted, so the top of S1 reaches above the lowest row of L5).
    """
    _ids, centre = centroid_rows(instances)
    if not centre.size:
        return 0, 0
    return int(math.floor(centre.min())), int(math.ceil(centre.max())) + 1


def centroid_rows(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The annotated structures of ``instances`` (canonical ``[slice, SI, AP]`` ids, 0 =
    none) ordered cranio-caudally: ``(ids, mean SI row of each)``, both sorted by the row.
    One ``bincount`` pass."""
    inst = np.asarray(instances)
    ids = inst.reshape(-1)
    fg = ids > 0
    if not fg.any():
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    rows = np.broadcast_to(np.arange(inst.shape[1])[None, :, None], inst.shape).reshape(-1)
    n = int(ids.max()) + 1
    count = np.bincount(ids[fg], minlength=n)
    mean_row = np.bincount(ids[fg], weights=rows[fg], minlength=n) / np.maximum(count, 1)
    present = np.nonzero(count)[0]
    order = np.argsort(mean_row[present], kind="stable")
    return present[order], mean_row[present][order]


#: an unannotated disc lies within this distance (mm) of an annotated vertebral body
#: (it touches the endplates; half a disc height plus bulging)
DISC_NEAR_BODY_MM = 12.0
#: an unannotated vertebral body lies within this distance (mm) of an annotated disc
#: (bodies sit between discs; half the tallest lumbar body plus margin)
BODY_NEAR_DISC_MM = 22.0
#: outside this AP / lateral margin (mm) around the annotated column nothing is spine
COLUMN_MARGIN_MM = 40.0


#: largest gap (mm, along SI) between two consecutive annotated bodies that is called a
#: disc: a lumbar disc is at most ~15 mm high; a larger gap means a level is missing
MAX_DISC_GAP_MM = 20.0
#: largest gap (mm) between two consecutive annotated discs that is called a vertebral body
MAX_BODY_GAP_MM = 45.0
#: rows (mm) next to each annotated body that the disc fill leaves out.  The gap between two
#: body masks holds the disc *and* both endplates (bony and cartilaginous, 1-2 mm each),
#: while the disc masks (IVD) exclude the endplates.  Measured on the masks themselves: the
#: median per-column height of the fill gaps is 9-12 mm (VB1-VB3), that of the expert discs
#: 5-8 mm (IVD), so a full fill teaches discs about 1.5x too high.  The margin stays "not
#: body" (background or disc): the body masks say nothing more about it.
DISC_FILL_MARGIN_MM = 2.0
#: beyond the outer face of the first and last annotated structure, this many mm are "not
#: that class" (outside the trusted band the mask says nothing else).  Next to a body's end
#: face lies its disc, next to a disc's its body: no gap between two body masks is under 6
#: mm (median per column and level, VB1-VB3), so 2 mm cannot reach the next, unannotated body.
#: Not below a body mask whose levels are unknown (VB1): it may end at S1, fused to S2.
END_FACE_MM = 2.0
#: a disc sits on the endplates of its two vertebrae: directly above the first annotated
#: disc and below the last one (L1 above L1-L2, S1 below L5-S1) this many mm are vertebral
#: body, in the disc's own columns away from its bulging AP rim (``END_BODY_RIM_MM``).  10
#: mm lies well inside the smallest lumbar body (about 25 mm high).
END_BODY_MM = 10.0
END_BODY_RIM_MM = 3.0


def _column_faces(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom SI row of ``mask`` (canonical ``[slice, SI, AP]``) in every
    ``(slice, AP)`` column; meaningless where the column misses the mask."""
    top = np.argmax(mask, axis=1)
    bottom = mask.shape[1] - 1 - np.argmax(mask[:, ::-1, :], axis=1)
    return top, bottom


def between_consecutive(
    instances: np.ndarray,
    spacing_mm: tuple[float, float, float],
    max_gap_mm: float,
    margin_mm: float = 0.0,
) -> np.ndarray:
    """Unannotated voxels lying between two consecutive annotated structures (bool mask).

    ``instances``: canonical ``[slice, SI, AP]`` ids (0 = not annotated); structures are
    ordered by their centroid row.  For each consecutive pair and each ``(slice, AP)``
    column that crosses *both*, the rows strictly between the upper structure's lowest
    voxel and the lower one's highest voxel are returned, when that gap is at most
    ``max_gap_mm`` (``spacing_mm[1]`` per row).  ``margin_mm`` leaves that many mm next to
    each structure out (the gap's core only; see :data:`DISC_FILL_MARGIN_MM`).

    Why: a vertebral body touches a disc at each endplate, so between two annotated
    consecutive bodies lies their disc, and between two annotated consecutive discs lies a
    body.  Only columns that cross both structures are taken; the disc's bulge and the
    body's edges beyond them stay unlabelled (the loss there keeps "background or the
    other class").  One vectorized pass per pair (<= 10 pairs), no loop over voxels.
    """
    inst = np.asarray(instances)
    out = np.zeros(inst.shape, dtype=bool)
    order, _rows = centroid_rows(inst)
    n_rows = inst.shape[1]
    row_index = np.arange(n_rows)[None, :, None]
    max_rows = max_gap_mm / float(spacing_mm[1])
    margin = margin_mm / float(spacing_mm[1])
    for upper, lower in zip(order[:-1], order[1:], strict=True):
        mu, ml = inst == upper, inst == lower
        has_u, has_l = mu.any(axis=1), ml.any(axis=1)  # (slice, AP)
        bottom_u = _column_faces(mu)[1]
        top_l = _column_faces(ml)[0]
        gap = top_l - bottom_u - 1
        ok = has_u & has_l & (gap > 0) & (gap <= max_rows)
        out |= (
            ok[:, None, :]
            & (row_index > bottom_u[:, None, :] + margin)
            & (row_index < top_l[:, None, :] - margin)
        )
    return out & (inst == 0)


def beyond_end_discs(
    instances: np.ndarray,
    spacing_mm: tuple[float, float, float],
    depth_mm: float,
    rim_mm: float = END_BODY_RIM_MM,
) -> np.ndarray:
    """Rows directly above the first annotated disc and below the last one (bool mask,
    canonical ``[slice, SI, AP]``): up to ``depth_mm`` mm from the disc's face, in the
    ``(slice, AP)`` columns the disc crosses that lie at least ``rim_mm`` mm inside its AP
    extent in that slice (the annulus bulges beyond the endplates).  One pass per end."""
    from scipy import ndimage

    inst = np.asarray(instances)
    out = np.zeros(inst.shape, dtype=bool)
    order, _rows = centroid_rows(inst)
    if not order.size:
        return out
    n_rows = inst.shape[1]
    row_index = np.arange(n_rows)[None, :, None]
    depth = depth_mm / float(spacing_mm[1])
    rim = int(round(rim_mm / float(spacing_mm[2])))
    for disc, upward in ((order[0], True), (order[-1], False)):
        m = inst == disc
        cols = m.any(axis=1)  # (slice, AP)
        if rim > 0:
            cols = ndimage.binary_erosion(cols, structure=np.ones((1, 2 * rim + 1), bool))
        top, bottom = _column_faces(m)
        if upward:
            band = (row_index < top[:, None, :]) & (row_index >= top[:, None, :] - depth)
        else:
            band = (row_index > bottom[:, None, :]) & (row_index <= bottom[:, None, :] + depth)
        out |= cols[:, None, :] & band
    return out & (inst == 0)


def target_codes(
    sample: LoadedSample,
    fill_between: bool = True,
    disc_fill_margin_mm: float = 0.0,
    end_face_mm: float = 0.0,
    end_body_mm: float = 0.0,
) -> np.ndarray:
    """Per-voxel loss codes (uint8, canonical order) for a partially labelled sample.

    * annotated voxels -> their class (``CODE_BODY`` / ``CODE_DISC``);
    * inside the trusted band (:func:`trusted_band`), near the annotated structures (within
      ``DISC_NEAR_BODY_MM`` of a body / ``BODY_NEAR_DISC_MM`` of a disc) -> "anything but
      the annotated class" (``CODE_NOT_BODY`` / ``CODE_NOT_DISC``): a body-only mask cannot
      tell background from a disc there, so both stay allowed;
    * inside the band but farther away -> ``CODE_BG``: every disc of those levels touches
      an annotated body (and every body lies between annotated discs), so such voxels are
      background for sure.  Without these certain negatives the merged "not body" class
      lets the model paint discs anywhere in the soft tissue of VB scans.
    * outside the band -> ``CODE_UNKNOWN`` (no loss) within ``COLUMN_MARGIN_MM`` (AP and
      lateral) of the annotated column (unannotated levels may lie there), ``CODE_BG``
      beyond it.  When the last annotated disc is L5-S1 no disc lies below it: the rows
      below are ``CODE_NOT_DISC`` (the sacrum is a vertebra) within the column margin.
    * ``fill_between``: the gap between two consecutive annotated bodies is their disc
      (``CODE_DISC``), the gap between two consecutive annotated discs is a body
      (``CODE_BODY``), see :func:`between_consecutive`.  Without it the body-only scans
      never tell the model where a disc is, and on contrasts unlike the synthetic T2
      (water-fat VB3) it predicted almost no discs, so bodies merged in the split.
      ``disc_fill_margin_mm`` keeps that many mm next to each body out of the disc fill
      (:data:`DISC_FILL_MARGIN_MM`: the endplates, which disc masks exclude).
    * ``end_face_mm``: outside the band, voxels within that distance of the annotated
      structures are "not the annotated class" too (:data:`END_FACE_MM`): without it the
      model learns nowhere where the last annotated body (L5) ends, and on real scans it
      merged L5 with the sacrum below.
    * ``end_body_mm`` (disc masks): the rows directly above the first disc and below the
      last are body (:data:`END_BODY_MM`, :func:`beyond_end_discs`): the only place where a
      real scan tells the model what the sacrum (S1) looks like.
    """
    inst = np.asarray(sample.instances)
    sp = sample.spacing_mm
    ann = inst > 0
    (cls,) = tuple(sample.meta.labeled_classes)
    lo, hi = trusted_band(inst)
    names = sample.meta.level_names
    lowest = names[max(names)] if names else ""  # the most caudal annotated level
    envelope = _column_envelope(ann, sp)
    codes = np.where(envelope, CODE_UNKNOWN, CODE_BG).astype(np.uint8)
    maybe = CODE_NOT_BODY if cls == BODY else CODE_NOT_DISC
    codes[:, lo:hi, :] = _band_codes(ann[:, lo:hi, :], sp, cls)
    if end_face_mm > 0:
        # below the last body only where it is known to be a free vertebra: a body-only mask
        # whose levels are unknown (VB1) may end at S1, and below S1 lies fused S2, not a disc
        below_too = cls == DISC or (sample.meta.levels_known and lowest != "S1")
        codes[_end_faces(codes, ann, sp, lo, hi, below_too, end_face_mm)] = maybe
    if cls == DISC and lowest == "L5-S1":
        below = codes[:, hi:, :]
        below[envelope[:, hi:, :]] = CODE_NOT_DISC
    if end_body_mm > 0 and cls == DISC:
        codes[beyond_end_discs(inst, sp, end_body_mm)] = CODE_BODY
    if fill_between:
        gap_mm = MAX_DISC_GAP_MM if cls == BODY else MAX_BODY_GAP_MM
        margin = disc_fill_margin_mm if cls == BODY else 0.0
        filled = between_consecutive(inst, sp, gap_mm, margin)
        codes[filled] = CODE_DISC if cls == BODY else CODE_BODY
    codes[ann] = CODE_BODY if cls == BODY else CODE_DISC
    return codes


def _column_envelope(ann: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """AP / lateral envelope of the column (bool, shape of ``ann``): the annotated mask
    projected along SI, widened by :data:`COLUMN_MARGIN_MM`; the same in every SI row."""
    from scipy import ndimage

    proj = ann.any(axis=1)  # (slice, AP)
    d2 = ndimage.distance_transform_edt(~proj, sampling=(spacing_mm[0], spacing_mm[2]))
    return np.broadcast_to((d2 <= COLUMN_MARGIN_MM)[:, None, :], ann.shape)


def _band_codes(
    ann_band: np.ndarray, spacing_mm: tuple[float, float, float], cls: int
) -> np.ndarray:
    """Codes of the trusted band's rows (``ann_band``: the annotated voxels of those rows):
    "not the annotated class" near an annotated voxel (within :data:`DISC_NEAR_BODY_MM` of
    a body, :data:`BODY_NEAR_DISC_MM` of a disc), background farther away."""
    from scipy import ndimage

    # distance (mm) of every voxel of the band to the nearest annotated voxel
    d3 = ndimage.distance_transform_edt(~ann_band, sampling=spacing_mm)
    near = DISC_NEAR_BODY_MM if cls == BODY else BODY_NEAR_DISC_MM
    maybe = CODE_NOT_BODY if cls == BODY else CODE_NOT_DISC
    return np.where(d3 <= near, maybe, CODE_BG)


def _end_faces(
    codes: np.ndarray,
    ann: np.ndarray,
    spacing_mm: tuple[float, float, float],
    lo: int,
    hi: int,
    below_too: bool,
    end_face_mm: float,
) -> np.ndarray:
    """Still-unknown voxels within ``end_face_mm`` of the annotated structures above the
    trusted band ``[lo, hi)`` (and below it when ``below_too``): bool, shape of ``codes``."""
    from scipy import ndimage

    outside = np.zeros(ann.shape[1], dtype=bool)
    outside[:lo] = True
    if below_too:
        outside[hi:] = True
    d_all = ndimage.distance_transform_edt(~ann, sampling=spacing_mm)
    return (d_all <= end_face_mm) & outside[None, :, None] & (codes == CODE_UNKNOWN)


def full_codes(semantic: np.ndarray) -> np.ndarray:
    """Loss codes for a fully labelled semantic mask (synthetic): code = class id."""
    return np.asarray(semantic, dtype=np.uint8)


__all__ = [
    "BODY_NEAR_DISC_MM",
    "CODE_ALLOWED",
    "CODE_BG",
    "CODE_BODY",
    "CODE_DISC",
    "CODE_NOT_BODY",
    "CODE_NOT_DISC",
    "CODE_UNKNOWN",
    "COLUMN_MARGIN_MM",
    "DISC_FILL_MARGIN_MM",
    "DISC_NEAR_BODY_MM",
    "END_BODY_MM",
    "END_BODY_RIM_MM",
    "END_FACE_MM",
    "MAX_BODY_GAP_MM",
    "MAX_DISC_GAP_MM",
    "allowed_table",
    "beyond_end_discs",
    "between_consecutive",
    "centroid_rows",
    "full_codes",
    "target_codes",
    "trusted_band",
]
