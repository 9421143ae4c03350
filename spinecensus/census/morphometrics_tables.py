"""Cohort morphometrics tables: per-level measurements with z-scores, the spine alignment
per subject, and the reference percentiles per level x stratum.

The ``analyse`` step measures every subject
(:func:`spinecensus.measure.morphometrics.measure_subject`) and writes
``results/subjects/<subject>/morphometrics.parquet`` (:func:`write_subject_morphometrics`)
and the alignment into ``summary.json`` (key ``alignment``).  The ``aggregate`` step builds

* ``morphometrics.parquet``: one row per subject x measured structure, the columns of
  :data:`spinecensus.measure.morphometrics.COLUMNS` plus ``stratum`` and ``z_<measure>``
  for :data:`Z_MEASURES`;
* ``spine_alignment.parquet``: one row per subject (``lordosis_deg``, ``kyphosis_deg``,
  degrees, null where not in view or the subject failed; ``lordosis_withheld``,
  ``kyphosis_withheld``: why an angle is null where a withheld outline caused it);
* ``reference.parquet``: per ``label`` x ``stratum`` x ``measure``: ``n`` and the 5th, 25th,
  50th, 75th and 95th percentiles (numpy's linear interpolation).

Strata: the prevalence's declared ones (:class:`spinecensus.census.strata.StrataSpec`),
crossed: a subject's cell is ``sex=F;age=50-59`` (declared columns in order, the age column
binned by ``age_bins``); ``all`` pools every subject.  A subject missing a declared value has
no cell (its z-scores are NaN) but counts in ``all``.  Without declared strata the cell is
``all``.  Only processed subjects not excluded by review enter the reference.

z-score (robust, not leave-one-out: the subject is part of its own reference cell):
``z = (x - p50) / ((p75 - p25) / 1.349)`` against the subject's level x cell reference; NaN
where that cell has ``n <`` :data:`MIN_REFERENCE_N` values of the measure or an IQR of 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spinecensus.census.strata import StrataSpec, age_band_labels
from spinecensus.census.tables import read_subject_tables
from spinecensus.io import atomic_path
from spinecensus.measure.morphometrics import COLUMNS, MORPHOMETRICS_SCHEMA, UNITS, UNITS_KEY

if TYPE_CHECKING:  # imported where used: the analyse job writes its table without pandas
    import pandas as pd

#: measures with a z-score column ``z_<measure>`` in the cohort table
Z_MEASURES = (
    "height_anterior_mm",
    "height_middle_mm",
    "height_posterior_mm",
    "wedge_ratio",
    "biconcavity_ratio",
    "disc_height_index",
)
#: measures of ``reference.parquet``: every float column of the per-subject table
MEASURES = tuple(n for n, t, _u in COLUMNS if pa.types.is_floating(t))
#: percentiles of ``reference.parquet`` (columns ``p5`` ... ``p95``)
PERCENTILES = (5, 25, 50, 75, 95)
#: fewer values than this in a reference cell: no z-score against it
MIN_REFERENCE_N = 10
#: IQR of a normal distribution in standard deviations (z = (x - median) / (IQR / 1.349))
IQR_TO_SD = 1.349
#: the stratum pooling every subject
ALL = "all"

SUBJECT_SCHEMA = pa.schema(
    [pa.field("subject", pa.string()), *MORPHOMETRICS_SCHEMA],
    metadata=MORPHOMETRICS_SCHEMA.metadata,
)
ALIGNMENT_SCHEMA = pa.schema(
    [
        pa.field("subject", pa.string()),
        pa.field("lordosis_deg", pa.float64(), metadata={"unit": "degree"}),
        pa.field("kyphosis_deg", pa.float64(), metadata={"unit": "degree"}),
        # why the angle is null where a withheld outline is the cause (measure_flag of the
        # structure named, e.g. "L6-S1: frame_disagrees"); null otherwise
        pa.field("lordosis_withheld", pa.string()),
        pa.field("kyphosis_withheld", pa.string()),
    ]
)


def write_subject_morphometrics(
    subject: str, table: pa.Table | None, path: str | os.PathLike[str]
) -> None:
    """Write one subject's ``morphometrics.parquet`` atomically (:data:`SUBJECT_SCHEMA`):
    ``table`` in :data:`~spinecensus.measure.morphometrics.MORPHOMETRICS_SCHEMA`
    (:func:`~spinecensus.measure.morphometrics.columns_arrow`), None: empty."""
    if table is None:
        arrow = SUBJECT_SCHEMA.empty_table()
    else:
        arrow = table
        subj = pa.array([subject] * arrow.num_rows, pa.string())
        arrow = arrow.add_column(0, SUBJECT_SCHEMA.field("subject"), subj)
        arrow = arrow.replace_schema_metadata(SUBJECT_SCHEMA.metadata)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp, compression="zstd")


def read_morphometrics(paths: Sequence[str | os.PathLike[str]]) -> pa.Table:
    """Concatenate per-subject ``morphometrics.parquet`` files."""
    return read_subject_tables(paths, SUBJECT_SCHEMA)


def alignment_table(summaries: Sequence[Mapping[str, Any]]) -> pa.Table:
    """One row per subject: lordosis and kyphosis (degrees) from ``summary["alignment"]``,
    null where not in view, or the subject failed; and, for a null angle that a withheld
    outline caused, the reason (``alignment["withheld"]``, a string per angle)."""
    rows = [(str(s["subject"]), s.get("alignment") or {}) for s in summaries]
    rows.sort(key=lambda r: r[0])

    def col(key: str) -> pa.Array:
        return pa.array([a.get(key) for _s, a in rows], pa.float64())

    def why(key: str) -> pa.Array:
        return pa.array([(a.get("withheld") or {}).get(key) for _s, a in rows], pa.string())

    return pa.Table.from_arrays(
        [
            pa.array([s for s, _a in rows], pa.string()),
            col("lordosis_deg"),
            col("kyphosis_deg"),
            why("lordosis_deg"),
            why("kyphosis_deg"),
        ],
        schema=ALIGNMENT_SCHEMA,
    )


def subject_cells(subjects: pd.DataFrame, spec: StrataSpec) -> pd.Series:
    """Each subject's reference cell (``sex=F;age=50-59``; ``all`` without declared strata;
    NA where a declared value is missing), indexed by subject."""
    import pandas as pd

    cell = pd.Series(ALL if not spec.columns else "", index=subjects.index, dtype="object")
    for col in spec.columns:
        s = subjects[col] if col in subjects.columns else pd.Series(np.nan, index=subjects.index)
        if col == spec.age_column:
            x = pd.to_numeric(s, errors="coerce").to_numpy(float)
            lab = age_band_labels(x, col, spec.age_bins)
            part = pd.Series(lab, index=subjects.index, dtype="object").where(np.isfinite(x))
        else:
            text = s.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v), na_action="ignore")
            part = (f"{col}=" + text.astype("object")).where(s.notna())
        cell = cell.where(cell == "", cell + ";") + part
    return pd.Series(cell.to_numpy(), index=subjects["subject"].astype(str).to_numpy())


def reference_table(long: pd.DataFrame) -> pd.DataFrame:
    """Percentiles per ``label`` x ``stratum`` x ``measure`` of a long frame (columns
    ``label``, ``stratum``, ``measure``, ``value``; NaN values dropped)."""
    import pandas as pd

    keys = ["label", "stratum", "measure"]
    v = long.dropna(subset=["value"])
    if v.empty:
        cols = {k: pd.Series(dtype="object") for k in keys}
        cols["n"] = pd.Series(dtype="int64")
        cols.update({f"p{p}": pd.Series(dtype="float64") for p in PERCENTILES})
        return pd.DataFrame(cols)
    g = v.groupby(keys, sort=True)["value"]
    q = g.quantile([p / 100 for p in PERCENTILES]).unstack()
    q.columns = [f"p{p}" for p in PERCENTILES]
    out = q.reset_index()
    out.insert(3, "n", g.size().to_numpy().astype("int64"))
    return out


def z_scores(rows: pd.DataFrame, ref: pd.DataFrame, measure: str) -> np.ndarray:
    """Robust z of ``rows[measure]`` against ``ref`` at each row's (``label``, ``stratum``)."""
    import pandas as pd

    r = ref[ref["measure"] == measure].set_index(["label", "stratum"])
    key = pd.MultiIndex.from_arrays([rows["label"], rows["stratum"]])
    cell = r.reindex(key)
    iqr = (cell["p75"] - cell["p25"]).to_numpy(float)
    ok = (cell["n"].to_numpy(float) >= MIN_REFERENCE_N) & (iqr > 0)
    x = rows[measure].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - cell["p50"].to_numpy(float)) / (iqr / IQR_TO_SD)
    return np.where(ok, z, np.nan)


