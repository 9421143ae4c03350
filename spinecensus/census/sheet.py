"""The sample sheet: reading (TSV or CSV, UTF-8), subject-ID checks, absolute paths.

Runs at workflow parse time (``workflow/rules/common.smk``): a bad sheet stops the run before
any job, with a message naming the file, the row (header = row 1) and the problem.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: a subject ID must be usable as a directory name on any file system and in a shell:
#: letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit; at most 64 chars
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


#: sheet columns the pipeline reads itself: IDs, paths, the synthetic ground truth
#: (``anomaly``) and the expert reading of a validated subset (``expert_status``); never strata
INPUT_COLUMNS = ("subject", "image", "semantic", "instances", "labels", "anomaly", "expert_status")
#: the columns the pipeline writes into ``subjects.parquet`` (``subject`` aside); a sheet
#: covariate of one of these names would be replaced by the pipeline's column, so it is an
#: error (:func:`check_columns`)
OUTPUT_COLUMNS = (
    "processed", "transitional_status", "lumbar_count", "presacral_count", "n_vertebrae",
    "n_discs", "split_valid", "invalid_reason", "first_label", "last_label", "decided_by",
    "qc_flags", "total_volume_mm3", "failed_rule", "error", "segmentation_method", "model",
    "labeler", "pipeline_version", "input_sha256", "analyse_seconds", "n_cervical",
    "n_thoracic", "n_lumbar", "n_sacral", "true_status",
    "final_status", "pipeline_decided_by", "reviewer", "review_note",
)  # fmt: skip


class SampleSheetError(ValueError):
    """A problem with the sample sheet as a whole (stops the run before any job)."""


def check_columns(
    columns: Sequence[str], strata: Sequence[str] = (), sheet: str | os.PathLike[str] = "<sheet>"
) -> None:
    """Raise :class:`SampleSheetError` naming the column when the sheet's ``columns`` and the
    declared prevalence ``strata`` (``prevalence.strata`` of the config) do not fit.

    A covariate named like an output column of ``subjects.parquet`` (:data:`OUTPUT_COLUMNS`)
    collides with it; a declared stratum must be a sheet column and must not be one the
    pipeline reads itself (:data:`INPUT_COLUMNS`).
    """
    cols = [str(c) for c in columns]
    for col in cols:
        if col in OUTPUT_COLUMNS:
            raise SampleSheetError(
                f"sample sheet {sheet}: column {col!r} collides with the output column "
                f"{col!r} of subjects.parquet; rename it in the sheet (e.g. 'sheet_{col}')"
            )
    for col in strata:
        if col in INPUT_COLUMNS:
            raise SampleSheetError(
                f"sample sheet {sheet}: prevalence.strata declares column {col!r}, which "
                "the pipeline reads itself and is never a stratum"
            )
        if col not in cols:
            raise SampleSheetError(
                f"sample sheet {sheet}: prevalence.strata declares column {col!r}, which the "
                f"sheet lacks (columns: {', '.join(cols)}); add it to the sheet or remove it "
                "from prevalence.strata in the config"
            )


def _delimiter(path: Path, head: str) -> str:
    """Tab or comma: the one that occurs in the header line (extension breaks ties)."""
    first = head.splitlines()[0] if head else ""
    tabs, commas = first.count("\t"), first.count(",")
    if tabs != commas:
        return "\t" if tabs > commas else ","
    return "," if path.suffix.lower() == ".csv" else "\t"


def read_sheet(path: str | os.PathLike[str]) -> Any:
    """Read a sample sheet (TSV or CSV, UTF-8) as a pandas DataFrame, IDs checked.

    ``subject`` and ``image`` are read as strings; covariates keep pandas' inferred types.
    Raises :class:`SampleSheetError` naming the file (and row) for unreadable sheets, missing
    columns, empty/duplicate/unsafe subject IDs.  Row numbers count the header as row 1, so
    they match what a spreadsheet shows.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise SampleSheetError(f"sample sheet {p}: file does not exist")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SampleSheetError(
            f"sample sheet {p}: not UTF-8 text (invalid byte at row {line}); save it as UTF-8"
        ) from None
    sep = _delimiter(p, text[:4096])
    try:
        import io as _io

        df = pd.read_csv(
            _io.StringIO(text),
            sep=sep,
            dtype={"subject": "string", "image": "string", "semantic": "string"},
            comment=None,
            skip_blank_lines=True,
        )
    except Exception as exc:  # pandas raises ParserError, EmptyDataError, ...
        raise SampleSheetError(f"sample sheet {p}: cannot be parsed ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("subject", "image"):
        if col not in df.columns:
            raise SampleSheetError(
                f"sample sheet {p}: missing column {col!r} (columns: {', '.join(df.columns)})"
            )
    check_subject_ids(df["subject"].tolist(), p)
    df["subject"] = df["subject"].astype(str)
    return df


def check_subject_ids(subjects: Sequence[Any], sheet: str | os.PathLike[str] = "<sheet>") -> None:
    """Raise :class:`SampleSheetError` for an empty, unsafe or duplicate subject ID.

    The message names the row (header = row 1) and the ID.
    """
    seen: dict[str, int] = {}
    for i, sid in enumerate(subjects):
        row = i + 2
        if sid is None or (isinstance(sid, float) and np.isnan(sid)) or str(sid).strip() == "":
            raise SampleSheetError(f"sample sheet {sheet}: row {row}: empty subject ID")
        s = str(sid)
        if s == "<NA>" or not SAFE_ID.match(s):
            raise SampleSheetError(
                f"sample sheet {sheet}: row {row}: subject ID {s!r} is not filesystem-safe "
                "(allowed: letters, digits, '.', '_', '-', starting with a letter or digit, "
                "at most 64 characters)"
            )
        if s in seen:
            raise SampleSheetError(
                f"sample sheet {sheet}: row {row}: duplicate subject ID {s!r} "
                f"(first seen in row {seen[s]})"
            )
        seen[s] = row


def resolve_paths(df: Any, sheet: str | os.PathLike[str], columns=("image", "semantic")) -> Any:
    """Return a copy of ``df`` with path columns made absolute (relative to the sheet's folder)."""
    import pandas as pd

    base = Path(sheet).resolve().parent
    out = df.copy()
    for col in columns:
        if col in out.columns:
            # object dtype: pandas' string dtype would turn None back into NaN (a float),
            # which breaks `path or ""` in the Snakefile for an empty cell
            out[col] = pd.Series(
                [
                    None if v is None or str(v) in ("", "<NA>", "nan") else str(base / str(v))
                    for v in out[col].tolist()
                ],
                index=out.index,
                dtype=object,
            )
    return out


def load_cohort_sheet(path: str | os.PathLike[str]) -> Any:
    """The sample sheet with absolute paths (for the aggregate's covariates)."""
    return resolve_paths(read_sheet(path), path)
