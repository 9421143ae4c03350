"""Analyst overrides: the ``overrides.tsv`` a reviewer writes (by hand or from the review
page), its validation, and how ``aggregate`` applies it to the cohort tables.

One row per decision, tab-separated, UTF-8, header first (:data:`COLUMNS`)::

    subject  action       value        reviewer  note                 date
    S0007    set_status   normal       AB        missed L5-S1 disc    2024-05-02
    S0012    rename_from  L4=L5                  count off by one
    S0020    exclude      motion blur  AB

``action`` is one of :data:`ACTIONS`:

* ``accept`` — the pipeline's status stands (``value`` empty); the reviewer is recorded.
* ``set_status`` — ``value`` is a status (:data:`STATUSES`): it becomes ``final_status``.
* ``rename_from`` — ``value`` is ``<instance label>=<new label>`` (two names of the label
  schema, :data:`spinecensus.review.relabel.SCHEMA_NAMES`, of the same kind): the subject's
  structure currently named ``<instance label>`` is renamed and every level below follows
  (:mod:`spinecensus.review.relabel`).
* ``exclude`` — ``value`` is the reason: the subject leaves every prevalence denominator and
  is counted per stratum as ``n_excluded``.

Rows apply in file order: every ``rename_from`` applies to the names left by the rows above;
of ``accept``, ``set_status`` and ``exclude`` the last row of a subject decides.  A bad row
raises :class:`OverridesError` naming the file, the row (header = row 1) and the problem.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spinecensus.anatomy import labels
from spinecensus.census.sheet import SampleSheetError
from spinecensus.review.relabel import SCHEMA_NAMES

#: the file's columns, in the order the review page writes them; ``subject`` and ``action``
#: are required, the others may be absent (read as empty)
COLUMNS = ("subject", "action", "value", "reviewer", "note", "date")
REQUIRED = ("subject", "action")
#: the actions a row may take
ACTIONS = ("accept", "set_status", "rename_from", "exclude")
#: actions that decide a subject's final status (the last one of a subject wins)
DECISIONS = ("accept", "set_status", "exclude")
#: statuses ``set_status`` may give
STATUSES = ("normal", "lumbarization", "sacralization", "undetermined")
#: ``final_status`` of an excluded subject
EXCLUDED = "excluded"
#: ``decided_by`` where a reviewer changed the pipeline's decision
REVIEW = "review"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class OverridesError(SampleSheetError):
    """A bad overrides file or row (stops the run before any job, like a bad sample sheet)."""


def parse_rename(value: str) -> tuple[str, str]:
    """``"<instance label>=<new label>"`` -> ``(old, new)``; raises ``ValueError`` unless both
    are names of the label schema of the same kind (vertebra or disc)."""
    old, sep, new = (str(value) or "").partition("=")
    old, new = old.strip(), new.strip()
    if not sep or not old or not new:
        raise ValueError(f"rename_from value {value!r} is not '<instance label>=<new label>'")
    names = set(SCHEMA_NAMES)
    for name in (old, new):
        if name not in names:
            raise ValueError(f"level {name!r} is not in the label schema (C2 ... S1)")
    if labels.kind(old) != labels.kind(new):
        raise ValueError(
            f"rename_from {old}={new}: a {labels.kind(old)} cannot be renamed to a "
            f"{labels.kind(new)}"
        )
    return old, new


def _check_row(row: dict[str, str], subjects: set[str] | None) -> None:
    """Raise ``ValueError`` with the row's problem (without file and row number)."""
    subject, action, value = row["subject"], row["action"], row["value"]
    if not subject:
        raise ValueError("empty subject")
    if subjects is not None and subject not in subjects:
        raise ValueError(f"unknown subject {subject!r} (not in the cohort's sample sheet)")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (one of: {', '.join(ACTIONS)})")
    if action == "set_status" and value not in STATUSES:
        raise ValueError(f"set_status value {value!r} is not a status ({', '.join(STATUSES)})")
    if action == "rename_from":
        parse_rename(value)
    if action == "exclude" and not value:
        raise ValueError("exclude needs a reason in the value column")
    if row["date"] and not _DATE.match(row["date"]):
        raise ValueError(f"date {row['date']!r} is not YYYY-MM-DD")
    if row["date"]:
        try:
            _dt.date.fromisoformat(row["date"])
        except ValueError:
            raise ValueError(f"date {row['date']!r} is not a calendar date") from None


def read_overrides(path: str | os.PathLike[str], subjects: Iterable[str] | None = None) -> Any:
    """Read and validate an overrides TSV; returns a pandas DataFrame with :data:`COLUMNS`
    (strings, ``""`` for empty cells) in file order, and ``row`` (the file's row number,
    header = row 1).

    ``subjects``: the cohort's subject IDs; a row naming another subject is an error (None:
    not checked).  Raises :class:`OverridesError` naming the file and the row.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise OverridesError(f"overrides file {p}: file does not exist")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OverridesError(f"overrides file {p}: not UTF-8 text; save it as UTF-8") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise OverridesError(f"overrides file {p}: empty (needs a header: {' '.join(COLUMNS)})")
    header = [c.strip() for c in lines[0].split("\t")]
    unknown = [c for c in header if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise OverridesError(
            f"overrides file {p}: row 1: header {header} must be tab-separated columns of "
            f"{', '.join(COLUMNS)} (required: {', '.join(REQUIRED)}; no duplicates)"
        )
    known = set(subjects) if subjects is not None else None
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) > len(header):
            raise OverridesError(
                f"overrides file {p}: row {i}: {len(cells)} cells, the header has {len(header)}"
            )
        got = dict(zip(header, (c.strip() for c in cells), strict=False))
        row = {c: got.get(c, "") for c in COLUMNS}
        try:
            _check_row(row, known)
        except ValueError as exc:
            raise OverridesError(f"overrides file {p}: row {i}: {exc}") from None
        rows.append({**row, "row": i})
    df = pd.DataFrame(rows, columns=[*COLUMNS, "row"]).astype({c: "string" for c in COLUMNS})
    df.attrs["path"] = str(p)  # error messages of the rows applied later name the file
    return df


def empty_overrides() -> Any:
    """An overrides frame without rows (the columns of :func:`read_overrides`)."""
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS} | {"row": []})
