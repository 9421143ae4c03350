"""Semantic mask -> ordered vertebra and disc instances, by planes through the discs.

This is the thesis's splitting method (Gliwa 2023), written fully vectorized; each step is
a module of ``spinecensus.split``:

1. Disc connected components (``cc3d``, 26-connectivity; ``split.discs``).  Components
   below ``min_disc_voxels`` are stray fragments (real masks carry 1-7 voxel bits): they do
   not define planes; their voxels join the nearest kept disc so that the instances still
   cover the mask.
2. Plane fitting (``split.discs``): per disc, centroid and second moments from
   ``np.bincount`` over the disc voxels' coordinates **in mm** (so anisotropic spacing
   does not tilt the planes), then one batched ``np.linalg.eigh``: the eigenvector of the
   smallest eigenvalue (the disc's thinnest direction) is the plane normal.
3. Ordering (``split.ordering``) along the spine from a curve through the disc centroids,
   not from an array axis: the longest path (diameter) of the centroids' minimum spanning
   tree is the spine curve; every centroid is sorted by its arc-length position on it.
   The curve end lying further along ``cranial_direction`` is the top.  Normals are
   flipped to point caudally along the local curve tangent.  Nothing depends on which
   array axis is which, so flips/permutations of the axes give the same instances (the
   caller passes the cranial direction in the array's own axes; canonical order:
   ``(0, -1, 0)``).
4. Slab assignment (``split.slabs``): vertebra voxels (only their ``np.nonzero``
   coordinates, never full grids) are assigned to slabs with ONE matrix product against
   ``[centroids | normals]``: it yields both the squared distances to every disc centroid
   and the signed distances to every disc plane.  A voxel is judged only against its
   *neighbouring* planes: the nearest disc centroid ``j`` says which two slabs are
   candidates and the sign of plane ``j`` picks one (then one check against the other
   neighbouring plane).  A far, tilted plane (a cervical disc in a strongly bent spine)
   therefore never cuts lumbar voxels.
5. Slabs with (almost) no vertebra voxels between two discs mean one disc was cut into
   two components: those are merged (moments are additive) and the planes refitted.
6. Instance ids run cranio-caudally, vertebrae and discs interleaved as they occur.

Field-of-view edges (small-FOV scans, crops): a disc component on an array face across
its own thin direction and under half its neighbour's size is a disc *cut* by the FOV.
It is kept (from ``fragment_voxels // 5`` voxels), borrows the neighbouring disc's normal
(its own thinnest direction is the cut) and splits at its outer edge, so only voxels
beyond the visible disc form the cut vertebra there.  End slabs under ``fragment_voxels``
voxels are stray voxels and join the neighbouring vertebra, unless they lie on the array
border beyond the end disc's far surface (a vertebra cut by the FOV).  The end
instances' piece count is not judged when they touch the border.  On synthetic crops
(``crop_fov``, V = 5-15) every whole vertebra is recovered exactly; in a few percent of
crops a sliver of a few voxels that the ground truth keeps as its own instance is merged
into its neighbour.

Validity (``split.validity``, the thesis's criterion, reported, never raised): every
vertebra instance is one connected piece (pieces under ``fragment_voxels``, and slivers
under 5 % of the instance's largest piece, ignored) lying
between two consecutive discs, and no disc touches two non-adjacent vertebrae.  A mask
without discs is "unsplittable" (``valid=False``, no instances) rather than an exception.

Axes: the input is any 3-D array with ``spacing_mm`` in the same axis order; the package
calls it with canonical order (slice, superior->inferior, anterior->posterior).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinecensus.io import InputError
from spinecensus.split.discs import DiscComponents, DiscPlane, find_disc_components
from spinecensus.split.ordering import OrderedPlanes, ordered_disc_planes
from spinecensus.split.slabs import absorb_stray_end_slabs, first_empty_inner_slab, slabs_of
from spinecensus.split.validity import check_validity
from spinecensus.split.voxels import (
    BoxFrame,
    bounding_box,
    connected_components,
    disc_and_vertebra_voxels,
    instance_boxes,
    unravel,
)

#: cranial direction in canonical array axes: axis 1 runs superior -> inferior
CANONICAL_CRANIAL: tuple[float, float, float] = (0.0, -1.0, 0.0)
UNSPLITTABLE_NO_DISCS = "unsplittable: no intervertebral discs found"
UNSPLITTABLE_EMPTY = "unsplittable: empty mask (no vertebra or disc voxels)"
#: a spine has at most 24 discs (C2-C3 .. L6-S1); far more disc components means the mask is
#: not a spine segmentation (e.g. a failed model on a non-spine image).  Refusing early also
#: bounds the work: the merge loop below refits planes once per merge.
MAX_DISC_COMPONENTS = 48


@dataclass
class SplitResult:
    """Outcome of :func:`split_instances`.

    Attributes:
        instances: uint16 array shaped like the input; ids ``1..N`` cranio-caudal,
            vertebrae and discs interleaved as they occur, 0 background.
        kinds: ``kinds[id - 1]`` is ``"vertebra"`` or ``"disc"``.
        valid: the thesis's validity (see module docstring).
        invalid_reason: why not valid (several reasons joined by ``"; "``), else None.
        voxel_counts: ``voxel_counts[id - 1]`` voxels per instance.
        centroids_mm: ``(N, 3)`` centroid per instance in mm, array axes * spacing
            (voxel index times spacing, no origin), same axis order as the input.
        disc_planes: one :class:`DiscPlane` per disc instance, cranial first.
        spacing_mm: the spacing used.
        n_fragment_voxels: voxels of stray disc fragments merged into the nearest disc.
        n_crossing_voxels: vertebra voxels lying on the wrong side of a neighbouring plane
            even after the nearest-disc rule (a sign of a bad mask).
        boxes: ``boxes[id - 1]`` the instance's bounding box (slices into ``instances``,
            as ``scipy.ndimage.find_objects`` gives them), for the measurement.
    """

    instances: np.ndarray
    kinds: list[str]
    valid: bool
    invalid_reason: str | None
    voxel_counts: list[int] = field(default_factory=list)
    centroids_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    disc_planes: list[DiscPlane] = field(default_factory=list)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    n_fragment_voxels: int = 0
    n_crossing_voxels: int = 0
    boxes: list[tuple[slice, ...] | None] = field(default_factory=list)

    @property
    def n_instances(self) -> int:
        return len(self.kinds)

    @property
    def n_vertebrae(self) -> int:
        return sum(k == "vertebra" for k in self.kinds)

    @property
    def n_discs(self) -> int:
        return sum(k == "disc" for k in self.kinds)

    def ids_of(self, kind: str) -> list[int]:
        """Instance ids (1-based) of one kind, cranial first."""
        return [i + 1 for i, k in enumerate(self.kinds) if k == kind]


def _empty_result(shape: tuple[int, ...], spacing: tuple[float, float, float], reason: str):
    return SplitResult(
        instances=np.zeros(shape, dtype=np.uint16),
        kinds=[],
        valid=False,
        invalid_reason=reason,
        spacing_mm=spacing,
    )


def split_instances(
    semantic: np.ndarray,
    spacing_mm: tuple[float, float, float] | np.ndarray = (1.0, 1.0, 1.0),
    min_disc_voxels: int | None = None,
    *,
    cranial_direction: tuple[float, float, float] | np.ndarray = CANONICAL_CRANIAL,
    fragment_voxels: int = 10,
    min_contact_faces: int = 4,
) -> SplitResult:
    """Split a semantic mask (0 bg, 1 vertebral body, 2 disc) into ordered instances.

    Args:
        semantic: 3-D integer array; canonical order in the package (any order works if
            ``spacing_mm`` and ``cranial_direction`` use the same axes).
        spacing_mm: voxel size in mm per array axis.
        min_disc_voxels: disc components below this are fragments, not discs.  Default:
            ``max(fragment_voxels, 10 % of the median size of the non-fragment disc
            components)``.
        cranial_direction: vector, in array axes, pointing towards the head.
        fragment_voxels: pieces below this many voxels are stray fragments (ignored by the
            validity check and never an instance of their own).
        min_contact_faces: a disc must share at least this many voxel faces with a
            vertebra to count as touching it (validity check).

    Returns:
        :class:`SplitResult`.  Never raises for a well-typed mask: an empty mask or a
        mask without discs gives ``valid=False`` with an ``"unsplittable: ..."`` reason.

    Raises:
        InputError: not 3-D, non-integer values, labels outside {0, 1, 2}, bad spacing.
    """
    sem, spacing3 = _checked_mask(semantic, spacing_mm)
    box = bounding_box(sem > 0) if sem.size else None
    if box is None:
        return _empty_result(sem.shape, spacing3, UNSPLITTABLE_EMPTY)
    crop = np.ascontiguousarray(sem[box])  # flat indices below are into this box
    sp = np.asarray(spacing3, dtype=np.float64)
    frame = BoxFrame.of(box, crop.shape, sem.shape, sp)
    cranial = np.asarray(cranial_direction, dtype=np.float64) * sp  # index axes -> mm axes
    cranial = cranial / max(np.linalg.norm(cranial), 1e-12)

    # --- 1. disc components -------------------------------------------------------
    disc_cc, n_cc = connected_components(crop == 2)
    if n_cc == 0:
        return _empty_result(sem.shape, spacing3, UNSPLITTABLE_NO_DISCS)
    d_lin, v_lin = disc_and_vertebra_voxels(crop)
    v_idx = unravel(v_lin, crop.shape)
    discs = find_disc_components(disc_cc, n_cc, d_lin, frame, fragment_voxels, min_disc_voxels)
    unsplittable = _implausible_discs(discs.keep)
    if unsplittable:
        return _empty_result(sem.shape, spacing3, unsplittable)
    v_mm = frame.to_mm(v_idx)

    # --- 2-5. planes, order, slab assignment; merge discs with an empty slab between -----
    group, planes, slab, n_bad, slab_cnt = _planes_merging_split_discs(
        discs, v_mm, sp, cranial, fragment_voxels
    )
    v_border = frame.on_border(v_idx).any(axis=1) if v_mm.shape[1] else np.zeros(0, dtype=bool)
    if v_mm.shape[1]:
        slab_cnt = absorb_stray_end_slabs(slab, slab_cnt, v_mm, v_border, planes, fragment_voxels)

    # --- 6. instance ids: V0? D0 V1? D1 ... D(K-1) VK? ------------------------------------
    seq_id, kinds = _instance_sequence(slab_cnt)
    inst_crop = np.zeros(crop.shape, dtype=np.uint16)
    ids_v = seq_id[2 * slab] if v_mm.shape[1] else np.zeros(0, dtype=np.intp)
    if v_mm.shape[1]:
        inst_crop.reshape(-1)[v_lin] = ids_v
    ids_d, n_frag_vox = _disc_instance_ids(discs, group, planes, seq_id)
    inst_crop.reshape(-1)[discs.lin] = ids_d
    instances = np.zeros(sem.shape, dtype=np.uint16)
    instances[box] = inst_crop

    reasons = _validity_reasons(
        inst_crop, kinds, ids_v, v_border, v_idx, discs, n_bad, fragment_voxels, min_contact_faces
    )
    counts, centroids, disc_planes = _instance_geometry(
        ids_v, v_mm, ids_d, discs.mm, len(kinds), planes, frame.shift_mm
    )
    return SplitResult(
        instances=instances,
        kinds=kinds,
        valid=not reasons,
        invalid_reason="; ".join(reasons) if reasons else None,
        voxel_counts=counts,
        centroids_mm=centroids,
        disc_planes=disc_planes,
        boxes=instance_boxes([(ids_v, v_idx), (ids_d, discs.idx)], len(kinds), box),
        spacing_mm=spacing3,
        n_fragment_voxels=n_frag_vox,
        n_crossing_voxels=n_bad,
    )


def _checked_mask(
    semantic: np.ndarray, spacing_mm: tuple[float, float, float] | np.ndarray
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The mask as an integer array and the spacing as 3 floats (mm); InputError when the
    mask is not 3-D, holds non-integer values or labels outside {0, 1, 2}, or the spacing
    is not 3 positive finite values.  An empty (size 0) mask passes unchecked."""
    sem = np.asarray(semantic)
    if sem.ndim != 3:
        raise InputError(None, f"semantic mask must be 3-D, got shape {sem.shape}")
    spacing = tuple(float(s) for s in np.asarray(spacing_mm, dtype=float).ravel())
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise InputError(None, f"voxel spacing must be 3 positive finite mm, got {spacing}")
    if sem.dtype == bool:
        sem = sem.astype(np.uint8)
    if not np.issubdtype(sem.dtype, np.integer):
        if not np.all(np.isfinite(sem)) or not np.array_equal(np.rint(sem), sem):
            raise InputError(None, "semantic mask contains non-integer values")
        sem = sem.astype(np.int16)
    spacing3: tuple[float, float, float] = (spacing[0], spacing[1], spacing[2])
    if sem.size == 0:
        return sem, spacing3
    lo_v, hi_v = int(sem.min()), int(sem.max())
    if lo_v < 0 or hi_v > 2:
        raise InputError(
            None, f"semantic mask labels must be 0 (bg), 1 (vertebra), 2 (disc); got {lo_v}..{hi_v}"
        )
    return sem, spacing3


