"""The named structures of one subject measured in one batch: which are measured, their
outlines, endplate directions and six points, and why any has none.

:func:`measure_named` is the step of :func:`spinecensus.measure.morphometrics.measure_subject`
between the instance mask and the table: it finds each named instance (its bounding box,
or the one the split already found), marks the ones the field of view cuts
(``truncated``), measures every untruncated disc and free body at once
(:func:`spinecensus.measure.heights.measure_structures`, started from the moments of
:mod:`spinecensus.measure.midsagittal` and the first axes of :func:`body_axis_hints`) and
withholds what :mod:`spinecensus.measure.plausibility` finds inconsistent.  Lengths mm,
angles degrees, canonical axes (slice, superior -> inferior, anterior -> posterior).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from spinecensus.anatomy import labels as anatomy
from spinecensus.measure import genant, plausibility
from spinecensus.measure.heights import measure_structures
from spinecensus.measure.midsagittal import initial_frames, moments

#: fewer voxels than this: too small to measure
MIN_VOXELS = 20

#: bounding boxes as ``scipy.ndimage.find_objects`` gives them: ``boxes[id - 1]`` slices
#: into the instance volume, None for an id without voxels
Boxes = Sequence[tuple[slice, ...] | None]


class Measured(NamedTuple):
    """One structure's outline (mm), endplate directions (unit 3-vectors, canonical mm
    axes, posterior-pointing), wedge angle (degrees) and its six points
    (:data:`~spinecensus.measure.heights.POINTS`, (6, 3) mm in canonical axes: voxel
    index x spacing of the whole volume)."""

    height_anterior: float
    height_middle: float
    height_posterior: float
    depth: float
    superior_dir: np.ndarray
    inferior_dir: np.ndarray
    wedge_deg: float
    points_mm: np.ndarray


class Found(NamedTuple):
    """What :func:`measure_named` returns: per named instance present (name -> ...) its
    measurement (None: not measured), whether the field of view cuts it, its instance id,
    and the ``measure_flag`` of each structure that was to be measured but has none."""

    geo: dict[str, Measured | None]
    cut: dict[str, bool]
    present: dict[str, int]
    flags: dict[str, str]


def find_boxes(inst: np.ndarray) -> Boxes:
    """``scipy.ndimage.find_objects`` of ``inst`` (imported here: the analyse job passes
    the split's boxes and never needs it)."""
    from scipy import ndimage

    return ndimage.find_objects(inst)


def _foreground_view(
    inst: np.ndarray, boxes: Boxes | None
) -> tuple[np.ndarray, tuple[int, int, int], Boxes]:
    """The rows and columns of ``inst`` that hold any instance (a view: the spine fills a
    narrow antero-posterior band, so the sampling's padded copy of it costs less), its
    offset in ``inst`` (voxels) and the instances' boxes in it (found there when
    ``boxes``, of the whole volume, is None)."""
    if boxes is None:
        proj = inst.max(axis=0)
        rows, cols = np.flatnonzero(proj.any(axis=1)), np.flatnonzero(proj.any(axis=0))
        if rows.size == 0:
            return inst, (0, 0, 0), find_boxes(inst)
        r0, c0 = int(rows[0]), int(cols[0])
        view = inst[:, r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1]
        return view, (0, r0, c0), find_boxes(view)
    real = [b for b in boxes if b is not None]
    if not real:
        return inst, (0, 0, 0), boxes
    r0, r1 = min(b[1].start for b in real), max(b[1].stop for b in real)
    c0, c1 = min(b[2].start for b in real), max(b[2].stop for b in real)
    moved = [None if b is None else (b[0], slice(b[1].start - r0, b[1].stop - r0),
                                     slice(b[2].start - c0, b[2].stop - c0))
             for b in boxes]  # fmt: skip
    return inst[:, r0:r1, c0:c1], (0, r0, c0), moved


def _truncated(
    box: tuple[slice, ...], offset: tuple[int, int, int], shape: tuple[int, ...]
) -> bool:
    """Does the bounding box (in a view at ``offset`` of a volume of ``shape``) touch the
    volume's superior/inferior or anterior/posterior border?"""
    return any(
        box[ax].start + offset[ax] == 0 or box[ax].stop + offset[ax] == shape[ax] for ax in (1, 2)
    )


def body_axis_hints(
    names: list[str], ids: np.ndarray, frames_si: np.ndarray, centroid: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(N, 3) first guesses of the bodies' inferior axes; NaN rows for the rest.

    The mean of the adjacent discs' principal axes (a disc's thin shape fixes its axis
    well) that agree with the flattest one's (``weight``;
    :func:`~spinecensus.measure.plausibility.disc_axes_hints`, every body at once);
    without a disc (masks of bodies only), the chord between the centroids of the
    adjacent bodies (ids at most 2 apart), the local direction of the column."""
    by_vertebra: dict[str, list[int]] = {}  # vertebra -> rows of its usable discs
    for k, (n, w) in enumerate(zip(names, weight.tolist(), strict=True)):
        if w > 0 and anatomy.is_disc(n):
            for v in n.split("-"):
                by_vertebra.setdefault(v, []).append(k)
    hint = np.full((len(names), 3), np.nan)
    bodies = sorted((int(i), k) for k, (n, i) in enumerate(zip(names, ids.tolist(), strict=True))
                    if anatomy.is_vertebra(n))  # fmt: skip
    with_discs = [(k, by_vertebra[names[k]]) for _i, k in bodies if names[k] in by_vertebra]
    for j, (iid, k) in enumerate(bodies):
        if names[k] in by_vertebra:
            continue
        up = bodies[j - 1] if j > 0 and iid - bodies[j - 1][0] <= 2 else (iid, k)
        down = bodies[j + 1] if j + 1 < len(bodies) and bodies[j + 1][0] - iid <= 2 else (iid, k)
        if up[1] != down[1]:
            hint[k] = centroid[down[1]] - centroid[up[1]]
    if with_discs:  # one batch, the discs of each body padded to the most any body has
        rows = np.array([k for k, _d in with_discs])
        disc_rows = np.zeros((len(with_discs), max(len(d) for _k, d in with_discs)), dtype=int)
        used = np.zeros(disc_rows.shape, dtype=bool)
        for r, (_k, d) in enumerate(with_discs):
            disc_rows[r, : len(d)], used[r, : len(d)] = d, True
        hint[rows] = plausibility.disc_axes_hints(
            frames_si[disc_rows], np.where(used, weight[disc_rows], 0.0)
        )
    return hint


def measure_named(
    inst: np.ndarray, names: Mapping[int, str], sp: np.ndarray, boxes: Boxes | None = None
) -> Found:
    """Measure every named, untruncated disc and free body of ``inst`` (canonical order,
    spacing ``sp`` mm), all in one batch (on the view of the volume's foreground rows and
    columns: lengths and angles do not depend on it).  ``boxes``: the instances' bounding
    boxes in ``inst`` when the caller has them (the split's), else they are found here.
    A structure that was to be measured but has no outline is flagged: too small, not
    traced, or withheld by :func:`spinecensus.measure.plausibility.withheld`."""
    full_shape = inst.shape
    inst, offset, boxes = _foreground_view(inst, boxes)
    present = {n: i for i, n in names.items() if 0 < i <= len(boxes) and boxes[i - 1] is not None}
    cut = {n: _truncated(boxes[i - 1], offset, full_shape) for n, i in present.items()}
    geo: dict[str, Measured | None] = {n: None for n in present}
    todo = [n for n in present if not cut[n] and (anatomy.is_disc(n) or genant.is_gradable(n))]
    if not todo:
        return Found(geo, cut, present, {})
    ids = np.array([present[n] for n in todo])
    m = moments(inst, ids, boxes, sp)
    big = m.count >= MIN_VOXELS
    flags = {n: plausibility.TOO_SMALL for n, b in zip(todo, big, strict=True) if not b}
    todo = [n for n, b in zip(todo, big, strict=True) if b]
    if not todo:
        return Found(geo, cut, present, flags)
    m = m.take(big)
    first = initial_frames(m)
    weight = plausibility.disc_axis_weights(m, first)
    hints = body_axis_hints(todo, ids[big], first.si, m.centroid, weight)
    g = measure_structures(inst, ids[big], m, sp, hints, first)
    o = g.outlines
    f = g.frames  # the points (a, s) of each final frame -> mm of the whole volume
    pts = f.centre[:, None] + o.points[..., :1] * f.ap[:, None] + o.points[..., 1:] * f.si[:, None]
    pts += np.asarray(offset) * sp
    why = plausibility.withheld(ids[big], np.array([anatomy.is_disc(n) for n in todo]), f, o)
    why[~o.ok] = plausibility.NOT_TRACED
    flags.update({todo[k]: str(why[k]) for k in range(len(todo)) if why[k] is not None})
    cols = [x.tolist() for x in (o.height_anterior, o.height_middle, o.height_posterior, o.depth,
                                 g.wedge_deg)]  # fmt: skip
    for k in np.flatnonzero([w is None for w in why]).tolist():
        geo[todo[k]] = Measured(
            cols[0][k], cols[1][k], cols[2][k], cols[3][k],
            g.superior_dir[k], g.inferior_dir[k], cols[4][k], pts[k],
        )  # fmt: skip
    return Found(geo, cut, present, flags)
