"""Transitional-vertebra prevalence per stratum, with Wilson 95 % confidence intervals.

``prevalence.parquet`` has one row per status (lumbarization, sacralization) x stratum: all
subjects, then one stratum per value of each sample-sheet covariate (:func:`strata`).
Prevalences are fractions 0-1 of the processed subjects whose status is determinable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

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
