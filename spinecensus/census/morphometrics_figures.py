"""The report's morphometrics figure: per-level curves of body height and disc height index
by age band, drawn from the cohort tables (the ``cohort_qc`` rule).

* :func:`age_bands` — each subject's age band, binned as the prevalence declares it
  (``prevalence.age_column`` and ``prevalence.age_bins``,
  :class:`spinecensus.census.strata.StrataSpec`), with the same labels (``age=50-59``).
* :func:`level_curves` — per age band and level: ``n`` and the 25th, 50th and 75th
  percentiles of one measure.
* :func:`curves_png` — two panels: the vertebral bodies' posterior height (mm) and the
  discs' height index (Farfan's, dimensionless), one line per age band (the median) with
  its interquartile band, levels cranio-caudal (:func:`spinecensus.anatomy.labels.sort_key`);
  a band's point at a level is drawn only from at least :data:`MIN_CURVE_N` values.
* :func:`morphometrics_curves` — the figure from ``morphometrics.parquet``,
  ``subjects.parquet`` and the strata recorded in ``reference.parquet``.

Rows are those of the reference percentiles (:mod:`spinecensus.census.morphometrics_tables`):
processed subjects not excluded by review, structures not cut by the field of view.  The age
column is binned whenever the subjects table has it, whether or not it is also a declared
stratum of the prevalence; without it (or without any age) one line pools every subject.
Subjects without an age are left out of the banded lines (the title says how many).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spinecensus.census.pyplot_png import pyplot, save_png
from spinecensus.census.strata import StrataSpec, age_band_labels, age_band_names

#: the band of every subject when there is no age column
ALL_AGES = "all ages"
#: (kind, measure, axis label) of the two panels
PANELS = (
    ("vertebra", "height_posterior_mm", "vertebral body posterior height (mm)"),
    ("disc", "disc_height_index", "disc height index (Farfan, 1)"),
)
#: a band's median and IQR at a level are drawn from at least this many values (fewer
#: say little: a handful of subjects in an outer age band would draw a noisy line)
MIN_CURVE_N = 5
#: the columns of ``morphometrics.parquet`` the figure reads
COLUMNS = ("subject", "label", "kind", "truncated", *(m for _k, m, _l in PANELS))


def band_order(spec: StrataSpec) -> list[str]:
    """Every age band label of ``spec`` from the youngest (``age<e0``) to the oldest."""
    return age_band_names(spec.age_column or "age", spec.age_bins)


def age_bands(subjects: pd.DataFrame, spec: StrataSpec) -> pd.Series:
    """Age band per subject (index: ``subject``): ``age=50-59`` as the prevalence's strata
    label it, NA for a subject without an age; :data:`ALL_AGES` for everyone when the table
    has no ``spec.age_column`` or no subject has an age."""
    subj = subjects["subject"].astype(str).to_numpy()
    col = spec.age_column
    ages = (
        pd.to_numeric(subjects[col], errors="coerce").to_numpy(float)
        if col and col in subjects.columns
        else np.full(len(subjects), np.nan)
    )
    if not np.isfinite(ages).any():
        return pd.Series(ALL_AGES, index=subj, dtype="object")
    return pd.Series(age_band_labels(ages, col, spec.age_bins), index=subj, dtype="object")


def level_curves(rows: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Per ``band`` x ``label`` of ``rows`` (columns ``band``, ``label``, ``measure``): ``n``
    and ``p25``, ``p50``, ``p75`` of the measure (NaN values dropped; numpy's linear
    interpolation); empty with those columns when nothing is left."""
    v = rows.dropna(subset=[measure, "band"])
    cols = ["band", "label", "n", "p25", "p50", "p75"]
    if v.empty:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in cols})
    g = v.groupby(["band", "label"], sort=True)[measure]
    q = g.quantile([0.25, 0.5, 0.75]).unstack()
    q.columns = ["p25", "p50", "p75"]
    q.insert(0, "n", g.size())
    return q.reset_index()[cols]


def _level_key(name: str) -> float:
    from spinecensus.anatomy import labels

    try:
        return labels.sort_key(name)
    except KeyError:  # a name outside the schema (a review rename): last
        return 1e9


