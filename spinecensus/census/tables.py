"""Cohort result tables (Parquet via pyarrow), Wilson confidence intervals, table metadata.

The aggregate step of the workflow reads the per-subject outputs written by
:func:`spinecensus.census.cohort.analyse_subject` (``summary.json`` + ``structures.parquet`` per
subject) and writes four tables to ``results/tables/``:

* ``structures.parquet`` — one row per subject x structure (:data:`STRUCTURES_SCHEMA`);
* ``subjects.parquet`` — one row per subject of the sample sheet, processed or failed;
* ``prevalence.parquet`` — transitional-vertebra prevalence per status x stratum with
  Wilson 95 % intervals (:func:`prevalence_table`);
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
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from spinecensus import __version__
from spinecensus.io import atomic_path

#: two-sided 95 % normal quantile used by the Wilson interval
Z95 = 1.959963984540054

#: the statuses prevalence is reported for (``normal`` is the complement)
PREVALENCE_STATUSES = ("lumbarization", "sacralization")
#: statuses that count as "determinable" (the prevalence denominator)
DETERMINABLE = ("normal", "lumbarization", "sacralization")

#: sample-sheet columns that are never strata (paths, IDs, ground truth)
NON_COVARIATES = frozenset(
    {"subject", "image", "semantic", "instances", "labels", "anomaly", "true_status"}
)
#: a text covariate with more distinct values than this is an identifier, not a stratum
MAX_STRATA_PER_COVARIATE = 20

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

PREVALENCE_SCHEMA = pa.schema(
    [
        ("status", pa.string()),
        ("stratum", pa.string()),
        ("covariate", pa.string()),
        ("n", pa.int64()),
        ("denominator", pa.int64()),
        ("prevalence", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("true_n", pa.int64()),
        ("true_prevalence", pa.float64()),
    ]
)

#: region names (``spinecensus.anatomy.labels.region``) that get a per-subject count column
REGIONS = ("cervical", "thoracic", "lumbar", "sacral")


# --------------------------------------------------------------------------- statistics


def wilson_interval(
    n: np.ndarray | int, d: np.ndarray | int, z: float = Z95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion ``n / d`` (vectorised).

    Returns ``(low, high)`` as fractions 0-1; NaN where ``d == 0``.  Wilson rather than
    the Wald interval because prevalences of a few percent in small strata make the Wald
    interval collapse to zero width (and below 0).
    """
    n_arr = np.asarray(n, dtype=float)
    d_arr = np.asarray(d, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = n_arr / d_arr
        z2 = z * z
        denom = 1.0 + z2 / d_arr
        centre = (p + z2 / (2 * d_arr)) / denom
        half = z * np.sqrt(p * (1 - p) / d_arr + z2 / (4 * d_arr * d_arr)) / denom
        # exact bounds at the edges (the formula gives them only up to rounding)
        low = np.where(n_arr == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
        high = np.where(n_arr == d_arr, 1.0, np.clip(centre + half, 0.0, 1.0))
        low = np.where(d_arr > 0, low, np.nan)
        high = np.where(d_arr > 0, high, np.nan)
    return low, high


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


def read_structures(paths: Sequence[str | os.PathLike[str]]) -> pa.Table:
    """Concatenate per-subject ``structures.parquet`` files (multi-threaded read)."""
    if not paths:
        return STRUCTURES_SCHEMA.empty_table()
    import pyarrow.dataset as ds

    dataset = ds.dataset([str(p) for p in paths], format="parquet", schema=STRUCTURES_SCHEMA)
    return dataset.to_table(use_threads=True)


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
    ``subject`` column).  The sheet's ``anomaly`` column becomes ``true_status``; it is only
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
    if sheet is not None and len(sheet):
        paths = ("image", "semantic", "instances", "labels")
        sh = sheet.drop(columns=[c for c in paths if c in sheet.columns])
        sh = sh.rename(columns={"anomaly": "true_status"})
        sh = sh.drop(columns=[c for c in sh.columns if c in df.columns and c != "subject"])
        df = df.merge(sh, on="subject", how="left")
    df = df.sort_values("subject", kind="stable").reset_index(drop=True)
    return pa.Table.from_pandas(df, preserve_index=False)


def strata(sheet_df: Any) -> list[tuple[str, str, np.ndarray]]:
    """Strata of a subjects DataFrame: ``("all", "", mask)`` then one per covariate value.

    Covariates are the sample sheet's extra columns (never ``anomaly``/``true_status``,
    IDs or paths).  Strings/categories: one stratum per value (``sex=F``); a numeric column
    named like ``age``: decade bins (``age=50-59``); other numeric columns with at most 12
    distinct values: one stratum per value; other numeric columns, and text columns with
    more than :data:`MAX_STRATA_PER_COVARIATE` values (identifiers), are skipped.
    """
    import pandas as pd

    out: list[tuple[str, str, np.ndarray]] = [("all", "", np.ones(len(sheet_df), dtype=bool))]
    for col in sheet_df.columns:
        if col in NON_COVARIATES:
            continue
        s = sheet_df[col]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            vals = s.astype("string")
            if vals.nunique(dropna=True) > MAX_STRATA_PER_COVARIATE:
                continue
            for v in sorted(vals.dropna().unique()):
                out.append((f"{col}={v}", col, (vals == v).fillna(False).to_numpy(bool)))
        elif "age" in col.lower():
            dec = np.floor(s.to_numpy(float) / 10.0) * 10
            for lo in sorted({float(d) for d in dec if np.isfinite(d)}):
                label = f"{col}={int(lo)}-{int(lo) + 9}"
                out.append((label, col, dec == lo))
        elif s.nunique(dropna=True) <= 12:
            for v in sorted(s.dropna().unique()):
                label = f"{col}={v:g}" if isinstance(v, float) else f"{col}={v}"
                out.append((label, col, (s == v).fillna(False).to_numpy(bool)))
    return out


def prevalence_table(subjects: Any, covariates: Iterable[str] | None = None) -> pa.Table:
    """Prevalence of each transitional status per stratum (Wilson 95 % CI).

    ``subjects``: pandas DataFrame with ``transitional_status``, ``processed`` and the
    covariate columns (``covariates``: which ones; default all non-output sheet columns).
    ``denominator`` = processed subjects whose status is determinable (normal,
    lumbarization or sacralization); ``n`` = those with the status.  ``true_n`` /
    ``true_prevalence`` count the sheet's ground truth (``true_status``) over the *same*
    denominator subjects, for synthetic validation; null when there is no ground truth.
    """
    status = subjects["transitional_status"].astype("string").fillna("undetermined")
    determinable = status.isin(DETERMINABLE).to_numpy(bool).copy()
    if "processed" in subjects.columns:
        determinable &= subjects["processed"].fillna(False).to_numpy(bool)
    has_truth = "true_status" in subjects.columns
    truth = subjects["true_status"].astype("string") if has_truth else None
    cov_cols = list(covariates) if covariates is not None else []
    strat = strata(subjects[cov_cols]) if cov_cols else strata(subjects.iloc[:, :0])
    recs: dict[str, list[Any]] = {f.name: [] for f in PREVALENCE_SCHEMA}
    for st in PREVALENCE_STATUSES:
        hit = (status == st).to_numpy(bool)
        true_hit = (truth == st).fillna(False).to_numpy(bool) if truth is not None else None
        for label, cov, mask in strat:
            denom = int(np.count_nonzero(mask & determinable))
            n = int(np.count_nonzero(mask & determinable & hit))
            recs["status"].append(st)
            recs["stratum"].append(label)
            recs["covariate"].append(cov or None)
            recs["n"].append(n)
            recs["denominator"].append(denom)
            recs["prevalence"].append(n / denom if denom else math.nan)
            if true_hit is not None:
                tn = int(np.count_nonzero(mask & determinable & true_hit))
                recs["true_n"].append(tn)
                recs["true_prevalence"].append(tn / denom if denom else math.nan)
            else:
                recs["true_n"].append(None)
                recs["true_prevalence"].append(None)
    low, high = wilson_interval(np.array(recs["n"]), np.array(recs["denominator"]))
    recs["ci_low"] = [float(v) for v in low]
    recs["ci_high"] = [float(v) for v in high]
    arrays = [pa.array(recs[f.name], type=f.type) for f in PREVALENCE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=PREVALENCE_SCHEMA)


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


def aggregate(
    summary_paths: Sequence[str | os.PathLike[str]],
    structures_paths: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    sheet: Any | None = None,
    config: Mapping[str, Any] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Build the four cohort tables from per-subject files; returns their paths.

    ``sheet``: the sample sheet as a pandas DataFrame (covariates, ``anomaly``).  Failed
    subjects' ``structures.parquet`` are empty, so they contribute no structure rows.
    """
    out = Path(out_dir)
    summaries = read_summaries(summary_paths)
    structures = read_structures(structures_paths)
    subjects = subjects_table(summaries, structures, sheet)
    sub_df = subjects.to_pandas()
    covariates = [
        c for c in (sheet.columns if sheet is not None else []) if c not in NON_COVARIATES
    ]
    prevalence = prevalence_table(sub_df, covariates)
    failures = failures_table(summaries)
    meta = table_metadata(
        config,
        n_subjects=str(len(summaries)),
        n_failed=str(failures.num_rows),
        **dict(extra_metadata or {}),
    )
    paths = {
        "structures": out / "structures.parquet",
        "subjects": out / "subjects.parquet",
        "prevalence": out / "prevalence.parquet",
        "failures": out / "failures.parquet",
    }
    write_table(structures, paths["structures"], meta)
    write_table(subjects, paths["subjects"], meta)
    write_table(prevalence, paths["prevalence"], meta)
    write_table(failures, paths["failures"], meta)
    return paths
