"""Per-level morphometrics of one subject: body and disc heights, Genant grades, disc
height index, sagittal alignment; the table and JSON that ``spinecensus measure`` writes.

Entry point :func:`measure_subject` (instances in canonical order, ``{id: name}``, spacing
in mm in canonical axis order) -> one row per named structure and the alignment dict;
:func:`measure_subject_with_landmarks` also returns the six points of each measured
outline (for the QC picture); :func:`measure_columns` is the same without pandas (numpy
columns, :func:`columns_arrow` makes the Arrow table), as the analyse job calls it with the
split's bounding boxes.  Which structures are measured, and how in one batch:
:mod:`~spinecensus.measure.structures`.
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
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from spinecensus.anatomy import labels as anatomy
from spinecensus.io import atomic_path, write_json
from spinecensus.measure import alignment, disc_height, genant, plausibility, structures
from spinecensus.measure.structures import Boxes, Measured, measure_named

if TYPE_CHECKING:  # pandas is imported where a DataFrame is made: the analyse job needs none
    import pandas as pd

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
#: no Genant grade where the height a body's reduction is measured against (its posterior
#: height; for a crush, the neighbours' mean posterior height) is fewer in-plane voxels
#: than this: heights are known to about half a voxel each, and the grades are 5 % apart
MIN_HEIGHT_VOXELS = 8
#: fewer voxels than this: too small to measure (:mod:`~spinecensus.measure.structures`)
MIN_VOXELS = structures.MIN_VOXELS


def _id_names(id_to_name: Mapping[Any, str]) -> dict[int, str]:
    return {int(k): str(v) for k, v in id_to_name.items()}


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


def _strings(values: list[str | None]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _columns(
    order: list[str], found: structures.Found, tilts: Mapping[str, tuple[float, float]],
    segments: list[tuple[str, str, str]], min_height_mm: float,
) -> dict[str, Any]:  # fmt: skip
    """The table's columns (:data:`COLUMNS`) of the structures ``order``, built column by
    column in numpy (pandas row edits would cost more than the measuring): the heights of
    :class:`~spinecensus.measure.structures.Found`, the Genant ratios (gradable vertebrae)
    and the disc height index (discs).  ``genant_grade`` is a masked int8 array (masked:
    NA).

    ``min_height_mm``: no grade (nor deformity) for a body whose reduction is measured
    against a height below it (its posterior height; the neighbours' mean posterior height
    where the deformity is a crush; :data:`MIN_HEIGHT_VOXELS` in-plane voxels); its ratios
    are still reported."""
    nan = math.nan
    geo = [found.geo[n] for n in order]
    disc = np.array([anatomy.is_disc(n) for n in order], dtype=bool)
    col: dict[str, Any] = {
        "label": _strings(order),
        "kind": _strings([anatomy.kind(n) for n in order]),
        "instance_id": np.array([found.present[n] for n in order], dtype=np.int32),
        "truncated": np.array([found.cut[n] for n in order], dtype=bool),
    }
    for key, field in (("height_anterior_mm", 0), ("height_middle_mm", 1),
                       ("height_posterior_mm", 2), ("depth_mm", 3)):  # fmt: skip
        col[key] = np.array([nan if g is None else g[field] for g in geo], dtype=float)
    tilt = np.array([tilts.get(n, (nan, nan)) for n in order], dtype=float).reshape(-1, 2)
    col["endplate_superior_deg"], col["endplate_inferior_deg"] = tilt[:, 0], tilt[:, 1]
    wedge = np.array([nan if g is None else g.wedge_deg for g in geo], dtype=float)
    col["body_wedge_deg"] = np.where(disc, nan, wedge)
    col["disc_wedge_deg"] = np.where(disc, wedge, nan)
    col["measure_flag"] = _strings([found.flags.get(n) for n in order])
    graded = np.array([genant.is_gradable(n) for n in order], dtype=bool)
    neighbours: dict[str, list[str]] = {}
    for _seg, upper, lower in segments:
        neighbours.setdefault(upper, []).append(lower)
        neighbours.setdefault(lower, []).append(upper)
    ha, hm, hp = (col[f"height_{k}_mm"] for k in ("anterior", "middle", "posterior"))
    ref = genant.neighbour_posterior_mean(order, np.where(graded, hp, np.nan), neighbours)
    ratios = genant.height_ratios(ha, hm, hp, ref)
    for k in ("wedge_ratio", "biconcavity_ratio", "crush_ratio", "height_reduction"):
        col[k] = np.where(graded, ratios[k], np.nan)
    # the height the reduction is measured against must span enough voxels: a crush is
    # read against the neighbours' height, so a crushed (short) body is still graded
    against = np.where(ratios["deformity"] == "crush", ref, hp)
    graded_ok = graded & (against >= min_height_mm) & (ratios["genant_grade"] >= 0)
    col["deformity"] = np.where(graded_ok, ratios["deformity"], None)
    col["genant_grade"] = np.ma.MaskedArray(
        np.where(graded_ok, ratios["genant_grade"], 0).astype(np.int8), ~graded_ok
    )
    depth = dict(zip(order, col["depth_mm"].tolist(), strict=True))
    upper = np.array([depth.get(disc_height.upper_vertebra(n), nan) for n in order], dtype=float)
    col["disc_height_index"] = np.where(disc, disc_height.farfan_index(ha, hp, upper), np.nan)
    return col


def _empty_columns() -> dict[str, Any]:
    col: dict[str, Any] = {c: np.array([], dtype=PANDAS_DTYPES.get(c, "float64").lower())
                           for c, _t, _u in COLUMNS}  # fmt: skip
    col["genant_grade"] = np.ma.MaskedArray(np.array([], dtype=np.int8), np.array([], bool))
    return col


def columns_frame(col: Mapping[str, Any]) -> pd.DataFrame:
    """The DataFrame of :func:`measure_columns`'s columns (dtypes :data:`PANDAS_DTYPES`,
    ``genant_grade`` nullable ``Int8``)."""
    import pandas as pd

    out = dict(col)
    g = col["genant_grade"]
    out["genant_grade"] = pd.arrays.IntegerArray(np.asarray(g.data), np.ma.getmaskarray(g))
    return pd.DataFrame({c: out[c] for c, _t, _u in COLUMNS}, copy=False)


def columns_arrow(col: Mapping[str, Any]) -> pa.Table:
    """The Arrow table (:data:`MORPHOMETRICS_SCHEMA`) of :func:`measure_columns`'s columns,
    without pandas; NaN and None are null, as ``pa.Table.from_pandas`` writes them."""
    arrays = []
    for c, t, _u in COLUMNS:
        v = col[c]
        if isinstance(v, np.ma.MaskedArray):
            arrays.append(pa.array(np.asarray(v.data), type=t, mask=np.ma.getmaskarray(v)))
        else:
            arrays.append(pa.array(v, type=t, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=MORPHOMETRICS_SCHEMA)


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
    col, spine, points = measure_columns(instances, labels, spacing)
    return columns_frame(col), spine, points


def measure_columns(
    instances: np.ndarray,
    labels: Mapping[int, str] | Mapping[str, str],
    spacing: tuple[float, float, float],
    boxes: Boxes | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """:func:`measure_subject_with_landmarks` without pandas, as the analyse job calls it:
    the table as numpy columns (:func:`columns_arrow` makes the Arrow table,
    :func:`columns_frame` the DataFrame), the alignment and the points.

    ``boxes``: the instances' bounding boxes in ``instances`` (``boxes[id - 1]``, slices as
    ``scipy.ndimage.find_objects`` gives them, None for an absent id) when the caller
    already has them (the split's :attr:`~spinecensus.split.instances.SplitResult.boxes`);
    else they are found here.  Either way the results are the same."""
    inst = np.asarray(instances)
    if not np.issubdtype(inst.dtype, np.integer):
        raise TypeError(f"instances must be an integer array, got {inst.dtype}")
    sp = np.asarray(spacing, dtype=float)
    found = measure_named(inst, _id_names(labels), sp, boxes)
    geo, present = found.geo, found.present
    points = {n: g.points_mm for n, g in geo.items() if g is not None}
    tilts = _tilts(geo)
    order = sorted(present, key=present.__getitem__)
    segments = adjacent_vertebrae(present)
    vert_tilts = {n: t for n, t in tilts.items() if anatomy.is_vertebra(n)}
    spine = alignment.spine_alignment(vert_tilts, segments)
    spine["withheld"] = plausibility.alignment_withheld(spine, vert_tilts, segments, found.flags)
    if not order:
        return _empty_columns(), spine, points
    min_height = MIN_HEIGHT_VOXELS * float(max(sp[1], sp[2]))
    return _columns(order, found, tilts, segments, min_height), spine, points


def write_measurements(
    table: pd.DataFrame, spine: Mapping[str, Any], out_dir: str | os.PathLike[str]
) -> tuple[Path, Path]:
    """Write ``out_dir/morphometrics.parquet`` (:data:`MORPHOMETRICS_SCHEMA`, units in the
    field and schema metadata) and ``out_dir/alignment.json``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(table, schema=MORPHOMETRICS_SCHEMA, preserve_index=False)
    parquet = out / "morphometrics.parquet"
    with atomic_path(parquet) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")
    js = out / "alignment.json"
    write_json(dict(spine), js)
    return parquet, js
