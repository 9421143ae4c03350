"""Reader for ``../shared/data/real``-style manifests: public annotated sagittal spine MRI.

The folder (see its README) holds NIfTI scans with **partial** expert masks:

* ``VB1``, ``VB2``, ``VB3`` — vertebral *bodies* only (no discs, no posterior elements);
  levels T11-L5 (VB2), L1-L5 (VB3), unknown (VB1: ``unknown_k`` names);
* ``IVD`` — intervertebral discs only, L1-L2 .. L5-S1.

Everything here works in the package's canonical voxel order ``[slice, SI, AP]``
(``spinecensus.io``; the files are stored ``(I, P, R)`` and ``load_scan``/``load_mask``
reorient them from the affine).  Our semantic class 1 ("vertebra") is the vertebral body
only, exactly what the VB masks cover, so VB masks are direct class-1 ground truth.

Partial labels are carried explicitly:

* :attr:`RealSample.labeled_classes` — the semantic classes the mask annotates
  (``{1}`` for VB*, ``{2}`` for IVD);
* :func:`target_codes` — a per-voxel code telling the loss which classes a voxel *may* be
  (see :data:`CODE_ALLOWED`), including a "trusted band" along the spine outside which the
  mask says nothing (the masks annotate only some levels: T10 or S1 are unlabelled but are
  vertebrae in our schema).

Subjects are split into training / validation by *patient group* (:func:`split_subjects`):
never slices of one subject, nor two exams of one patient, on both sides.

MRI augmentations (:func:`augment_volume`, :func:`random_rotation_grid`) are seeded numpy /
torch operations on whole volumes or batches (no Python loop over voxels or slices).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.io import InputError, Scan, atomic_path, load_mask, load_scan

#: default location relative to the repository root (never copied into the repository)
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"

BODY, DISC = 1, 2

#: semantic classes each dataset annotates (by the ``structure`` field of its labels JSON)
STRUCTURE_CLASS: dict[str, int] = {"vertebral_body": BODY, "intervertebral_disc": DISC}

#: exams that the data README lists as probable repeats of one patient (VB1, by exam name
#: and geometry, different sequences); they must land on the same side of the split
SAME_PATIENT: dict[str, str] = {
    "AKa3": "AKa",
    "AKa4": "AKa",
    "AKs6": "AKs",
    "AKs7": "AKs",
    "AKs8": "AKs",
    "DzZ_T1": "DzZ",
    "DzZ_T2": "DzZ",
}

# --------------------------------------------------------------------------- loss codes
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


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class RealSample:
    """One annotated scan of the manifest (files are read lazily by :meth:`load`).

    Attributes:
        dataset: ``VB1`` / ``VB2`` / ``VB3`` / ``IVD``.
        subject: subject id within the dataset (``"07"``).
        key: ``"<dataset>_<subject>"``, unique over the manifest.
        group: patient group for the split (``"<dataset>_<patient>"``; repeats share one).
        image, mask, labels: absolute paths.
        labeled_classes: semantic classes the mask annotates (``{1}`` body, ``{2}`` disc).
        level_names: instance id -> level name (``"L3"``, ``"L4-L5"``; ``unknown_k`` for VB1).
        levels_known: False when the names are placeholders (VB1).
        mapping: how certain the names are (labels JSON ``mapping``).
        spacing_mm: stored-order spacing from the manifest (informative; the loaded
            :class:`~spinecensus.io.Scan` carries the canonical spacing).
    """

    dataset: str
    subject: str
    key: str
    group: str
    image: Path
    mask: Path
    labels: Path
    labeled_classes: frozenset[int]
    level_names: dict[int, str] = field(hash=False, compare=False)
    levels_known: bool = True
    mapping: str = ""
    spacing_mm: tuple[float, ...] = ()

    def load(self) -> LoadedSample:
        """Read image and mask in canonical order ``[slice, SI, AP]``."""
        scan = load_scan(self.image)
        inst = load_mask(self.mask)
        if inst.data.shape != scan.data.shape:
            raise InputError(
                self.mask, f"mask shape {inst.data.shape} != image shape {scan.data.shape}"
            )
        instances = np.asarray(inst.data).astype(np.uint16)
        cls = next(iter(self.labeled_classes))
        semantic = np.where(instances > 0, cls, 0).astype(np.uint8)
        return LoadedSample(self, scan, instances, semantic)


@dataclass
class LoadedSample:
    """A :class:`RealSample` in memory, canonical order ``[slice, SI, AP]``.

    ``semantic`` holds our class ids (1 body, 2 disc) for the annotated class only.
    """

    meta: RealSample
    scan: Scan
    instances: np.ndarray
    semantic: np.ndarray

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.scan.spacing_mm


def _patient(dataset: str, subject: str, notes: list[str]) -> str:
    exam = None
    for note in notes:
        if note.startswith("exam name"):
            exam = note.split(":", 1)[1].strip()
    if exam is not None:
        return f"{dataset}_{SAME_PATIENT.get(exam, exam)}"
    return f"{dataset}_{subject}"


def load_manifest(root: str | os.PathLike[str] = DEFAULT_ROOT) -> list[RealSample]:
    """Read ``root/manifest.tsv`` and the per-subject labels JSON.

    Raises :class:`InputError` when the manifest is missing or a row names no file.
    """
    root = Path(root).resolve()
    man = root / "manifest.tsv"
    if not man.exists():
        raise InputError(man, "manifest not found (is ../shared/data/real present?)")
    out: list[RealSample] = []
    with man.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            try:
                image, mask, lab = (root / row[k] for k in ("image", "mask", "labels"))
                dataset, subject = row["dataset"], row["subject"]
            except KeyError as exc:
                raise InputError(man, f"missing column {exc}") from None
            for p in (image, mask, lab):
                if not p.exists():
                    raise InputError(p, f"listed in {man.name} but missing")
            meta = json.loads(lab.read_text())
            structure = meta.get("structure", "")
            if structure not in STRUCTURE_CLASS:
                raise InputError(lab, f"unknown structure {structure!r}")
            names = {int(k): str(v) for k, v in meta["labels"].items()}
            out.append(
                RealSample(
                    dataset=dataset,
                    subject=subject,
                    key=f"{dataset}_{subject}",
                    group=_patient(dataset, subject, list(meta.get("notes", []))),
                    image=image,
                    mask=mask,
                    labels=lab,
                    labeled_classes=frozenset({STRUCTURE_CLASS[structure]}),
                    level_names=names,
                    levels_known=meta.get("mapping") != "unknown"
                    and not any(n.startswith("unknown") for n in names.values()),
                    mapping=str(meta.get("mapping", "")),
                    spacing_mm=tuple(float(s) for s in row.get("spacing_mm", "").split("x") if s),
                )
            )
    return out


def available(root: str | os.PathLike[str] = DEFAULT_ROOT) -> bool:
    """True when the real-data folder (with its manifest) is present."""
    return (Path(root) / "manifest.tsv").exists()


# --------------------------------------------------------------------------- split


def split_subjects(
    samples: list[RealSample], val_fraction: float = 0.34, seed: int = 0, fold: int = 0
) -> tuple[list[RealSample], list[RealSample]]:
    """Subject-level (patient-group-level) train / validation split, stratified by dataset.

    Within each dataset the patient groups are shuffled with ``seed`` and cut into
    :func:`n_folds` consecutive blocks of ``max(1, round(val_fraction * n_groups))`` groups
    (the last block takes the rest; none when a dataset has a single group).  Block
    ``fold`` is the validation side, so the folds ``0 .. n_folds - 1`` together validate
    every subject exactly once (cross-validation); fold 0 is the historical split.  All
    exams of one group land on one side, so no patient contributes slices to both training
    and validation.
    """
    k = n_folds(val_fraction)
    if not 0 <= fold < k:
        raise ValueError(f"fold {fold} outside 0..{k - 1} (val_fraction {val_fraction})")
    rng = np.random.default_rng(seed)
    train: list[RealSample] = []
    val: list[RealSample] = []
    for dataset in sorted({s.dataset for s in samples}):
        groups = sorted({s.group for s in samples if s.dataset == dataset})
        order = rng.permutation(len(groups))
        n_val = 0 if len(groups) < 2 else max(1, int(round(val_fraction * len(groups))))
        block = order[fold * n_val : (fold + 1) * n_val if fold < k - 1 else len(groups)]
        val_groups = {groups[i] for i in block}
        for s in samples:
            if s.dataset == dataset:
                (val if s.group in val_groups else train).append(s)
    return train, val


def n_folds(val_fraction: float) -> int:
    """Number of cross-validation folds that a validation share ``val_fraction`` implies
    (``round(1 / val_fraction)``, at least 2): 0.34 -> 3."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    return max(2, int(round(1 / val_fraction)))


