"""Cohort result tables (Parquet via pyarrow): schemas, table metadata, the four tables.

The aggregate step of the workflow reads the per-subject outputs written by
:func:`spinecensus.census.analyse_job.analyse` (``summary.json`` + ``structures.parquet`` per
subject) and writes four tables to ``results/tables/``:

* ``structures.parquet`` — one row per subject x structure (:data:`STRUCTURES_SCHEMA`);
* ``subjects.parquet`` — one row per subject of the sample sheet, processed or failed;
* ``prevalence.parquet`` — transitional-vertebra prevalence per status x declared stratum:
  the calls with Wilson 95 % intervals and, with an expert-validated subset, the
  misclassification-corrected estimate (:func:`spinecensus.census.prevalence.prevalence_table`);
* ``failures.parquet`` — ``subject``, ``rule``, ``error`` of every failed subject (an empty
  table with the same schema when none failed).

Units: volumes mm³, centroids mm in scanner (world) space of the stored affine, prevalence a
fraction 0-1.  Column documentation: ``docs/tables.md``.

Scale: the per-subject Parquet files are read with ``pyarrow.dataset`` (multi-threaded) and
concatenated column-wise; no pandas row appends, so 10,833 subjects aggregate in seconds
(``benchmarks/dag_scale.py``).  Tables are always rebuilt from the per-subject files and
written atomically, never appended in place.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from spinecensus import __version__
from spinecensus.census.misclassification import METHOD as CORRECTION_METHOD
from spinecensus.census.presacral import STATUS_DEFINITION, presacral_counts
from spinecensus.census.prevalence import prevalence_table
from spinecensus.census.strata import StrataSpec, check_declaration
from spinecensus.io import atomic_path

STRUCTURES_SCHEMA = pa.schema(
    [
        ("subject", pa.string()),
        ("label", pa.string()),
        ("kind", pa.string()),
        ("region", pa.string()),
        ("instance_id", pa.int32()),
        ("voxel_count", pa.int64()),
        ("volume_mm3", pa.float64()),
        ("centroid_x_mm", pa.float64()),
        ("centroid_y_mm", pa.float64()),
        ("centroid_z_mm", pa.float64()),
        ("confidence", pa.float64()),
    ]
)

FAILURES_SCHEMA = pa.schema(
    [("subject", pa.string()), ("rule", pa.string()), ("error", pa.string())]
)

#: region names (``spinecensus.anatomy.labels.region``) that get a per-subject count column
REGIONS = ("cervical", "thoracic", "lumbar", "sacral")


# --------------------------------------------------------------------------- metadata


def config_hash(config: Mapping[str, Any] | None) -> str:
    """sha256 (first 16 hex digits) of the config as canonical JSON (sorted keys)."""
    blob = json.dumps(config or {}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def table_metadata(config: Mapping[str, Any] | None, **extra: Any) -> dict[bytes, bytes]:
    """Key/value metadata stored in every table's Parquet schema (``spinecensus.*`` keys)."""
    meta = {
        "spinecensus.pipeline_version": __version__,
        "spinecensus.config_hash": config_hash(config),
        "spinecensus.created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spinecensus.config": json.dumps(config or {}, sort_keys=True, default=str),
    }
    for k, v in extra.items():
        meta[f"spinecensus.{k}"] = v if isinstance(v, str) else json.dumps(v, default=str)
    return {k.encode(): v.encode() for k, v in meta.items()}


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``spinecensus.*`` key/value metadata of a table (prefix stripped)."""
    meta = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in meta.items():
        key = k.decode()
        if key.startswith("spinecensus."):
            out[key.removeprefix("spinecensus.")] = v.decode()
    return out


def write_table(
    table: pa.Table, path: str | os.PathLike[str], metadata: dict[bytes, bytes]
) -> None:
    """Write a Parquet table atomically with ``metadata`` merged into its schema."""
    merged = dict(table.schema.metadata or {})
    merged.update(metadata)
    table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# --------------------------------------------------------------------------- per subject


def structures_table(subject: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """One subject's structure rows (``pipeline`` dicts) as a table in :data:`STRUCTURES_SCHEMA`.

    Missing columns become nulls; extra keys are dropped (the cohort table has one schema).
    """
    cols: dict[str, list[Any]] = {f.name: [] for f in STRUCTURES_SCHEMA}
    for row in rows:
        for name in cols:
            cols[name].append(subject if name == "subject" else row.get(name))
    arrays = [pa.array(cols[f.name], type=f.type) for f in STRUCTURES_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=STRUCTURES_SCHEMA)


def write_subject_structures(
    subject: str, rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]
) -> None:
    """Write one subject's ``structures.parquet`` atomically (empty table for no rows)."""
    table = structures_table(subject, rows)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# --------------------------------------------------------------------------- aggregation


