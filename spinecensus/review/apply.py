"""Apply validated overrides (:mod:`spinecensus.review.overrides`) to the cohort tables.

``subjects.parquet`` keeps every pipeline column and gains four (:data:`REVIEW_COLUMNS`):
``final_status`` (the status prevalence is computed on), ``pipeline_decided_by`` (the
pipeline's ``decided_by``), ``reviewer`` and ``review_note``; ``decided_by`` becomes
``review`` where a reviewer changed the decision (``set_status``, ``rename_from``,
``exclude``; an ``accept`` records the reviewer and leaves ``decided_by`` as it was).
``structures.parquet``: a ``rename_from`` relabels that subject's rows (``label``,
``region``; ``confidence`` becomes null, it was the model's probability of the old name).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from spinecensus.anatomy import labels
from spinecensus.review.overrides import (
    DECISIONS,
    EXCLUDED,
    REVIEW,
    OverridesError,
    parse_rename,
)
from spinecensus.review.relabel import rename_levels

#: the columns the review adds to ``subjects.parquet``
REVIEW_COLUMNS = ("final_status", "pipeline_decided_by", "reviewer", "review_note")


def _where(overrides: Any, row: Any) -> str:
    return f"overrides file {overrides.attrs.get('path', '<overrides>')}: row {row}"


def _note(row: Any) -> str:
    """One row in words for ``review_note``: ``set_status normal: missed disc``."""
    text = str(row["action"]) + (f" {row['value']}" if row["value"] else "")
    return text + (f": {row['note']}" if row["note"] else "")


def rename_structures(structures: pa.Table, overrides: Any) -> tuple[pa.Table, dict[str, str]]:
    """Apply the ``rename_from`` rows to ``structures`` (rows of the cohort table).

    Returns the relabelled table and, per renamed subject, the transitional status its new
    names give where the count origin (C2) and the sacrum are in view
    (:func:`spinecensus.anatomy.labels.transitional_status`), else ``""`` (status unchanged).
    Raises :class:`OverridesError` naming the row when a rename cannot be made.
    """
    renames = overrides[overrides["action"] == "rename_from"]
    if renames.empty or structures.num_rows == 0:
        if not renames.empty:
            r = renames.iloc[0]
            raise OverridesError(f"{_where(overrides, r['row'])}: {r['subject']}: no structures")
        return structures, {}
    df = structures.select(["subject", "instance_id", "kind", "label"]).to_pandas()
    new_label = np.array(df["label"].astype(object).where(df["label"].notna(), None), dtype=object)
    renamed = np.zeros(len(df), dtype=bool)
    groups = df.groupby("subject", sort=False).indices
    implied: dict[str, str] = {}
    for _, r in renames.iterrows():
        idx = groups.get(str(r["subject"]))
        try:
            if idx is None:
                raise ValueError("the subject has no structures (it failed)")
            idx = idx[np.argsort(df["instance_id"].to_numpy()[idx], kind="stable")]
            old, new = parse_rename(str(r["value"]))
            names = rename_levels(list(new_label[idx]), list(df["kind"].to_numpy()[idx]), old, new)
        except ValueError as exc:
            raise OverridesError(f"{_where(overrides, r['row'])}: {r['subject']}: {exc}") from None
        changed = np.array([a != b for a, b in zip(new_label[idx], names, strict=True)])
        renamed[idx[changed]] = True
        new_label[idx] = np.array(names, dtype=object)
        vis = [n for n in names if n]
        whole = "C2" in vis and labels.SACRUM in vis
        implied[str(r["subject"])] = labels.transitional_status(vis) if whole else ""
    region = structures.column("region").to_numpy(zero_copy_only=False).astype(object)
    region[renamed] = [labels.region(n) for n in new_label[renamed]]
    conf = structures.column("confidence").to_numpy(zero_copy_only=False).astype(float)
    conf[renamed] = np.nan
    out = structures
    for name, values in (("label", new_label), ("region", region)):
        i = out.schema.get_field_index(name)
        out = out.set_column(i, out.schema.field(i), pa.array(list(values), pa.string()))
    i = out.schema.get_field_index("confidence")
    out = out.set_column(i, out.schema.field(i), pa.array(conf, pa.float64(), from_pandas=True))
    return out, implied


def review_columns(subjects: Any, overrides: Any, implied: dict[str, str]) -> dict[str, list]:
    """The :data:`REVIEW_COLUMNS` and the new ``decided_by`` for a subjects DataFrame."""
    final = subjects["transitional_status"].astype(object).tolist()
    pipeline_by = subjects["decided_by"].astype(object).where(subjects["decided_by"].notna(), None)
    decided = pipeline_by.tolist()
    reviewer: list[str | None] = [None] * len(final)
    note: list[str | None] = [None] * len(final)
    pos = {str(s): i for i, s in enumerate(subjects["subject"])}
    for subject, rows in overrides.groupby("subject", sort=False):
        i = pos[str(subject)]
        who = list(dict.fromkeys(r for r in rows["reviewer"] if r))
        reviewer[i] = ";".join(who) or None
        note[i] = "; ".join(_note(r) for _, r in rows.iterrows())
        if implied.get(str(subject)):
            final[i], decided[i] = implied[str(subject)], REVIEW
        elif str(subject) in implied:
            decided[i] = REVIEW
        last = rows[rows["action"].isin(DECISIONS)].tail(1)
        if last.empty:
            continue
        action, value = str(last["action"].iloc[0]), str(last["value"].iloc[0])
        if action == "set_status":
            final[i], decided[i] = value, REVIEW
        elif action == "exclude":
            final[i], decided[i] = EXCLUDED, REVIEW
        else:  # accept: the pipeline's call stands (over a rename's status too)
            final[i] = subjects["transitional_status"].iloc[i]
    return {
        "final_status": final,
        "decided_by": decided,
        "pipeline_decided_by": pipeline_by.tolist(),
        "reviewer": reviewer,
        "review_note": note,
    }


def apply_overrides(
    subjects: pa.Table, structures: pa.Table, overrides: Any | None
) -> tuple[pa.Table, pa.Table]:
    """The cohort ``subjects`` and ``structures`` tables with the overrides applied.

    ``overrides``: a frame of :func:`spinecensus.review.overrides.read_overrides` (its
    subjects already checked against the cohort), or None: the review columns are added all
    the same (``final_status`` = ``transitional_status``), so the schema does not depend on
    whether a review exists.  Raises :class:`OverridesError` naming the row for a rename
    that cannot be made on the subject's structures.
    """
    from spinecensus.review.overrides import empty_overrides

    ov = empty_overrides() if overrides is None else overrides
    structures, implied = rename_structures(structures, ov)
    if "decided_by" not in subjects.schema.names:  # a table without processed subjects
        subjects = subjects.append_column("decided_by", pa.nulls(subjects.num_rows, pa.string()))
    df = subjects.select(["subject", "transitional_status", "decided_by"]).to_pandas()
    cols = review_columns(df, ov, implied)
    out = subjects
    i = out.schema.get_field_index("decided_by")
    out = out.set_column(i, "decided_by", pa.array(cols["decided_by"], pa.string()))
    out = out.add_column(
        i + 1, "pipeline_decided_by", pa.array(cols["pipeline_decided_by"], pa.string())
    )
    out = out.add_column(i + 2, "reviewer", pa.array(cols["reviewer"], pa.string()))
    out = out.add_column(i + 3, "review_note", pa.array(cols["review_note"], pa.string()))
    j = out.schema.get_field_index("transitional_status") + 1
    out = out.add_column(j, "final_status", pa.array(cols["final_status"], pa.string()))
    return out, structures