def _implausible_discs(keep: np.ndarray) -> str | None:
    """The unsplittable verdict when no disc component is kept or far too many are."""
    if not np.any(keep):
        return UNSPLITTABLE_NO_DISCS + " (only fragments)"
    if int(keep.sum()) > MAX_DISC_COMPONENTS:
        return (
            f"unsplittable: implausible mask with {int(keep.sum())} disc components "
            f"(a spine has at most 24 discs; not a spine segmentation?)"
        )
    return None


def _planes_merging_split_discs(
    discs: DiscComponents,
    v_mm: np.ndarray,
    sp: np.ndarray,
    cranial: np.ndarray,
    fragment_voxels: int,
) -> tuple[np.ndarray, OrderedPlanes, np.ndarray, int, np.ndarray]:
    """Fit, order and apply the disc planes; merge two discs with an (almost) empty slab
    between them (one disc cut into two components; moments are additive) and refit.

    Returns the disc group per component (numbered cranio-caudally, -1 = fragment), the
    ordered planes, the slab of each vertebra voxel, the crossing-voxel count and the
    voxels per slab.
    """
    # group id per component: kept components are discs; merging may join groups later
    group = np.full(len(discs.keep), -1, dtype=np.intp)
    group[discs.keep] = np.arange(int(discs.keep.sum()))
    for _ in range(int(discs.keep.sum())):
        planes = ordered_disc_planes(discs, group, sp, cranial)
        slab, n_bad, slab_cnt = slabs_of(v_mm, planes)
        if len(planes) < 2 or v_mm.shape[1] == 0:
            break
        s = first_empty_inner_slab(slab_cnt, fragment_voxels)
        if s is None:
            break
        # merge disc s-1 and s for the first tiny inner slab (one at a time: refits move planes)
        group[group == s] = s - 1
        group[group > s] -= 1
    return group, planes, slab, n_bad, slab_cnt


