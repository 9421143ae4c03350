"""Transitional-vertebra prevalence per stratum: Wilson 95 % intervals of the calls and,
with an expert-validated subset, the misclassification-corrected (Rogan–Gladen) estimate.

``prevalence.parquet`` has one row per status (lumbarization, sacralization) x stratum x
estimate: all subjects, then one stratum per declared covariate value
(:func:`spinecensus.census.strata.strata`).  ``estimate`` is ``called`` (the pipeline's calls,
Wilson interval) and, where the sheet has ``expert_status``, ``corrected``
(:mod:`spinecensus.census.misclassification`).  Prevalences are fractions 0-1 of the processed
subjects whose status is determinable.  The status is ``final_status`` where the subjects table
has it (the pipeline's call after an analyst's review, :mod:`spinecensus.review`), else
``transitional_status``; subjects a reviewer excluded leave every denominator and are counted
per stratum as ``n_excluded``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from spinecensus.census.misclassification import accuracy, corrected_prevalence
from spinecensus.census.strata import StrataSpec, strata

#: two-sided 95 % normal quantile used by the Wilson interval
Z95 = 1.959963984540054

#: the statuses prevalence is reported for (``normal`` is the complement)
PREVALENCE_STATUSES = ("lumbarization", "sacralization")
#: statuses that count as "determinable" (the prevalence denominator)
DETERMINABLE = ("normal", "lumbarization", "sacralization")
#: ``final_status`` of a subject a reviewer excluded (``spinecensus.review.overrides.EXCLUDED``)
EXCLUDED = "excluded"
#: ``decided_by`` of a reviewer's decision (``spinecensus.review.overrides.REVIEW``)
REVIEW = "review"

PREVALENCE_SCHEMA = pa.schema(
    [
        ("status", pa.string()),
        ("stratum", pa.string()),
        ("covariate", pa.string()),
        ("estimate", pa.string()),
        ("n", pa.int64()),
        ("denominator", pa.int64()),
        ("prevalence", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n_undetermined", pa.int64()),
        ("n_failed", pa.int64()),
        ("n_excluded", pa.int64()),
        ("true_n", pa.int64()),
        ("true_prevalence", pa.float64()),
        ("sensitivity", pa.float64()),
        ("specificity", pa.float64()),
        ("n_validated", pa.int64()),
        ("n_validated_positive", pa.int64()),
        ("note", pa.string()),
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


def _expert(subjects: Any) -> Any | None:
    """The ``expert_status`` column (string) where the sheet has one, else None; the
    validated subset is its non-empty entries."""
    if "expert_status" not in subjects.columns:
        return None
    expert = subjects["expert_status"].astype("string").str.strip()
    return expert.mask(expert == "")


def prevalence_table(subjects: Any, declared: StrataSpec | Iterable[str] | None = None) -> pa.Table:
    """Prevalence of each transitional status per stratum: the calls with a Wilson 95 % CI
    (``estimate`` = ``called``) and, where ``subjects`` has ``expert_status``, the
    Rogan–Gladen correction (``corrected``) right after each called row.

    ``subjects``: pandas DataFrame with ``transitional_status`` (or ``final_status``, which
    then decides), ``processed`` and the declared covariate columns.  ``declared``: the
    strata (:class:`StrataSpec`; a list of column names is a spec with the default age column
    and decade bins); None: only ``all``.
    ``denominator`` = processed subjects whose status is determinable (normal,
    lumbarization or sacralization); ``n`` = those with the status; ``n_undetermined`` and
    ``n_failed`` = the stratum's processed subjects without a status and its failed subjects
    (a failed subject a reviewer gave a status counts in the denominator instead);
    ``n_excluded`` = its subjects a reviewer excluded (in no other count).
    ``true_n`` / ``true_prevalence`` count the sheet's ground truth (``true_status``) over the
    *same* denominator subjects, for synthetic validation; null when there is no ground truth.
    Se and Sp of the correction come from the validated subjects of the denominator (all
    strata pooled) whose expert status is determinable.
    """
    if declared is None:
        spec = StrataSpec()
    elif isinstance(declared, StrataSpec):
        spec = declared
    else:
        spec = StrataSpec(columns=tuple(declared))
    col = "final_status" if "final_status" in subjects.columns else "transitional_status"
    status = subjects[col].astype("string").fillna("undetermined")
    processed = np.ones(len(subjects), dtype=bool)
    if "processed" in subjects.columns:
        processed = subjects["processed"].fillna(False).to_numpy(bool)
    excluded = (status == EXCLUDED).to_numpy(bool)
    # a reviewer's status counts for a subject the pipeline failed on, too
    counted = processed.copy()
    if "decided_by" in subjects.columns:
        counted |= (subjects["decided_by"].astype("string") == REVIEW).fillna(False).to_numpy(bool)
    determinable = status.isin(DETERMINABLE).to_numpy(bool) & counted & ~excluded
    truth = subjects["true_status"].astype("string") if "true_status" in subjects else None
    expert = _expert(subjects)
    validated = None
    if expert is not None:
        validated = determinable & expert.isin(DETERMINABLE).fillna(False).to_numpy(bool)
    strat = strata(subjects, spec)
    recs: dict[str, list[Any]] = {f.name: [] for f in PREVALENCE_SCHEMA}

    def add(**row: Any) -> None:
        for name in recs:
            recs[name].append(row.get(name))

    for st in PREVALENCE_STATUSES:
        hit = (status == st).to_numpy(bool)
        true_hit = (truth == st).fillna(False).to_numpy(bool) if truth is not None else None
        acc = None
        if validated is not None:
            acc = accuracy(hit[validated], (expert == st).fillna(False).to_numpy(bool)[validated])
        for label, cov, mask in strat:
            denom = int(np.count_nonzero(mask & determinable))
            n = int(np.count_nonzero(mask & determinable & hit))
            low, high = wilson_interval(n, denom)
            common = {
                "status": st,
                "stratum": label,
                "covariate": cov or None,
                "n": n,
                "denominator": denom,
                "n_undetermined": int(
                    np.count_nonzero(mask & processed & ~determinable & ~excluded)
                ),
                "n_failed": int(np.count_nonzero(mask & ~processed & ~determinable & ~excluded)),
                "n_excluded": int(np.count_nonzero(mask & excluded)),
            }
            if true_hit is not None:
                tn = int(np.count_nonzero(mask & determinable & true_hit))
                common["true_n"] = tn
                common["true_prevalence"] = tn / denom if denom else math.nan
            add(
                **common,
                estimate="called",
                prevalence=n / denom if denom else math.nan,
                ci_low=float(low),
                ci_high=float(high),
            )
            if acc is None:
                continue
            p, lo, hi, note = corrected_prevalence(n, denom, acc, st)
            add(
                **common,
                estimate="corrected",
                prevalence=p,
                ci_low=lo,
                ci_high=hi,
                sensitivity=acc.sensitivity,
                specificity=acc.specificity,
                n_validated=acc.n_positive + acc.n_negative,
                n_validated_positive=acc.n_positive,
                note=note,
            )
    arrays = [pa.array(recs[f.name], type=f.type) for f in PREVALENCE_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=PREVALENCE_SCHEMA)