def relabel(morpho: pd.DataFrame, structures: pa.Table) -> pd.DataFrame:
    """Take each row's ``label`` from the (review-renamed) cohort ``structures`` table by
    (``subject``, ``instance_id``): the review's renames reach the morphometrics as they
    reached the structures (:func:`spinecensus.review.apply.rename_structures`)."""
    import pandas as pd

    if morpho.empty or structures.num_rows == 0:
        return morpho
    st = structures.select(["subject", "instance_id", "label"]).to_pandas()
    st = st.dropna(subset=["label"]).drop_duplicates(["subject", "instance_id"])
    new = pd.MultiIndex.from_frame(st[["subject", "instance_id"]].astype({"instance_id": int}))
    names = pd.Series(st["label"].to_numpy(), index=new)
    key = pd.MultiIndex.from_arrays([morpho["subject"], morpho["instance_id"].astype(int)])
    found = names.reindex(key).to_numpy()
    morpho = morpho.copy()
    morpho["label"] = np.where(pd.notna(found), found, morpho["label"].to_numpy())
    return morpho


def cohort_morphometrics(
    morpho: pa.Table, subjects: pa.Table, structures: pa.Table, spec: StrataSpec
) -> tuple[pa.Table, pa.Table]:
    """``(morphometrics, reference)`` cohort tables (module docstring) from the per-subject
    rows, the review-applied ``subjects`` (``processed``, ``final_status``, strata columns)
    and ``structures`` tables."""
    import pandas as pd

    from spinecensus.review.overrides import EXCLUDED

    df = relabel(morpho.to_pandas(), structures)
    subj = subjects.to_pandas()
    cells = subject_cells(subj, spec)
    df.insert(3, "stratum", df["subject"].map(cells).astype("object"))
    final = subj.get("final_status", subj.get("transitional_status"))
    keep = subj["processed"].astype(bool) & (final.astype("object") != EXCLUDED)
    in_ref = df["subject"].isin(set(subj.loc[keep, "subject"].astype(str)))
    base = df.loc[in_ref & ~df["truncated"].astype(bool), ["label", "stratum", *MEASURES]]
    long = base.melt(id_vars=["label", "stratum"], var_name="measure", value_name="value")
    pooled = long.assign(stratum=ALL)
    parts = [pooled] + ([long.dropna(subset=["stratum"])] if spec.columns else [])
    ref = reference_table(pd.concat(parts, ignore_index=True))
    for m in Z_MEASURES:
        df[f"z_{m}"] = z_scores(df, ref, m)
    df = df.sort_values(["subject", "instance_id"], kind="stable").reset_index(drop=True)
    return _morpho_arrow(df), _reference_arrow(ref)