def check_split(train: list[RealSample], val: list[RealSample]) -> None:
    """Raise ``ValueError`` if a subject or a patient group is on both sides."""
    both = {s.group for s in train} & {s.group for s in val}
    if both:
        raise ValueError(f"patient groups on both sides of the split: {sorted(both)}")


# --------------------------------------------------------------------------- targets


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
    from scipy import ndimage

    inst = np.asarray(sample.instances)
    sp = sample.spacing_mm
    ann = inst > 0
    (cls,) = tuple(sample.meta.labeled_classes)
    lo, hi = trusted_band(inst)
    names = sample.meta.level_names
    lowest = names[max(names)] if names else ""  # the most caudal annotated level
    # AP / lateral envelope of the column: the annotated mask projected along SI
    proj = ann.any(axis=1)  # (slice, AP)
    d2 = ndimage.distance_transform_edt(~proj, sampling=(sp[0], sp[2]))
    envelope = np.broadcast_to((d2 <= COLUMN_MARGIN_MM)[:, None, :], inst.shape)
    codes = np.where(envelope, CODE_UNKNOWN, CODE_BG).astype(np.uint8)
    # distance (mm) of every voxel of the band to the nearest annotated voxel
    band = (slice(None), slice(lo, hi), slice(None))
    d3 = ndimage.distance_transform_edt(~ann[band], sampling=sp)
    near = DISC_NEAR_BODY_MM if cls == BODY else BODY_NEAR_DISC_MM
    maybe = CODE_NOT_BODY if cls == BODY else CODE_NOT_DISC
    codes[band] = np.where(d3 <= near, maybe, CODE_BG)
    if end_face_mm > 0:
        outside = np.zeros(inst.shape[1], dtype=bool)
        outside[:lo] = True
        # below the last body only where it is known to be a free vertebra: a body-only mask
        # whose levels are unknown (VB1) may end at S1, and below S1 lies fused S2, not a disc
        if cls == DISC or (sample.meta.levels_known and lowest != "S1"):
            outside[hi:] = True
        d_all = ndimage.distance_transform_edt(~ann, sampling=sp)
        face = (d_all <= end_face_mm) & outside[None, :, None] & (codes == CODE_UNKNOWN)
        codes[face] = maybe
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


