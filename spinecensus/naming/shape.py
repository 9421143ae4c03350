"""Instance shapes in mm for the naming rules: height along the spine, the body's height
without narrow processes (the dens), AP depth, volume, taper, and a cut by the field of view.

The count's checks (``naming.origin``: is the top instance C2?; ``naming.sacrum``: is the
lowest disc a sacral remnant?) compare instances by these measures, never by voxel counts
or voxel extents, so that anisotropic spacing (4 mm sagittal slices, 1 mm in plane) does not
change a verdict.  Heights are measured along the *local* spine axis: the mean of the
caudally pointing normals of the discs next to the instance (``SplitResult.disc_planes``),
so a tilted C2 or sacrum is measured along the column, not along an array axis.

Coordinates are ``index * spacing_mm`` (the frame of ``SplitResult.centroids_mm``).  No
measure depends on which array axis is which (the splitter's axis-order equivariance
carries over to the names): depth is the smaller extent across the axis, and a cut by the
field of view is read on the array faces that lie across the spine axis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from spinecensus.split.instances import SplitResult
from spinecensus.split.voxels import connected_components

#: percentiles (of the voxel centres' positions) that bound an extent: a few stray voxels
#: on an instance's surface do not make it taller
EXTENT_PERCENTILES = (0.5, 99.5)
#: the body is the part whose cross-section is at least this fraction of the instance's
#: (90th-percentile) cross-section: C2's dens (6-10 mm across on a 15-17 mm body, at most
#: half its cross-section even on a 3 mm grid) is left out, a waisted body or the waist of
#: a block vertebra (a fifth of its depth) is not
BODY_SECTION_FRACTION = 0.6
#: instances at either end of the column that are measured (the checks look no further)
N_END_INSTANCES = 16


@dataclass(frozen=True)
class Shape:
    """Measures of one instance or of a group of adjacent instances (all in mm / mm3).

    Attributes:
        volume_mm3: voxels x voxel volume (every piece).
        height_mm: extent along the local spine axis of the largest 26-connected piece
            (0.5-99.5 % of its voxel centres plus one voxel's extent along the axis).
        body_height_mm: length along the axis over which the piece's cross-section is at
            least :data:`BODY_SECTION_FRACTION` of its 90th percentile: the body without
            the dens or other narrow parts.
        depth_mm: the smaller of the two principal extents across the axis (4 standard
            deviations): the anterior-posterior depth of a disc or body, which are wider
            than deep (informational).
        taper: mean cross-section of the caudal third of the height over that of the
            cranial third (about 1 for a vertebral body, well under 1 for the sacrum).
        cut_cranially, cut_caudally: the instance reaches the array border at its cranial /
            caudal end (cut by the field of view: its height and taper are not its own).
    """

    volume_mm3: float
    height_mm: float
    body_height_mm: float
    depth_mm: float
    taper: float
    cut_cranially: bool
    cut_caudally: bool


class ShapeReader:
    """Measures instances (or groups of adjacent instances) of one split, on demand.

    The voxels of the first and last :data:`N_END_INSTANCES` instances are gathered once
    (one pass over the volume); each measure is then computed on those lists.  A split
    without voxels or disc planes (built by hand, e.g. in tests) has no shapes:
    :attr:`available` is False and the rules that need shapes are not applied.
    """

    def __init__(self, split: SplitResult):
        self.split = split
        self.spacing = np.asarray(split.spacing_mm, dtype=float)
        self._cache: dict[tuple[int, ...], Shape] = {}
        n = split.n_instances
        inst = np.asarray(split.instances)
        discs = split.ids_of("disc")
        self.available = bool(
            n
            and inst.ndim == 3
            and len(split.disc_planes) == len(discs)
            and len(split.voxel_counts) == n
            and int(inst.max(initial=0)) == n
        )
        if not self.available:
            return
        self._plane_of = {d: k for k, d in enumerate(discs)}
        wanted = np.zeros(n + 1, dtype=bool)
        wanted[1 : N_END_INSTANCES + 1] = True
        wanted[max(1, n - N_END_INSTANCES + 1) :] = True
        lin = np.flatnonzero(wanted[inst.reshape(-1)])
        ids = inst.reshape(-1)[lin]
        order = np.argsort(ids, kind="stable")
        self._lin, self._ids = lin[order], ids[order]
        self._shape = inst.shape
        self._wanted = wanted

    def measured(self, iid: int) -> bool:
        """Whether instance ``iid`` is among those whose voxels were gathered."""
        return self.available and 0 < iid < len(self._wanted) and bool(self._wanted[iid])

    def of(self, ids: int | Iterable[int]) -> Shape:
        """The :class:`Shape` of instance ``ids`` or of the union of several instances."""
        key = (int(ids),) if isinstance(ids, int | np.integer) else tuple(sorted(map(int, ids)))
        if not self.available or not all(self.measured(i) for i in key):
            raise ValueError(f"instances {key} are not measured in this split")
        if key not in self._cache:
            self._cache[key] = self._measure(key)
        return self._cache[key]

    def volume_mm3(self, iid: int) -> float:
        """Volume of any instance (voxel count x voxel volume), measured or not."""
        return float(self.split.voxel_counts[iid - 1]) * float(np.prod(self.spacing))

    # -- internals ------------------------------------------------------------------
    def _voxels(self, key: tuple[int, ...]) -> np.ndarray:
        lo = np.searchsorted(self._ids, key, side="left")
        hi = np.searchsorted(self._ids, key, side="right")
        lin = np.concatenate([self._lin[a:b] for a, b in zip(lo, hi, strict=True)])
        return np.stack(np.unravel_index(lin, self._shape), axis=1)  # (M, 3) indices

    def _axis(self, key: tuple[int, ...]) -> np.ndarray:
        """Mean caudal normal of the discs in or next to the group (unit, mm frame)."""
        near = {d for i in key for d in (i - 1, i, i + 1) if d in self._plane_of}
        if not near:
            near = {next(iter(self._plane_of))}
        normals = np.array([self.split.disc_planes[self._plane_of[d]].normal for d in near])
        normals *= np.sign(normals @ normals[0])[:, None]  # one orientation (caudal)
        axis = normals.mean(axis=0)
        return axis / max(float(np.linalg.norm(axis)), 1e-12)

    def _measure(self, key: tuple[int, ...]) -> Shape:
        idx = self._voxels(key)
        volume = float(len(idx)) * float(np.prod(self.spacing))
        axis = self._axis(key)
        piece = _largest_piece(idx)
        mm = piece * self.spacing
        t = mm @ axis
        step = float(np.abs(axis) @ self.spacing)  # one voxel's extent along the axis
        lo, hi = np.percentile(t, EXTENT_PERCENTILES)
        across = mm - np.outer(mm @ axis, axis)
        across -= across.mean(axis=0)
        spread = np.linalg.eigvalsh(across.T @ across / max(len(across), 1))
        depth = 4.0 * float(np.sqrt(max(spread[1], 0.0)))  # [0] ~ 0: along the axis
        return Shape(
            volume_mm3=volume,
            height_mm=float(hi - lo) + step,
            body_height_mm=_body_height(t, np.abs(axis) * self.spacing),
            depth_mm=depth,
            taper=_taper(t, lo, hi),
            cut_cranially=self._cut_at_end(idx, -axis, step),
            cut_caudally=self._cut_at_end(idx, axis, step),
        )

    def _cut_at_end(self, idx: np.ndarray, direction: np.ndarray, step: float) -> bool:
        """Whether voxels at the group's end in ``direction`` (the caudal axis or its
        opposite) lie on an array face across the spine axis (an array axis within 60
        degrees of it): the faces that cut the column's ends.  The faces along the column
        (a narrow lateral field of view cuts the alae) do not count."""
        t = (idx * self.spacing) @ direction
        end = idx[t >= t.max() - 2.0 * step]
        for ax in np.flatnonzero(np.abs(direction) >= 0.5):
            if np.any(end[:, ax] == 0) or np.any(end[:, ax] == self._shape[ax] - 1):
                return True
        return False


def _largest_piece(idx: np.ndarray) -> np.ndarray:
    """The voxel indices (M, 3) of the largest 26-connected piece among ``idx``."""
    lo = idx.min(axis=0)
    rel = idx - lo
    box = np.zeros(tuple(int(x) + 1 for x in rel.max(axis=0)), dtype=np.uint8)
    box[rel[:, 0], rel[:, 1], rel[:, 2]] = 1
    comps, n = connected_components(box)
    if n <= 1:
        return idx
    lab = comps[rel[:, 0], rel[:, 1], rel[:, 2]]
    return idx[lab == int(np.argmax(np.bincount(lab)[1:]) + 1)]


def _body_height(t: np.ndarray, widths: np.ndarray) -> float:
    """Height (mm) of the body: the length along the axis over which the cross-section is
    at least :data:`BODY_SECTION_FRACTION` of its 90th percentile; narrow parts (C2's dens)
    do not count.

    ``t``: voxel centres along the axis (mm); ``widths``: each voxel's extent along the
    axis per array axis (``|axis| * spacing``).  The cross-section is the area of the
    voxelised solid cut by a plane across the axis: the centres' histogram (fine bins)
    convolved with the voxel's projection (three boxes).  Binning the centres alone aliases
    on a tilted axis (bins alternately empty and double).
    """
    delta = float(widths.sum()) / 16.0
    hist = np.bincount(np.floor((t - t.min()) / max(delta, 1e-9)).astype(np.intp))
    section = hist.astype(float)
    for width in widths:
        n = max(1, round(float(width) / max(delta, 1e-9)))
        section = np.convolve(section, np.full(n, 1.0 / n))
    full = section >= BODY_SECTION_FRACTION * float(np.percentile(section, 90))
    return float(np.count_nonzero(full)) * delta


def _taper(t: np.ndarray, lo: float, hi: float) -> float:
    """Voxels in the caudal third of [lo, hi] over those in the cranial third."""
    third = (hi - lo) / 3.0
    cranial = np.count_nonzero((t >= lo) & (t < lo + third))
    caudal = np.count_nonzero((t > hi - third) & (t <= hi))
    return float(caudal) / max(float(cranial), 1.0)
