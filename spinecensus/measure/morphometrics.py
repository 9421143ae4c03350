"""Per-level morphometrics of one subject: body and disc heights, Genant grades, disc
height index, sagittal alignment; the table and JSON that ``spinecensus measure`` writes.

Entry point :func:`measure_subject` (instances in canonical order, ``{id: name}``, spacing
in mm in canonical axis order) -> one row per named structure and the alignment dict;
:func:`measure_subject_with_landmarks` also returns the six points of each measured
outline (for the QC picture).
Lengths mm, angles degrees, ratios dimensionless; the definitions are in the modules:
:mod:`~spinecensus.measure.midsagittal` (each structure's own mid-sagittal plane),
:mod:`~spinecensus.measure.heights` (heights, depth, endplate lines),
:mod:`~spinecensus.measure.genant` (ratios, Genant grade),
:mod:`~spinecensus.measure.disc_height` (Farfan's disc height index) and
:mod:`~spinecensus.measure.alignment` (lordosis, kyphosis, segment angles); units and
sources in ``docs/morphometrics.md``.

Instance ids run cranio-caudally (as the split writes them); rows follow the ids, and two
vertebrae are adjacent when no other vertebra lies between them and their ids differ by at
most 2 (one disc between).  Not measured as bodies (NaN): C2 (its dens is part of the
instance) and the sacrum ``S1`` (the fused segments are one instance; ``S2`` the rest of it
below a visible remnant disc); the superior endplate of S1 is taken from
the inferior boundary of the disc above it, and any endplate of an unmeasured body from
the adjacent disc's boundary (the same surface).  A structure that touches the volume's
superior/inferior or anterior/posterior border is cut by the field of view: ``truncated``
is true and it is not measured.  Unnamed instances get no row.  An outline that fails the
checks of :mod:`~spinecensus.measure.plausibility` is withheld (NaN), why in ``measure_flag``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import ndimage

from spinecensus.anatomy import labels as anatomy
from spinecensus.io import atomic_path, write_json
from spinecensus.measure import alignment, disc_height, genant, plausibility
from spinecensus.measure.heights import measure_structures
from spinecensus.measure.midsagittal import initial_frames, moments

#: (column, arrow type, unit) of ``morphometrics.parquet``, in column order: unit ``"1"``
#: for a dimensionless ratio, ``""`` for a name, flag or grade (docs/morphometrics.md)
COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("label", pa.string(), ""),
    ("kind", pa.string(), ""),
    ("instance_id", pa.int32(), ""),
    ("truncated", pa.bool_(), ""),
    ("height_anterior_mm", pa.float64(), "mm"),
    ("height_middle_mm", pa.float64(), "mm"),
    ("height_posterior_mm", pa.float64(), "mm"),
    ("depth_mm", pa.float64(), "mm"),
    ("endplate_superior_deg", pa.float64(), "degree"),
    ("endplate_inferior_deg", pa.float64(), "degree"),
    ("body_wedge_deg", pa.float64(), "degree"),
    ("wedge_ratio", pa.float64(), "1"),
    ("biconcavity_ratio", pa.float64(), "1"),
    ("crush_ratio", pa.float64(), "1"),
    ("height_reduction", pa.float64(), "1"),
    ("deformity", pa.string(), ""),
    ("genant_grade", pa.int8(), ""),
    ("disc_height_index", pa.float64(), "1"),
    ("disc_wedge_deg", pa.float64(), "degree"),
    ("measure_flag", pa.string(), ""),
)
UNITS: dict[str, str] = {name: unit for name, _t, unit in COLUMNS}
#: schema metadata key of the column -> unit map (JSON); each field also has ``unit``
UNITS_KEY = "spinecensus.units"
MORPHOMETRICS_SCHEMA = pa.schema(
    [pa.field(n, t, metadata={"unit": u}) for n, t, u in COLUMNS],
    metadata={UNITS_KEY: json.dumps(UNITS)},
)
#: dtypes the returned columns are built with (the rest float64; pandas may show its own
#: string dtype for text columns); the Parquet types are :data:`MORPHOMETRICS_SCHEMA`
PANDAS_DTYPES = {
    "label": "object",
    "kind": "object",
    "instance_id": "int32",
    "truncated": "bool",
    "deformity": "object",
    "genant_grade": "Int8",
    "measure_flag": "object",
}
#: no Genant grade for a body fewer in-plane voxels high than this: its heights are known
#: to about half a voxel each, and the grades are 5 % apart (20 / 25 %)
MIN_HEIGHT_VOXELS = 8
#: fewer voxels than this: too small to measure
MIN_VOXELS = 20


def _id_names(id_to_name: Mapping[Any, str]) -> dict[int, str]:
    return {int(k): str(v) for k, v in id_to_name.items()}


def _foreground_view(inst: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The rows and columns of ``inst`` that hold any instance (a view) and its offset:
    the spine fills a narrow antero-posterior band, so the bounding boxes cost half."""
    proj = inst.max(axis=0)
    rows, cols = np.flatnonzero(proj.any(axis=1)), np.flatnonzero(proj.any(axis=0))
    if rows.size == 0:
        return inst, (0, 0, 0)
    r0, c0 = int(rows[0]), int(cols[0])
    return inst[:, r0 : int(rows[-1]) + 1, c0 : int(cols[-1]) + 1], (0, r0, c0)