def full_codes(semantic: np.ndarray) -> np.ndarray:
    """Loss codes for a fully labelled semantic mask (synthetic): code = class id."""
    return np.asarray(semantic, dtype=np.uint8)


# --------------------------------------------------------------------------- augmentation


@dataclass
class AugmentConfig:
    """MRI augmentation strengths (all seeded by the caller's generator).

    Attributes:
        scale: range of a global intensity gain (log-uniform).  A global gain alone is removed
            by the per-volume z-score, so ``slice_gain`` varies it per sagittal slice too.
        slice_gain: +- relative gain per sagittal slice (2-D multi-slice acquisitions vary).
        gamma: +- range of log(gamma) for ``x ** gamma`` on the [0, 1]-scaled volume.
        bias: +- amplitude of a smooth multiplicative bias field ``exp(quadratic)``.
        noise: max Rician noise sigma as a fraction of the volume's 99th percentile.
        rotation_deg: +- in-plane (sagittal) rotation in degrees.
        zoom: +- relative in-plane zoom.
        flip_lr: probability of reversing the left-right slice order.
    """

    scale: tuple[float, float] = (0.7, 1.4)
    slice_gain: float = 0.08
    gamma: float = 0.4
    bias: float = 0.3
    noise: float = 0.05
    rotation_deg: float = 8.0
    zoom: float = 0.1
    flip_lr: float = 0.5

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugmentConfig:
        d = dict(d or {})
        if "scale" in d:
            d["scale"] = tuple(d["scale"])
        return cls(**d)


