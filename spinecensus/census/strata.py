"""Prevalence strata by declaration: which sheet columns stratify ``prevalence.parquet``.

The config's ``prevalence`` section names them (:class:`StrataSpec`): ``strata`` lists the
covariate columns, ``age_column`` names the one column binned by ``age_bins`` (edges in the
column's unit, years).  Nothing is guessed from column names or types: an undeclared column
is never a stratum, and a declared one that the sheet lacks, or that collides with an
output column, stops the run at parse time (:func:`check_declaration`, called by
``workflow/rules/common.smk``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spinecensus.census.sheet import SampleSheetError, check_columns

#: default age bin edges, years: decades 0-9 ... 80-89, then ``>=90``
DECADES = tuple(float(e) for e in range(0, 100, 10))
#: a declared stratum column (other than the age column) with more distinct values than this
#: is an error: it is an identifier or a continuous measurement, not a grouping
MAX_VALUES_PER_STRATUM = 50


@dataclass(frozen=True)
class StrataSpec:
    """The declared strata (the config's ``prevalence`` section).

    Attributes:
        columns: sheet columns that stratify the prevalence, in output order.
        age_column: the column binned by ``age_bins`` (when it is in ``columns``).
        age_bins: strictly increasing bin edges (years); bin ``i`` is ``[e_i, e_i+1)``,
            below the first edge ``<e_0``, from the last edge on ``>=e_last``.
    """

    columns: tuple[str, ...] = ()
    age_column: str | None = "age"
    age_bins: tuple[float, ...] = DECADES

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> StrataSpec:
        """The spec of ``config["prevalence"]``; no section -> no strata (only ``all``).

        Raises ``ValueError`` for age bins that are not strictly increasing.
        """
        sec = dict((config or {}).get("prevalence") or {})
        bins = tuple(float(e) for e in sec.get("age_bins", DECADES))
        if len(bins) < 1 or any(b <= a for a, b in zip(bins, bins[1:], strict=False)):
            raise ValueError(f"config prevalence.age_bins {list(bins)}: not strictly increasing")
        age = sec.get("age_column", "age")
        return cls(tuple(str(c) for c in sec.get("strata") or ()), age or None, bins)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (table metadata ``spinecensus.strata``)."""
        return {
            "strata": list(self.columns),
            "age_column": self.age_column,
            "age_bins": list(self.age_bins),
        }


def check_declaration(
    sheet_df: Any, spec: StrataSpec, sheet: str | os.PathLike[str] = "<sheet>"
) -> None:
    """Raise :class:`spinecensus.census.sheet.SampleSheetError` naming the column when the
    sheet does not fit the declared strata.

    ``sheet_df``: the sample sheet as a DataFrame, or only its column names (the synthetic
    demo's sheet is written by a job, so at parse time only its columns are known).  Names
    are checked by :func:`spinecensus.census.sheet.check_columns`; with data also the age
    column's type and each declared column's number of values.
    """
    columns = list(getattr(sheet_df, "columns", sheet_df))
    check_columns(columns, spec.columns, sheet)
    if hasattr(sheet_df, "columns"):
        strata(sheet_df, spec, sheet)


def _age_label(col: str, edges: Sequence[float], i: int) -> str:
    """``age=50-59`` for whole-number edges, ``age=[52.5,60)`` otherwise."""
    if i < 0:
        return f"{col}<{edges[0]:g}"
    if i >= len(edges) - 1:
        return f"{col}>={edges[-1]:g}"
    lo, hi = edges[i], edges[i + 1]
    if float(lo).is_integer() and float(hi).is_integer():
        return f"{col}={int(lo)}-{int(hi) - 1}"
    return f"{col}=[{lo:g},{hi:g})"


def age_bin_index(ages: Any, edges: Sequence[float]) -> np.ndarray:
    """(N,) age bin of each age (years): -1 below ``edges[0]``, ``i`` for
    ``edges[i] <= age < edges[i + 1]``, ``len(edges) - 1`` at or above the last edge;
    meaningless for a non-finite age (mask those with ``np.isfinite``)."""
    x = np.asarray(ages, dtype=float)
    return np.searchsorted(np.asarray(edges, float), np.where(np.isfinite(x), x, 0.0), "right") - 1


def age_band_names(col: str, edges: Sequence[float]) -> list[str]:
    """Every age band's stratum label, youngest (``age<e0``) to oldest (``age>=eN``), in the
    order of :func:`age_bin_index` + 1."""
    return [_age_label(col, edges, i) for i in range(-1, len(edges))]


def age_band_labels(ages: Any, col: str, edges: Sequence[float]) -> np.ndarray:
    """(N,) object array: each age's band label as the prevalence's strata name it
    (``age=50-59``), None where the age is not finite."""
    x = np.asarray(ages, dtype=float)
    names = np.array(age_band_names(col, edges), dtype=object)
    return np.where(np.isfinite(x), names[age_bin_index(x, edges) + 1], None)


def _age_strata(values: Any, col: str, edges: Sequence[float], sheet) -> list:
    import pandas as pd

    if not (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)):
        raise SampleSheetError(
            f"sample sheet {sheet}: prevalence.age_column {col!r} is not numeric "
            f"(dtype {values.dtype})"
        )
    x = values.to_numpy(float)
    finite = np.isfinite(x)
    idx = age_bin_index(x, edges)
    out = []
    for i in sorted({int(v) for v in idx[finite]}):
        out.append((_age_label(col, edges, i), col, finite & (idx == i)))
    return out


def strata(
    subjects: Any, spec: StrataSpec, sheet: str | os.PathLike[str] = "<sheet>"
) -> list[tuple[str, str, np.ndarray]]:
    """Strata of a subjects DataFrame: ``("all", "", mask)`` then one per declared value.

    Each declared column gives one stratum per value present (``sex=F``; numbers as
    ``site=3``, floats ``%g``); the age column one per bin that holds a subject
    (``age=50-59``).  Missing values belong to no stratum of that column.  Raises
    :class:`spinecensus.census.sheet.SampleSheetError` for a declared column that is absent,
    a non-numeric age column, or more than :data:`MAX_VALUES_PER_STRATUM` values.
    """
    import pandas as pd

    out: list[tuple[str, str, np.ndarray]] = [("all", "", np.ones(len(subjects), dtype=bool))]
    for col in spec.columns:
        if col not in subjects.columns:
            raise SampleSheetError(
                f"sample sheet {sheet}: prevalence.strata declares column {col!r}, "
                "which the sheet lacks"
            )
        s = subjects[col]
        if col == spec.age_column:
            out.extend(_age_strata(s, col, spec.age_bins, sheet))
            continue
        if s.nunique(dropna=True) > MAX_VALUES_PER_STRATUM:
            raise SampleSheetError(
                f"sample sheet {sheet}: declared stratum {col!r} has {s.nunique()} distinct "
                f"values (at most {MAX_VALUES_PER_STRATUM}); bin it in the sheet, or declare "
                "it as prevalence.age_column with prevalence.age_bins"
            )
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            for v in sorted(s.dropna().unique()):
                label = f"{col}={v:g}" if isinstance(v, float) else f"{col}={v}"
                out.append((label, col, (s == v).fillna(False).to_numpy(bool)))
            continue
        text = s.astype("string")
        for v in sorted(text.dropna().unique()):
            out.append((f"{col}={v}", col, (text == v).fillna(False).to_numpy(bool)))
    return out
