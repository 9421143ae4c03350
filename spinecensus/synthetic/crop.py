"""Field-of-view crops of a synthetic subject: ``crop_fov`` (exactly V whole vertebrae) and
``cut_field_of_view`` (the ``c2_cut`` / ``sacrum_cut`` variants)."""

from __future__ import annotations

from dataclasses import replace

import cc3d
import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.subject import SyntheticSubject


def crop_fov(
    subject: SyntheticSubject, n_visible_vertebrae: int, rng: np.random.Generator
) -> SyntheticSubject:
    """A small field of view along SI showing exactly ``n_visible_vertebrae`` whole vertebrae.

    The window keeps the full AP and lateral extent and a random run of consecutive rows
    such that exactly ``V`` vertebral bodies (the sacrum counts as one) lie entirely inside
    it.  Partial neighbours are allowed and kept (as in real small-FOV scans, the vertebra
    above/below and discs may be cut by the window edge): they stay in the masks with their
    true names, each as one connected piece (windows that would cut a structure into
    several pieces are redrawn).  Instance ids are renumbered ``1..M`` in cranio-caudal
    order; ``id_to_name`` keeps the true anatomical names.  ``meta["whole_vertebrae"]``
    lists the whole ones and ``meta["crop_rows"]`` the row range.  The affine origin moves
    with the crop.
    """
    ids = sorted(subject.id_to_name)
    verts = [i for i in ids if labels.is_vertebra(subject.id_to_name[i])]
    V = int(n_visible_vertebrae)
    if not 1 <= V <= len(verts):
        raise ValueError(f"n_visible_vertebrae must be in 1..{len(verts)}, got {V}")
    lo, hi = _row_extents(subject.instances, ids)
    ny = subject.instances.shape[1]
    k = int(rng.integers(0, len(verts) - V + 1))
    first, last = verts[k], verts[k + V - 1]
    prev_v = verts[k - 1] if k > 0 else None
    next_v = verts[k + V] if k + V < len(verts) else None
    # window [r0, r1): r0 <= lo[first], r0 > lo[prev]; r1 > hi[last], r1 <= hi[next]
    r0_lo = lo[prev_v] + 1 if prev_v is not None else 0
    r0_hi = lo[first]
    r1_lo = hi[last] + 1
    r1_hi = hi[next_v] if next_v is not None else ny
    r0, r1, inst, present = _draw_window(subject.instances, r0_lo, r0_hi, r1_lo, r1_hi, rng)
    whole = [subject.id_to_name[v] for v in verts if lo[v] >= r0 and hi[v] < r1]
    return _windowed(subject, r0, r1, inst, present, {"whole_vertebrae": whole})


def cut_field_of_view(
    subject: SyntheticSubject, below_c2: bool, above_sacrum: bool, rng: np.random.Generator
) -> SyntheticSubject:
    """The variants ``c2_cut`` / ``sacrum_cut``: a field of view starting below C2 and/or
    ending above the sacrum (full AP and lateral extent, a run of rows).

    ``below_c2``: the first row lies between the row after C2's last voxel and the first
    row of T1, so no C2 voxel (dens included) is in view.  ``above_sacrum``: the window ends
    between the first rows of L3 and of the sacrum (``S1``), so no sacral voxel is in view.
    Ids are renumbered as in :func:`crop_fov`; ``meta["fov_rows"]`` is the row range.
    """
    ids = sorted(subject.id_to_name)
    lo, hi = _row_extents(subject.instances, ids)
    row_of = {subject.id_to_name[i]: i for i in ids}
    ny = subject.instances.shape[1]
    r0_lo = r0_hi = 0
    r1_lo = r1_hi = ny
    if below_c2:
        r0_lo, r0_hi = hi[row_of["C2"]] + 1, lo[row_of["T1"]]
    if above_sacrum:
        r1_lo, r1_hi = lo[row_of["L3"]] + 1, lo[row_of["S1"]]
    r0, r1, inst, present = _draw_window(subject.instances, r0_lo, r0_hi, r1_lo, r1_hi, rng)
    return _windowed(subject, r0, r1, inst, present, {"fov_rows": (r0, r1)})


def _windowed(
    subject: SyntheticSubject,
    r0: int,
    r1: int,
    inst: np.ndarray,
    present: np.ndarray,
    meta: dict[str, object],
) -> SyntheticSubject:
    """``subject`` restricted to rows [r0, r1) with the instances ``inst`` of that window
    renumbered 1..M cranio-caudally (``present``: their old ids); the origin moves along."""
    sl = (slice(None), slice(r0, r1), slice(None))
    lut = np.zeros(int(subject.instances.max()) + 1, np.uint16)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    new_inst = lut[inst]
    names = {int(lut[i]): subject.id_to_name[int(i)] for i in present}
    sx, sy, sz = subject.spacing_mm
    ox, oy, oz = subject.origin_mm
    return replace(
        subject,
        image=np.ascontiguousarray(subject.image[sl]),
        semantic=np.ascontiguousarray(subject.semantic[sl]),
        instances=np.ascontiguousarray(new_inst),
        tissue=None if subject.tissue is None else np.ascontiguousarray(subject.tissue[sl]),
        id_to_name=names,
        origin_mm=(ox, oy, oz - r0 * sy),
        meta={**subject.meta, **meta, "crop_rows": (r0, r1)},
    )


def _row_extents(instances: np.ndarray, ids: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """SI row extent of every structure: {id: first row}, {id: last row} containing it."""
    nz_idx = np.nonzero(instances)
    vals = instances[nz_idx].astype(np.intp)
    n_ids = int(vals.max()) + 1 if vals.size else 1
    lo_arr = np.full(n_ids, np.iinfo(np.intp).max)
    hi_arr = np.full(n_ids, -1)
    np.minimum.at(lo_arr, vals, nz_idx[1])
    np.maximum.at(hi_arr, vals, nz_idx[1])
    lo = {int(i): int(lo_arr[i]) for i in ids if i < n_ids}
    hi = {int(i): int(hi_arr[i]) for i in ids if i < n_ids}
    return lo, hi


def _draw_window(
    instances: np.ndarray,
    r0_lo: int,
    r0_hi: int,
    r1_lo: int,
    r1_hi: int,
    rng: np.random.Generator,
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Rows [r0, r1) with r0 in r0_lo..r0_hi and r1 in r1_lo..r1_hi; returns (r0, r1, the
    cropped instances, the ids present in it).

    A cut through a concave endplate can leave a partial neighbour in two pieces (rims
    either side of the disc dome, split further by the lateral FOV); such windows are
    redrawn, so every structure in the crop is one 26-connected piece, as every structure
    of the whole subject is (after 64 failed draws the last window is kept).
    """
    for _ in range(64):
        r0 = int(rng.integers(r0_lo, r0_hi + 1))
        r1 = int(rng.integers(r1_lo, r1_hi + 1))
        inst = instances[:, r0:r1]
        present = np.unique(inst)
        present = present[present > 0]
        if int(cc3d.connected_components(inst, connectivity=26).max()) == present.size:
            break
    return r0, r1, inst, present