def augment_volume(
    volume: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> np.ndarray:
    """Intensity augmentation of one canonical volume ``[slice, SI, AP]`` (float32 out).

    In order: global gain and per-slice gain, gamma, smooth bias field (a random quadratic
    in the three normalised coordinates, exponentiated), Rician noise
    (``sqrt((x + n1)^2 + n2^2)``, as magnitude MRI).  Vectorized over the volume.
    """
    cfg = cfg or AugmentConfig()
    v = np.asarray(volume, dtype=np.float32)
    p99 = float(np.percentile(v[:: max(1, v.shape[0] // 8)], 99.0)) or 1.0
    x = np.clip(v / p99, 0.0, None)
    gain = math.exp(rng.uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
    per_slice = 1.0 + rng.uniform(-cfg.slice_gain, cfg.slice_gain, size=(v.shape[0], 1, 1))
    x = x * np.float32(gain) * per_slice.astype(np.float32)
    gamma = math.exp(rng.uniform(-cfg.gamma, cfg.gamma))
    x = np.power(x, np.float32(gamma))
    if cfg.bias > 0:
        # smooth field: quadratic polynomial of normalised coordinates in [-1, 1]
        axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in v.shape]
        a = rng.uniform(-cfg.bias, cfg.bias, size=(3, 2)).astype(np.float32)
        terms = [a[i, 0] * ax + a[i, 1] * (ax * ax - 1.0 / 3.0) for i, ax in enumerate(axes)]
        field_ = terms[0][:, None, None] + terms[1][None, :, None] + terms[2][None, None, :]
        x = x * np.exp(field_)
    sigma = rng.uniform(0.0, cfg.noise)
    if sigma > 0:
        n1 = rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
        n2 = rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
        x = np.sqrt((x + n1) ** 2 + n2**2)
    return (x * np.float32(p99)).astype(np.float32)


def random_rotation_grid(
    n: int, size: tuple[int, int], rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> Any:
    """Sampling grids ``(n, H, W, 2)`` for ``torch.nn.functional.grid_sample``: a random
    in-plane rotation (+- ``rotation_deg``) and zoom (+- ``zoom``) per batch element."""
    import torch
    import torch.nn.functional as F

    cfg = cfg or AugmentConfig()
    ang = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, size=n))
    zoom = 1.0 + rng.uniform(-cfg.zoom, cfg.zoom, size=n)
    h, w = size
    # rotation in physical proportions: normalised coords scale differently along H and W
    c, s = np.cos(ang) / zoom, np.sin(ang) / zoom
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = c
    theta[:, 0, 1] = -s * h / w
    theta[:, 1, 0] = s * w / h
    theta[:, 1, 1] = c
    return F.affine_grid(torch.from_numpy(theta), [n, 1, h, w], align_corners=False)


# --------------------------------------------------------------------------- sample sheet


def write_sample_sheet(
    out: str | os.PathLike[str],
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    relative: bool = True,
) -> Path:
    """Write a cohort sample sheet (TSV) for the pipeline from the real-data manifest.

    Columns: ``subject`` (``<dataset>_<subject>``), ``image`` (path relative to the sheet's
    folder when ``relative``, else absolute; the data are never copied) and ``dataset``
    (the pipeline treats extra columns as covariates: prevalence is then stratified by
    source dataset).  The datasets carry no sex/age, so no such covariates are written.
    """
    out = Path(out)
    samples = load_manifest(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()
    with atomic_path(out) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["subject", "image", "dataset"])
        for s in samples:
            img = Path(os.path.relpath(s.image, base)) if relative else s.image
            w.writerow([s.key, img.as_posix(), s.dataset])
    return out


def _cmd_sheet(args: argparse.Namespace) -> int:
    path = write_sample_sheet(args.out, args.root, relative=not args.absolute)
    print(f"wrote {path}")
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "real-sheet", help="write a pipeline sample sheet for the public annotated real MRI"
    )
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="folder with manifest.tsv")
    p.add_argument("--out", required=True, help="TSV to write (subject, image, ...)")
    p.add_argument("--absolute", action="store_true", help="absolute image paths")
    p.set_defaults(func=_cmd_sheet)


__all__ = [
    "AugmentConfig",
    "LoadedSample",
    "RealSample",
    "allowed_table",
    "augment_volume",
    "available",
    "check_split",
    "full_codes",
    "load_manifest",
    "random_rotation_grid",
    "n_folds",
    "split_subjects",
    "beyond_end_discs",
    "target_codes",
    "between_consecutive",
    "trusted_band",
    "write_sample_sheet",
]