def read_subject_tables(paths: Sequence[str | os.PathLike[str]], schema: pa.Schema) -> pa.Table:
    """Concatenate per-subject Parquet files of one ``schema`` (multi-threaded read; the
    empty table of that schema for no paths)."""
    if not paths:
        return schema.empty_table()
    import pyarrow.dataset as ds

    dataset = ds.dataset([str(p) for p in paths], format="parquet", schema=schema)
    return dataset.to_table(use_threads=True)


def read_structures(paths: Sequence[str | os.PathLike[str]]) -> pa.Table:
    """Concatenate per-subject ``structures.parquet`` files."""
    return read_subject_tables(paths, STRUCTURES_SCHEMA)


def _read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_summaries(paths: Sequence[str | os.PathLike[str]], threads: int = 8) -> list[dict]:
    """Read per-subject ``summary.json`` files (thread pool: the cost is file-system latency)."""
    if len(paths) < 64:
        return [_read_json(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(_read_json, paths, chunksize=64))


def _flags(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return ";".join(str(v) for v in value)


def subjects_table(
    summaries: Sequence[Mapping[str, Any]],
    structures: pa.Table,
    sheet: Any | None = None,
) -> pa.Table:
    """One row per subject from the summaries, region counts from ``structures`` and the
    sample sheet's covariates (``sheet``: a pandas DataFrame indexed by nothing, with a
    ``subject`` column).  The sheet's ``anomaly`` column becomes ``true_status`` (replaced by
    ``expected_status`` where a variant cohort's sheet gives a definite one); it is only
    carried along for evaluation, never used to compute any other column.
    """
    import pandas as pd

    rows = []
    for s in summaries:
        ok = s.get("status") == "ok"
        vols = s.get("volumes_mm3") or {}
        rows.append(
            {
                "subject": str(s["subject"]),
                "processed": ok,
                "transitional_status": s.get("transitional_status") if ok else "undetermined",
                "lumbar_count": s.get("lumbar_count") if ok else None,
                "n_vertebrae": s.get("n_vertebrae") if ok else None,
                "n_discs": s.get("n_discs") if ok else None,
                "split_valid": bool(s.get("split_valid")) if ok else False,
                "invalid_reason": s.get("invalid_reason") if ok else None,
                "first_label": s.get("first_visible_label", s.get("first_label")) if ok else None,
                "last_label": s.get("last_visible_label", s.get("last_label")) if ok else None,
                "decided_by": s.get("decided_by") if ok else None,
                "qc_flags": _flags(s.get("qc_flags")),
                "total_volume_mm3": float(sum(vols.values())) if ok and vols else None,
                "failed_rule": None if ok else s.get("rule"),
                "error": None if ok else s.get("error"),
                "segmentation_method": s.get("segmentation_method"),
                "model": s.get("model"),
                "labeler": s.get("labeler"),
                "pipeline_version": s.get("pipeline_version", __version__),
                "input_sha256": s.get("input_sha256"),
                "analyse_seconds": s.get("seconds"),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["subject", "processed", "transitional_status"])
    # counts by region, from the structure rows (vertebrae only)
    if structures.num_rows:
        st = structures.select(["subject", "kind", "region"]).to_pandas()
        st = st[st["kind"] == "vertebra"]
        counts = st.groupby(["subject", "region"]).size().unstack(fill_value=0)
    else:
        counts = pd.DataFrame()
    for col in ("lumbar_count", "n_vertebrae", "n_discs"):
        if col in df.columns:
            df[col] = pd.array(df[col].tolist(), dtype="Int64")
    # fixed Parquet types even when a column is all-null in this run (e.g. failed_rule
    # when nothing failed), so tables of different runs concatenate
    for col in ("invalid_reason", "first_label", "last_label", "decided_by", "failed_rule",
                "error", "segmentation_method", "model", "labeler", "input_sha256"):  # fmt: skip
        if col in df.columns:
            df[col] = df[col].astype("string")
    for col in ("total_volume_mm3", "analyse_seconds"):
        if col in df.columns:
            df[col] = pd.array(df[col].tolist(), dtype="Float64")
    for reg in REGIONS:
        col = counts[reg] if reg in counts.columns else pd.Series(dtype="int64")
        df[f"n_{reg}"] = df["subject"].map(col).astype("Int64")
        df.loc[~df["processed"].astype(bool), f"n_{reg}"] = pd.NA
        df.loc[df["processed"].astype(bool) & df[f"n_{reg}"].isna(), f"n_{reg}"] = 0
    at = df.columns.get_loc("lumbar_count") + 1 if "lumbar_count" in df.columns else len(df.columns)
    df.insert(int(at), "presacral_count", presacral_counts(df))
    if sheet is not None and len(sheet):
        paths = ("image", "semantic", "instances", "labels")
        sh = sheet.drop(columns=[c for c in paths if c in sheet.columns])
        sh = sh.rename(columns={"anomaly": "true_status"})
        if "expected_status" in sh.columns and "true_status" in sh.columns:
            # a variant cohort's truth is the status by presacral count (a T13 spine is
            # lumbarization by count, whatever its lumbosacral anomaly); where the count is
            # out of view, the anomaly stays the best truth there is
            by_count = sh["expected_status"].astype("string")
            definite = by_count.isin(("normal", "lumbarization", "sacralization")).fillna(False)
            sh["true_status"] = by_count.where(definite, sh["true_status"].astype("string"))
        sh = sh.drop(columns=[c for c in sh.columns if c in df.columns and c != "subject"])
        df = df.merge(sh, on="subject", how="left")
    df = df.sort_values("subject", kind="stable").reset_index(drop=True)
    return pa.Table.from_pandas(df, preserve_index=False)


def failures_table(summaries: Sequence[Mapping[str, Any]]) -> pa.Table:
    """``subject``, ``rule``, ``error`` for every failed subject (empty, same schema, if none)."""
    failed = [s for s in summaries if s.get("status") != "ok"]
    return pa.Table.from_arrays(
        [
            pa.array([str(s["subject"]) for s in failed], pa.string()),
            pa.array([str(s.get("rule") or "unknown") for s in failed], pa.string()),
            pa.array([str(s.get("error") or "unknown error") for s in failed], pa.string()),
        ],
        schema=FAILURES_SCHEMA,
    )


def write_cohort_tables(
    summary_paths: Sequence[str | os.PathLike[str]],
    structures_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    sheet: Any | None = None,
    config: Mapping[str, Any] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    overrides: str | os.PathLike[str] | None = None,
    morphometrics_paths: Sequence[str | os.PathLike[str]] | None = None,
) -> dict[str, Path]:
    """Build the four cohort tables from per-subject files; returns their paths.

    With ``morphometrics_paths`` (per-subject ``morphometrics.parquet``) also the
    ``morphometrics``, ``spine_alignment`` and ``reference`` tables
    (:func:`spinecensus.census.morphometrics_tables.write_morphometrics_tables`), with the
    review's renames and exclusions applied.

    ``sheet``: the sample sheet as a pandas DataFrame (covariates, ``anomaly``,
    ``expert_status``).  The prevalence strata are the config's declared ones
    (:meth:`StrataSpec.from_config`); a sheet that does not fit them raises
    :class:`spinecensus.census.sheet.SampleSheetError` naming the column.  Failed subjects'
    ``structures.parquet`` are empty, so they contribute no structure rows.
    ``overrides``: an analyst's overrides TSV (:mod:`spinecensus.review.overrides`), applied
    to ``subjects`` and ``structures`` (:func:`spinecensus.review.apply.apply_overrides`);
    prevalence is computed on ``final_status``.  A bad row raises
    :class:`spinecensus.review.overrides.OverridesError` naming it.  Every table carries the
    provenance metadata (:func:`spinecensus.review.provenance.provenance`).
    """
    from spinecensus.review.apply import apply_overrides
    from spinecensus.review.overrides import read_overrides
    from spinecensus.review.provenance import provenance

    out = Path(out_dir)
    spec = StrataSpec.from_config(config)
    if sheet is not None:
        check_declaration(sheet, spec)
    summaries = read_summaries(summary_paths)
    structures = read_structures(structures_paths)
    subjects = subjects_table(summaries, structures, sheet)
    review = None
    if overrides:
        review = read_overrides(overrides, [str(s["subject"]) for s in summaries])
    subjects, structures = apply_overrides(subjects, structures, review)
    prevalence = prevalence_table(subjects.to_pandas(), spec)
    failures = failures_table(summaries)
    meta = table_metadata(
        config,
        n_subjects=str(len(summaries)),
        n_failed=str(failures.num_rows),
        status_definition=STATUS_DEFINITION,
        **provenance(config, overrides),
        **dict(extra_metadata or {}),
    )
    prev_meta = dict(meta)
    prev_meta[b"spinecensus.strata"] = json.dumps(spec.as_dict()).encode()
    if "corrected" in prevalence.column("estimate").to_pylist():
        prev_meta[b"spinecensus.correction"] = CORRECTION_METHOD.encode()
    paths = {
        "structures": out / "structures.parquet",
        "subjects": out / "subjects.parquet",
        "prevalence": out / "prevalence.parquet",
        "failures": out / "failures.parquet",
    }
    write_table(structures, paths["structures"], meta)
    write_table(subjects, paths["subjects"], meta)
    write_table(prevalence, paths["prevalence"], prev_meta)
    write_table(failures, paths["failures"], meta)
    if morphometrics_paths is not None:
        from spinecensus.census.morphometrics_tables import write_morphometrics_tables

        paths.update(
            write_morphometrics_tables(
                morphometrics_paths, summaries, subjects, structures, spec, out, meta
            )
        )
    return paths