def _panel(
    ax: Any, curves: pd.DataFrame, bands: list[str], counts: pd.Series, ylabel: str, min_n: int
) -> None:
    """One panel: a median line and an interquartile band per age band, levels on x; a
    level with fewer than ``min_n`` values in a band is a gap in that band's line."""
    sparse = curves["n"].to_numpy(float) < min_n
    curves = curves.assign(**{k: curves[k].where(~sparse) for k in ("p25", "p50", "p75")})
    levels = sorted(set(curves["label"]), key=_level_key)
    if not levels:
        ax.text(0.5, 0.5, "no measurements", ha="center", transform=ax.transAxes)
        ax.set_ylabel(ylabel)
        return
    x = {name: i for i, name in enumerate(levels)}
    colours = pyplot().get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(bands), 1)))
    for colour, band in zip(colours, bands, strict=False):
        c = curves[curves["band"] == band]
        if c.empty or c["p50"].isna().all():
            continue
        c = c.iloc[np.argsort([x[n] for n in c["label"]])]
        xs = np.array([x[n] for n in c["label"]])
        k = int(counts.get(band, 0))
        label = f"{band} ({k} subject{'s' * (k != 1)})"
        ax.plot(xs, c["p50"], "-o", color=colour, markersize=3, label=label)
        ax.fill_between(xs, c["p25"], c["p75"], color=colour, alpha=0.18, linewidth=0)
    ax.set_xticks(np.arange(len(levels)), levels, rotation=90, fontsize=7)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:  # no band had enough values: no legend to draw
        ax.legend(fontsize=7)


def curves_png(
    morphometrics: pd.DataFrame,
    bands: pd.Series,
    path: str | os.PathLike[str],
    order: list[str] | None = None,
    min_n: int = MIN_CURVE_N,
) -> None:
    """Two panels (module docstring) from the rows of ``morphometrics.parquet`` (the
    :data:`COLUMNS`; rows already restricted to the reference's) and each subject's age
    band ``bands`` (:func:`age_bands`); ``order``: the bands' order (default: sorted);
    ``min_n``: the fewest values a band's point at a level is drawn from."""
    plt = pyplot()
    df = morphometrics.assign(band=morphometrics["subject"].astype(str).map(bands))
    counts = pd.Series(bands).dropna().value_counts()
    present = set(counts.index)
    order = [b for b in (order or sorted(present)) if b in present]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7.5))
    for ax, (kind, measure, ylabel) in zip(axes, PANELS, strict=True):
        rows = df[(df["kind"] == kind) & ~df["truncated"].astype(bool)]
        _panel(ax, level_curves(rows, measure), order, counts, ylabel, min_n)
    unknown = int(pd.Series(bands).isna().sum())
    title = "median and interquartile range per level, by age band"
    title += f" (where a band has >= {min_n} values)" if min_n > 1 else ""
    if unknown:
        title += f" ({unknown} subject{'s' * (unknown > 1)} without an age not drawn)"
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def _spec(tables_dir: Path) -> StrataSpec:
    """The strata recorded by the aggregate step (``reference.parquet`` metadata), else
    those of the recorded config, else the defaults."""
    from spinecensus.census.tables import read_metadata

    meta = read_metadata(tables_dir / "reference.parquet")
    if "strata" in meta:
        return StrataSpec.from_config({"prevalence": json.loads(meta["strata"])})
    return StrataSpec.from_config(json.loads(meta.get("config", "{}")))


def morphometrics_curves(
    tables_dir: str | os.PathLike[str], path: str | os.PathLike[str], min_n: int = MIN_CURVE_N
) -> None:
    """The figure from ``tables_dir/{morphometrics,subjects,reference}.parquet``: the rows
    of processed subjects not excluded by review (as in the reference percentiles); points
    from fewer than ``min_n`` values are not drawn."""
    import pyarrow.parquet as pq

    from spinecensus.review.overrides import EXCLUDED

    tdir = Path(tables_dir)
    spec = _spec(tdir)
    morpho = pq.read_table(tdir / "morphometrics.parquet", columns=list(COLUMNS)).to_pandas()
    subj = pq.read_table(tdir / "subjects.parquet").to_pandas()
    final = subj.get("final_status", subj.get("transitional_status"))
    keep = subj["processed"].astype(bool) & (final.astype("object") != EXCLUDED)
    subj = subj[keep.to_numpy(bool)]
    morpho = morpho[morpho["subject"].astype(str).isin(set(subj["subject"].astype(str)))]
    curves_png(morpho, age_bands(subj, spec), path, band_order(spec) + [ALL_AGES], min_n)