def _truncated(
    box: tuple[slice, ...], offset: tuple[int, int, int], shape: tuple[int, ...]
) -> bool:
    """Does the bounding box (in a view at ``offset`` of a volume of ``shape``) touch the
    volume's superior/inferior or anterior/posterior border?"""
    return any(
        box[ax].start + offset[ax] == 0 or box[ax].stop + offset[ax] == shape[ax] for ax in (1, 2)
    )


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


def _hints(
    names: list[str], ids: np.ndarray, frames_si: np.ndarray, centroid: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """(N, 3) first guesses of the bodies' inferior axes; NaN rows for the rest.

    The mean of the adjacent discs' principal axes (a disc's thin shape fixes its axis
    well) that agree with the flattest one's (``weight``;
    :func:`~spinecensus.measure.plausibility.disc_axes_hint`); without a disc (masks of
    bodies only), the chord between the centroids of the adjacent bodies (ids at most 2
    apart), the local direction of the column."""
    by_vertebra: dict[str, list[tuple[np.ndarray, float]]] = {}
    for n, si, w in zip(names, frames_si, weight, strict=True):
        if anatomy.is_disc(n) and w > 0:
            for v in n.split("-"):
                by_vertebra.setdefault(v, []).append((si, w))
    hint = np.full((len(names), 3), np.nan)
    bodies = sorted((int(i), k) for k, (n, i) in enumerate(zip(names, ids, strict=True))
                    if anatomy.is_vertebra(n))  # fmt: skip
    for j, (iid, k) in enumerate(bodies):
        if names[k] in by_vertebra:
            hint[k] = plausibility.disc_axes_hint(*zip(*by_vertebra[names[k]], strict=True))
            continue
        up = bodies[j - 1] if j > 0 and iid - bodies[j - 1][0] <= 2 else (iid, k)
        down = bodies[j + 1] if j + 1 < len(bodies) and bodies[j + 1][0] - iid <= 2 else (iid, k)
        if up[1] != down[1]:
            hint[k] = centroid[down[1]] - centroid[up[1]]
    return hint


def _geometries(
    inst: np.ndarray, names: dict[int, str], sp: np.ndarray
) -> tuple[dict[str, Measured | None], dict[str, bool], dict[str, int], dict[str, str]]:
    """Measure every named, untruncated disc and free body, all in one batch (on the view
    of the volume's foreground rows and columns: lengths and angles do not depend on it).
    The last item: why a structure that was to be measured has no outline (too small, not
    traced, or withheld by :func:`spinecensus.measure.plausibility.withheld`)."""
    full_shape = inst.shape
    inst, offset = _foreground_view(inst)
    boxes = ndimage.find_objects(inst)
    present = {n: i for i, n in names.items() if 0 < i <= len(boxes) and boxes[i - 1] is not None}
    cut = {n: _truncated(boxes[i - 1], offset, full_shape) for n, i in present.items()}
    geo: dict[str, Measured | None] = {n: None for n in present}
    todo = [n for n in present if not cut[n] and (anatomy.is_disc(n) or genant.is_gradable(n))]
    if not todo:
        return geo, cut, present, {}
    ids = np.array([present[n] for n in todo])
    m = moments(inst, ids, boxes, sp)
    big = m.count >= MIN_VOXELS
    flags = {n: plausibility.TOO_SMALL for n, b in zip(todo, big, strict=True) if not b}
    todo = [n for n, b in zip(todo, big, strict=True) if b]
    if not todo:
        return geo, cut, present, flags
    m = m.take(big)
    first = initial_frames(m)
    weight = plausibility.disc_axis_weights(m, first)
    g = measure_structures(
        inst, ids[big], m, sp, _hints(todo, ids[big], first.si, m.centroid, weight)
    )
    o = g.outlines
    f = g.frames  # the points (a, s) of each final frame -> mm of the whole volume
    pts = f.centre[:, None] + o.points[..., :1] * f.ap[:, None] + o.points[..., 1:] * f.si[:, None]
    pts += np.asarray(offset) * sp
    why = plausibility.withheld(ids[big], np.array([anatomy.is_disc(n) for n in todo]), f, o)
    why[~o.ok] = plausibility.NOT_TRACED
    flags.update({todo[k]: str(why[k]) for k in range(len(todo)) if why[k] is not None})
    for k in np.flatnonzero([w is None for w in why]):
        geo[todo[k]] = Measured(
            float(o.height_anterior[k]),
            float(o.height_middle[k]),
            float(o.height_posterior[k]),
            float(o.depth[k]),
            g.superior_dir[k],
            g.inferior_dir[k],
            float(g.wedge_deg[k]),
            pts[k],
        )
    return geo, cut, present, flags


def adjacent_vertebrae(present: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """``(segment name, upper, lower)`` of every pair of adjacent vertebrae among
    ``present`` (name -> instance id, ids cranio-caudal): consecutive vertebrae whose ids
    differ by at most 2; the segment is named after the disc between them, or ``"U-L"``."""
    by_id = {i: n for n, i in present.items()}
    verts = sorted((i, n) for n, i in present.items() if anatomy.is_vertebra(n))
    out = []
    for (i, upper), (j, lower) in zip(verts[:-1], verts[1:], strict=False):
        if j - i > 2:
            continue
        between = by_id.get(i + 1) if j - i == 2 else None
        disc = between if between is not None and anatomy.is_disc(between) else None
        out.append((disc or f"{upper}-{lower}", upper, lower))
    return out


def _tilts(geo: Mapping[str, Measured | None]) -> dict[str, tuple[float, float]]:
    """Endplate tilts (degrees, superior and inferior) of every measured structure; of an
    unmeasured vertebra, the adjacent discs' boundaries (the disc above's inferior boundary
    is the body's superior endplate)."""
    tau = alignment.endplate_tilt_deg
    below: dict[str, float] = {}  # vertebra -> tilt of the disc below it (its inferior)
    above: dict[str, float] = {}  # vertebra -> tilt of the disc above it (its superior)
    for d, g in geo.items():
        if g is not None and anatomy.is_disc(d):
            up, low = d.split("-")
            below[up] = tau(g.superior_dir)
            above[low] = tau(g.inferior_dir)
    out = {}
    for n, g in geo.items():
        if g is not None:
            out[n] = (tau(g.superior_dir), tau(g.inferior_dir))
        elif anatomy.is_vertebra(n):
            out[n] = (above.get(n, math.nan), below.get(n, math.nan))
    return out


def _row(
    name: str, iid: int, cut: bool, o: Measured | None, tilt: tuple[float, float], flag: str | None
):
    disc = anatomy.is_disc(name)
    return {
        "label": name,
        "kind": anatomy.kind(name),
        "instance_id": iid,
        "truncated": cut,
        "height_anterior_mm": o.height_anterior if o else math.nan,
        "height_middle_mm": o.height_middle if o else math.nan,
        "height_posterior_mm": o.height_posterior if o else math.nan,
        "depth_mm": o.depth if o else math.nan,
        "endplate_superior_deg": tilt[0],
        "endplate_inferior_deg": tilt[1],
        "body_wedge_deg": o.wedge_deg if o is not None and not disc else math.nan,
        "disc_wedge_deg": o.wedge_deg if o is not None and disc else math.nan,
        "measure_flag": flag,
    }


def _table(
    rows: list[dict[str, Any]], segments: list[tuple[str, str, str]], min_height_mm: float
) -> pd.DataFrame:
    """Add the Genant ratios (gradable vertebrae) and the disc height index (discs), column
    by column in numpy (one DataFrame at the end: pandas row edits would cost more than
    the measuring).

    ``min_height_mm``: no grade (nor deformity) for a body whose posterior height is below
    it (:data:`MIN_HEIGHT_VOXELS` in-plane voxels); its ratios are still reported."""
    col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    names = [str(n) for n in col["label"]]
    graded = np.array([genant.is_gradable(n) for n in names], dtype=bool)
    neighbours: dict[str, list[str]] = {}
    for _seg, upper, lower in segments:
        neighbours.setdefault(upper, []).append(lower)
        neighbours.setdefault(lower, []).append(upper)
    ha, hm, hp = (col[f"height_{k}_mm"].astype(float) for k in ("anterior", "middle", "posterior"))
    ref = genant.neighbour_posterior_mean(names, np.where(graded, hp, np.nan), neighbours)
    ratios = genant.height_ratios(ha, hm, hp, ref)
    for k in ("wedge_ratio", "biconcavity_ratio", "crush_ratio", "height_reduction"):
        col[k] = np.where(graded, ratios[k], np.nan)
    graded_ok = graded & (hp >= min_height_mm) & (ratios["genant_grade"] >= 0)
    col["deformity"] = np.where(graded_ok, ratios["deformity"], None)
    col["genant_grade"] = pd.arrays.IntegerArray(
        np.where(graded_ok, ratios["genant_grade"], 0).astype(np.int8), ~graded_ok
    )
    depth = dict(zip(names, col["depth_mm"].astype(float), strict=True))
    disc = col["kind"] == "disc"
    upper = np.array([depth.get(disc_height.upper_vertebra(n), np.nan) for n in names])
    col["disc_height_index"] = np.where(disc, disc_height.farfan_index(ha, hp, upper), np.nan)
    return _frame(col)


def _frame(col: Mapping[str, Any]) -> pd.DataFrame:
    """The DataFrame of the columns, each converted in numpy to its dtype first (a pandas
    ``astype`` per column would cost more than the measuring)."""
    out = {}
    for c, _t, _u in COLUMNS:
        want = PANDAS_DTYPES.get(c, "float64")
        v = col[c]
        out[c] = v if want == "Int8" else np.asarray(v).astype(want, copy=False)
    return pd.DataFrame(out, copy=False)


def measure_subject(
    instances: np.ndarray,
    labels: Mapping[int, str] | Mapping[str, str],
    spacing: tuple[float, float, float],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Morphometrics of one subject.

    Args:
        instances: integer instance mask in canonical order (slice L->R, row S->I,
            column A->P; :mod:`spinecensus.io.scan`), as the split writes it.
        labels: instance id -> structure name, int keys or the string keys of
            ``labels.json`` (``{"1": "C2", ...}``).
        spacing: voxel size in mm, canonical axis order.

    Returns:
        ``(table, alignment)``: one row per named instance present, in instance-id
        (cranio-caudal) order, with the columns of :data:`COLUMNS` (NaN / NA where a
        measure does not apply or could not be made), and the dict of
        :func:`spinecensus.measure.alignment.spine_alignment`.
    """
    table, spine, _points = measure_subject_with_landmarks(instances, labels, spacing)
    return table, spine


def measure_subject_with_landmarks(
    instances: np.ndarray,
    labels: Mapping[int, str] | Mapping[str, str],
    spacing: tuple[float, float, float],
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, np.ndarray]]:
    """:func:`measure_subject` and the points its heights were measured between.

    The third item maps each measured structure's name (bodies and discs whose outline
    was traced) to a (6, 3) array: the points of
    :data:`~spinecensus.measure.heights.POINTS` (superior-anterior, superior-posterior,
    inferior-anterior and inferior-posterior corners, then the superior and inferior
    ends of the middle height), in mm along the canonical axes of
    ``instances`` (``voxel index x spacing``; divide by ``spacing`` for voxel
    coordinates).  They lie in the structure's own mid-sagittal plane, which is oblique
    to the slices in general.  Costs nothing beyond the measurement.
    """
    inst = np.asarray(instances)
    if not np.issubdtype(inst.dtype, np.integer):
        raise TypeError(f"instances must be an integer array, got {inst.dtype}")
    sp = np.asarray(spacing, dtype=float)
    geo, cut, present, flags = _geometries(inst, _id_names(labels), sp)
    points = {n: g.points_mm for n, g in geo.items() if g is not None}
    tilts = _tilts(geo)
    order = sorted(present, key=present.__getitem__)
    nan2 = (math.nan, math.nan)
    rows = [_row(n, present[n], cut[n], geo[n], tilts.get(n, nan2), flags.get(n)) for n in order]
    segments = adjacent_vertebrae(present)
    vert_tilts = {n: t for n, t in tilts.items() if anatomy.is_vertebra(n)}
    spine = alignment.spine_alignment(vert_tilts, segments)
    spine["withheld"] = plausibility.alignment_withheld(spine, vert_tilts, segments, flags)
    if not rows:
        empty = {c: np.array([]) for c, _t, _u in COLUMNS}
        empty["genant_grade"] = pd.array([], dtype="Int8")
        return _frame(empty), spine, points
    min_height = MIN_HEIGHT_VOXELS * float(max(sp[1], sp[2]))
    return _table(rows, segments, min_height), spine, points


def write_measurements(
    table: pd.DataFrame, spine: Mapping[str, Any], out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Write ``out_dir/morphometrics.parquet`` (:data:`MORPHOMETRICS_SCHEMA`, units in the
    field and schema metadata) and ``out_dir/alignment.json``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrow = pa.Table.from_pandas(table, schema=MORPHOMETRICS_SCHEMA, preserve_index=False)
    parquet = out / "morphometrics.parquet"
    with atomic_path(parquet) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")
    js = out / "alignment.json"
    write_json(dict(spine), js)
    return parquet, js
