"""The ``aggregate`` rule: the cohort tables from every subject's per-subject files.

Reads ``<subjects dir>/<subject>/{summary.json,structures.parquet,morphometrics.parquet}``
for the subjects of the sample sheet and writes ``structures``, ``subjects``, ``prevalence``,
``failures``, ``morphometrics``, ``spine_alignment`` and ``reference`` ``.parquet``
(:mod:`spinecensus.census.tables`, :mod:`spinecensus.census.morphometrics_tables`), rebuilt
on every run and written atomically.
An analyst's overrides file (config ``review.overrides``, :mod:`spinecensus.review.overrides`)
is applied on the way: ``final_status`` and the renamed levels; prevalence on ``final_status``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spinecensus.census.sheet import read_sheet


def aggregate(
    subjects_dir: str | os.PathLike[str],
    subjects: Sequence[str],
    out_dir: str | os.PathLike[str],
    sheet: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
    overrides: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Cohort tables from ``subjects_dir/<subject>/{summary.json,structures.parquet}``,
    with the ``overrides`` TSV applied (``""`` or None: no review)."""
    from spinecensus.census import tables

    base = Path(subjects_dir)
    df = read_sheet(sheet) if sheet else None
    if df is not None:
        df = df[df["subject"].isin(set(subjects))]
    extra = {}
    if config and config.get("samples", "") == "" and "synthetic" in config:
        extra["planted"] = {
            "lumbarization": config["synthetic"].get("lumbarization"),
            "sacralization": config["synthetic"].get("sacralization"),
        }
    return tables.write_cohort_tables(
        [base / s / "summary.json" for s in subjects],
        [base / s / "structures.parquet" for s in subjects],
        out_dir,
        sheet=df,
        config=config,
        extra_metadata=extra,
        overrides=overrides or None,
        morphometrics_paths=[base / s / "morphometrics.parquet" for s in subjects],
    )
