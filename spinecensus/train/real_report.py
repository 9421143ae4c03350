"""Evaluation tables of real-MRI models: the per-(model, dataset) summary, its markdown, and
the files an evaluation writes (Parquet tables and a markdown report, atomically).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spinecensus.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd


#: ``dataset`` of the pooled rows :func:`summarise` adds with ``pooled=True``
POOLED = "all real"


def summarise(subjects: pd.DataFrame, pooled: bool = False) -> pd.DataFrame:
    """Per (model, dataset) summary: mean Dice, detection %, split validity %, label
    accuracy on the named levels (only subjects whose levels are known), the share of
    levels given a wrong name (the rest of the misses stay unnamed), misses.

    ``pooled``: add one row per model over every real subject (dataset :data:`POOLED`;
    synthetic rows left out): Dice means over the subjects annotated for that class,
    detection and naming pooled over levels.
    """
    import pandas as pd

    if pooled:
        real = subjects[subjects["dataset"] != "synthetic"].assign(dataset=POOLED)
        subjects = pd.concat([subjects, real], ignore_index=True)
    out = []
    for (model, dataset), g in subjects.groupby(["model", "dataset"], sort=False):
        known = g[g["levels_known"].astype(bool)]
        n_named = int(known["n_annotated"].sum())
        out.append(
            {
                "model": model,
                "dataset": dataset,
                "n_subjects": len(g),
                "body_dice": g["body_dice"].mean(),
                "disc_dice": g["disc_dice"].mean(),
                "body_dice_raw": g["body_dice_raw"].mean(),
                "disc_dice_raw": g["disc_dice_raw"].mean(),
                "detected_pct": (
                    100.0 * g["n_detected"].sum() / g["n_annotated"].sum()
                    if g["n_annotated"].sum() > 0
                    else math.nan
                ),
                "split_valid_pct": 100.0 * g["split_valid"].astype(float).mean(),
                "sacrum_anchor_pct": 100.0 * g["sacrum_anchor"].astype(float).mean(),
                "label_accuracy_pct": (
                    100.0 * known["n_named_correct"].sum() / n_named if n_named else math.nan
                ),
                # older tables lack the column: unknown, not zero
                "misnamed_pct": (
                    100.0 * known["n_named_wrong"].sum() / n_named
                    if n_named and "n_named_wrong" in known
                    else math.nan
                ),
                # the pooled row repeats no miss: each is listed under its dataset
                "misses": ""
                if dataset == POOLED
                else " | ".join(f"{r.subject}: {r.misses}" for r in g.itertuples() if r.misses),
            }
        )
    return pd.DataFrame(out)


def markdown_table(summary: pd.DataFrame, with_misses: bool = False) -> str:
    """Render :func:`summarise` output as a markdown table (NaN shown as ``-``)."""

    def fmt(v: Any, pct: bool = False) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:.1f}" if pct else f"{v:.3f}"
        return str(v)

    cols = [
        ("model", "model", False),
        ("dataset", "dataset", False),
        ("n_subjects", "n", False),
        ("body_dice", "body Dice", False),
        ("disc_dice", "disc Dice", False),
        ("body_dice_raw", "body Dice (unrestricted)", False),
        ("disc_dice_raw", "disc Dice (unrestricted)", False),
        ("detected_pct", "detected %", True),
        ("split_valid_pct", "split valid %", True),
        ("sacrum_anchor_pct", "sacrum found %", True),
        ("label_accuracy_pct", "levels named correctly %", True),
        ("misnamed_pct", "levels named wrongly %", True),
    ]
    if with_misses:
        cols.append(("misses", "misses", False))
    lines = [
        "| " + " | ".join(c[1] for c in cols) + " |",
        "|" + "|".join("---" for _ in cols) + "|",
    ]
    for r in summary.to_dict("records"):
        lines.append("| " + " | ".join(fmt(r[k], pct) for k, _, pct in cols) + " |")
    return "\n".join(lines)


def write_evaluation(
    subjects: Any,
    levels: Any,
    summary: Any,
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    header: list[str],
) -> None:
    """Write an evaluation atomically: ``out_table`` (subjects), ``<stem>_levels.parquet``,
    ``<stem>_summary.parquet`` and ``out_markdown`` (``header`` lines, the summary table,
    then the misses per model and dataset)."""
    stem = Path(out_table).with_suffix("")
    for df, path in (
        (subjects, Path(out_table)),
        (levels, Path(f"{stem}_levels.parquet")),
        (summary, Path(f"{stem}_summary.parquet")),
    ):
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    text = [
        *header,
        "",
        markdown_table(summary),
        "",
        "## Misses (undetected or misnamed annotated levels)",
        "",
        *(f"- **{r.model} / {r.dataset}**: {r.misses}" for r in summary.itertuples() if r.misses),
    ]
    with atomic_path(out_markdown) as tmp:
        tmp.write_text("\n".join(text) + "\n")


def write_cv_evaluation(
    subjects: Any,
    levels: Any,
    title: str,
    intro: list[str],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
) -> Any:
    """Summarise a cross-validated evaluation per dataset and pooled over every real
    subject (:func:`summarise`), write it (:func:`write_evaluation`, under ``title``
    and the ``intro`` lines) and return the summary."""
    summary = summarise(subjects, pooled=True)
    write_evaluation(subjects, levels, summary, out_table, out_markdown, [title, "", *intro])
    return summary


__all__ = [
    "POOLED",
    "markdown_table",
    "summarise",
    "write_cv_evaluation",
    "write_evaluation",
]