def _instance_sequence(slab_cnt: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """1-based instance id per sequence position (0 where absent) and the kinds in order.

    Sequence position: slab s -> 2s, disc j -> 2j + 1; empty slabs get no id.
    """
    k = len(slab_cnt) - 1
    present = np.zeros(2 * k + 1, dtype=bool)
    present[0::2] = slab_cnt > 0
    present[1::2] = True
    seq_id = np.cumsum(present) * present  # 1-based ids, 0 where absent
    kinds = ["vertebra" if p % 2 == 0 else "disc" for p in np.flatnonzero(present)]
    return seq_id, kinds


def _disc_instance_ids(
    discs: DiscComponents, group: np.ndarray, planes: OrderedPlanes, seq_id: np.ndarray
) -> tuple[np.ndarray, int]:
    """Instance id of each disc voxel and the number of fragment voxels: kept components
    by group; fragments to the nearest disc centroid."""
    cnt, s1 = discs.count, discs.sum_mm
    comp_disc = group.copy()
    frag = comp_disc < 0
    n_frag_vox = int(cnt[frag].sum())
    if np.any(frag):
        fc = s1[frag] / cnt[frag, None]
        comp_disc[frag] = np.argmin(((fc[:, None, :] - planes.centroid[None]) ** 2).sum(-1), axis=1)
    return seq_id[2 * comp_disc[discs.component] + 1], n_frag_vox


def _validity_reasons(
    inst_crop: np.ndarray,
    kinds: list[str],
    ids_v: np.ndarray,
    v_border: np.ndarray,
    v_idx: tuple[np.ndarray, ...],
    discs: DiscComponents,
    n_bad: int,
    fragment_voxels: int,
    min_contact_faces: int,
) -> list[str]:
    """:func:`check_validity` of the split (box-sized ``inst_crop``), plus vertebra voxels
    beyond a neighbouring plane.  The end vertebrae may be cut by the FOV: their pieces are
    not judged when on the border (``v_border``, per vertebra voxel)."""
    n_inst = len(kinds)
    border_ids = set(np.unique(ids_v[v_border]).tolist()) & {1, n_inst} if len(ids_v) else set()
    reasons = check_validity(
        inst_crop, kinds, fragment_voxels, min_contact_faces, border_ids, v_idx, discs.idx
    )
    if n_bad > max(fragment_voxels, 0.001 * max(len(ids_v), 1)):
        reasons.append(f"{n_bad} vertebra voxels lie beyond a neighbouring disc plane")
    return reasons


def _instance_geometry(
    ids_v: np.ndarray,
    v_mm: np.ndarray,
    ids_d: np.ndarray,
    d_mm: np.ndarray,
    n_inst: int,
    planes: OrderedPlanes,
    shift: np.ndarray,
) -> tuple[list[int], np.ndarray, list[DiscPlane]]:
    """Voxels and centroid (array-index mm) per instance, and the disc planes, from
    bincounts over the already known voxel lists (``shift``: box-centred -> index mm)."""
    m1 = n_inst + 1
    icnt = (np.bincount(ids_v, minlength=m1) + np.bincount(ids_d, minlength=m1))[1:]
    isum = np.stack(
        [
            (np.bincount(ids_v, v_mm[a], minlength=m1) + np.bincount(ids_d, d_mm[a], minlength=m1))[
                1:
            ]
            for a in range(3)
        ],
        axis=1,
    )
    centroids = isum / np.maximum(icnt, 1)[:, None] + shift[None, :]
    c, n = planes.centroid, planes.normal
    disc_planes = [
        DiscPlane(
            centroid_mm=tuple(float(x) for x in c[j] + shift),  # type: ignore[arg-type]
            normal=tuple(float(x) for x in n[j]),  # type: ignore[arg-type]
            voxel_count=int(planes.count[j]),
            thickness_mm=float(4.0 * planes.sd_normal[j]),
        )
        for j in range(len(planes))
    ]
    return [int(x) for x in icnt], centroids, disc_planes