def _morpho_arrow(df: pd.DataFrame) -> pa.Table:
    fields = [SUBJECT_SCHEMA.field("subject"), *MORPHOMETRICS_SCHEMA]
    fields.insert(4, pa.field("stratum", pa.string()))
    fields += [pa.field(f"z_{m}", pa.float64(), metadata={"unit": "1"}) for m in Z_MEASURES]
    units = dict(UNITS, **{f"z_{m}": "1" for m in Z_MEASURES})
    schema = pa.schema(fields, metadata={UNITS_KEY: json.dumps(units)})
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def _reference_arrow(ref: pd.DataFrame) -> pa.Table:
    fields = [pa.field(k, pa.string()) for k in ("label", "stratum", "measure")]
    fields += [pa.field("n", pa.int64())]
    fields += [pa.field(f"p{p}", pa.float64()) for p in PERCENTILES]
    units = {m: UNITS[m] for m in MEASURES}
    schema = pa.schema(fields, metadata={UNITS_KEY: json.dumps(units)})
    return pa.Table.from_pandas(ref[schema.names], schema=schema, preserve_index=False)


def write_morphometrics_tables(
    morphometrics_paths: Sequence[str | os.PathLike[str]],
    summaries: Sequence[Mapping[str, Any]],
    subjects: pa.Table,
    structures: pa.Table,
    spec: StrataSpec,
    out_dir: str | os.PathLike[str],
    meta: dict[bytes, bytes],
) -> dict[str, Path]:
    """Write ``morphometrics``, ``spine_alignment`` and ``reference`` ``.parquet`` to
    ``out_dir`` atomically with the provenance ``meta``; returns their paths."""
    from spinecensus.census.tables import write_table

    out = Path(out_dir)
    morpho, ref = cohort_morphometrics(
        read_morphometrics(morphometrics_paths), subjects, structures, spec
    )
    ref_meta = dict(meta)
    ref_meta[b"spinecensus.strata"] = json.dumps(spec.as_dict()).encode()
    ref_meta[b"spinecensus.min_reference_n"] = str(MIN_REFERENCE_N).encode()
    paths = {
        "morphometrics": out / "morphometrics.parquet",
        "spine_alignment": out / "spine_alignment.parquet",
        "reference": out / "reference.parquet",
    }
    write_table(morpho, paths["morphometrics"], ref_meta)
    write_table(alignment_table(summaries), paths["spine_alignment"], meta)
    write_table(ref, paths["reference"], ref_meta)
    return paths
