"""The cohort QC figures of the report (the ``cohort_qc`` rule), drawn from the tables.

* :func:`prevalence_png` — recovered prevalence with Wilson 95 % CIs per status and stratum;
  for synthetic cohorts the planted rate and the cohort's true rate beside it.
* :func:`volumes_png` — volume (mm³) by level, one box per vertebra/disc label.
* :func:`cohort_qc` — both, from ``prevalence.parquet`` and ``structures.parquet``, and the
  morphometrics curves by age band
  (:func:`spinecensus.census.morphometrics_figures.morphometrics_curves`).

matplotlib is imported inside the functions with the non-interactive Agg backend.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.census.pyplot_png import pyplot, save_png


def prevalence_png(
    prevalence: Any,
    path: str | os.PathLike[str],
    planted: Mapping[str, float] | None = None,
) -> None:
    """Bar chart: recovered prevalence (%) with Wilson 95 % CIs per status and stratum.

    ``prevalence``: the ``prevalence.parquet`` table as a pandas DataFrame.  With ground
    truth (``true_prevalence``) a second bar shows the cohort's true rate over the same
    subjects; ``planted`` draws the generator's configured rate as a dashed line.
    """
    plt = pyplot()
    statuses = list(dict.fromkeys(prevalence["status"]))
    strata = list(dict.fromkeys(prevalence["stratum"]))
    fig, axes = plt.subplots(
        1,
        len(statuses),
        figsize=(max(5.0, 1.0 + 0.55 * len(strata)) * len(statuses) / 1.4, 4.2),
        squeeze=False,
    )
    has_truth = prevalence["true_prevalence"].notna().any()
    for ax, st in zip(axes[0], statuses, strict=False):
        d = prevalence[prevalence["status"] == st].set_index("stratum").reindex(strata)
        x = np.arange(len(strata))
        width = 0.4 if has_truth else 0.7
        p = 100 * d["prevalence"].to_numpy(float)
        lo = 100 * d["ci_low"].to_numpy(float)
        hi = 100 * d["ci_high"].to_numpy(float)
        err = np.clip(np.vstack([np.nan_to_num(p - lo), np.nan_to_num(hi - p)]), 0, None)
        ax.bar(
            x - (width / 2 if has_truth else 0),
            np.nan_to_num(p),
            width,
            yerr=err,
            capsize=3,
            color="tab:blue",
            label="recovered (95% CI)",
        )
        if has_truth:
            ax.bar(
                x + width / 2,
                100 * d["true_prevalence"].to_numpy(float),
                width,
                color="tab:green",
                alpha=0.7,
                label="true (sheet `anomaly`; synthetic truth)",
            )
        if planted and planted.get(st) is not None:
            ax.axhline(
                100 * float(planted[st]),
                color="tab:red",
                ls="--",
                label=f"planted {100 * float(planted[st]):.1f}%",
            )
        ax.set_xticks(
            x,
            [
                f"{s}\n(n={int(nn)})" if np.isfinite(nn) else s
                for s, nn in zip(strata, d["denominator"].to_numpy(float), strict=False)
            ],
            rotation=60,
            fontsize=7,
            ha="right",
        )
        ax.set_ylabel("prevalence (%)")
        ax.set_title(st)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def volumes_png(structures: Any, path: str | os.PathLike[str]) -> None:
    """Box plots of volume (mm³) by level: vertebrae (top) and discs (bottom), cranio-caudal."""
    from spinecensus.anatomy import labels

    plt = pyplot()
    fig, axes = plt.subplots(2, 1, figsize=(12, 7))
    for ax, kind in zip(axes, ("vertebra", "disc"), strict=False):
        d = structures[structures["kind"] == kind] if len(structures) else structures
        names = sorted(set(d["label"]) if len(d) else [], key=_safe_sort_key(labels))
        data = [d.loc[d["label"] == n, "volume_mm3"].to_numpy(float) for n in names]
        if data:
            ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
            ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=90, fontsize=7)
        else:
            ax.text(0.5, 0.5, "no structures", ha="center", transform=ax.transAxes)
        ax.set_ylabel(f"{kind} volume (mm³)")
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def _safe_sort_key(labels: Any):
    def key(name: str) -> float:
        try:
            return labels.sort_key(name)
        except KeyError:
            return 1e9

    return key


def cohort_qc(
    tables_dir: str | os.PathLike[str],
    prevalence_path: str | os.PathLike[str],
    volumes_path: str | os.PathLike[str],
    morphometrics_path: str | os.PathLike[str] | None = None,
) -> None:
    """Both cohort figures from ``tables_dir/{prevalence,structures}.parquet``, and with
    ``morphometrics_path`` the per-level curves by age band (from ``morphometrics``,
    ``subjects`` and ``reference`` ``.parquet``).

    The planted rates (synthetic cohorts) come from the tables' ``spinecensus.planted``
    metadata written by the aggregate step.
    """
    import pyarrow.parquet as pq

    from spinecensus.census.tables import read_metadata

    tdir = Path(tables_dir)
    prev = pq.read_table(tdir / "prevalence.parquet").to_pandas()
    if "estimate" in prev.columns:  # the figure shows the calls (Wilson), not the correction
        prev = prev[prev["estimate"] == "called"]
    meta = read_metadata(tdir / "prevalence.parquet")
    planted = json.loads(meta["planted"]) if "planted" in meta else None
    prevalence_png(prev, prevalence_path, planted)
    st = pq.read_table(tdir / "structures.parquet", columns=["label", "kind", "volume_mm3"])
    volumes_png(st.to_pandas(), volumes_path)
    if morphometrics_path is not None:
        from spinecensus.census.morphometrics_figures import morphometrics_curves

        morphometrics_curves(tdir, morphometrics_path)
