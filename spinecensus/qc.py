"""Quality-control figures: one PNG per subject and the cohort figures of the report.

* :func:`subject_png` — the mid-sagittal slice (canonical ``[slice, SI, AP]`` order, head at
  the top, anterior on the left) with the labeled instance overlay and structure names.
* :func:`failure_png` — a card naming the failed rule and the error (so a QC browser shows
  failures in place).
* :func:`prevalence_png` — recovered prevalence with Wilson 95 % CIs per status and stratum;
  for synthetic cohorts the planted rate and the cohort's true rate beside it.
* :func:`volumes_png` — volume (mm³) by level, one box per vertebra/disc label.

matplotlib is imported inside the functions with the non-interactive Agg backend.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str], dpi: int = 80) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    _plt().close(fig)


def mid_sagittal_index(instances: np.ndarray) -> int:
    """Slice (axis 0) through the middle of the labeled spine: the foreground-weighted mean
    slice, or the geometric middle when the mask is empty."""
    per_slice = np.count_nonzero(instances.reshape(instances.shape[0], -1), axis=1)
    if per_slice.sum() == 0:
        return instances.shape[0] // 2
    return int(round(float(np.average(np.arange(len(per_slice)), weights=per_slice))))


def subject_png(
    path: str | os.PathLike[str],
    instances: np.ndarray,
    id_to_name: Mapping[int, str],
    spacing_mm: tuple[float, float, float],
    image: np.ndarray | None = None,
    title: str = "",
) -> None:
    """Mid-sagittal slice with the instance overlay and each structure's name.

    ``instances`` and ``image`` in canonical order; ``spacing_mm`` sets the pixel aspect
    (SI / AP spacing) so anatomy is not stretched.  Names sit at the in-slice centroid of
    each instance (instances absent from the slice are labeled at their projected centroid).
    """
    plt = _plt()
    inst = np.asarray(instances)
    k = mid_sagittal_index(inst)
    sl = inst[k]
    h, w = sl.shape
    aspect = float(spacing_mm[1]) / float(spacing_mm[2])
    fig_h = 7.0
    fig_w = max(2.5, min(8.0, fig_h * (w * spacing_mm[2]) / max(h * spacing_mm[1], 1e-6) + 1.2))
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    if image is not None:
        im = np.asarray(image[min(k, image.shape[0] - 1)], dtype=float)
        lo, hi = np.percentile(im, [1, 99]) if im.size else (0, 1)
        ax.imshow(im, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect)
    else:
        ax.imshow(np.zeros_like(sl, dtype=float), cmap="gray", aspect=aspect)
    ids = np.arange(int(inst.max(initial=0)) + 1)
    colours = plt.get_cmap("tab20")(ids % 20)
    colours[0, 3] = 0.0
    colours[1:, 3] = 0.45
    ax.imshow(colours[sl], aspect=aspect, interpolation="nearest")
    # centroids of every instance: in the slice if present, else over the whole volume
    rows, cols = np.nonzero(sl)
    labs = sl[rows, cols]
    n = len(ids)
    cnt = np.bincount(labs, minlength=n).astype(float)
    r_mean = np.bincount(labs, weights=rows, minlength=n) / np.maximum(cnt, 1)
    c_mean = np.bincount(labs, weights=cols, minlength=n) / np.maximum(cnt, 1)
    missing = (cnt == 0) & (ids > 0)
    if missing.any():
        _, rr, cc = np.nonzero(inst)
        vl = inst[inst > 0]
        cnt3 = np.maximum(np.bincount(vl, minlength=n).astype(float), 1)
        r_mean[missing] = (np.bincount(vl, weights=rr, minlength=n) / cnt3)[missing]
        c_mean[missing] = (np.bincount(vl, weights=cc, minlength=n) / cnt3)[missing]
    for iid, name in sorted(id_to_name.items()):
        iid = int(iid)
        if 0 < iid < n and (cnt[iid] > 0 or missing[iid]):
            is_disc = "-" in name
            ax.text(
                c_mean[iid] + (0.18 * w if is_disc else -0.02 * w),
                r_mean[iid],
                name,
                color="yellow" if is_disc else "white",
                fontsize=6 if is_disc else 7,
                ha="left" if is_disc else "right",
                va="center",
            )
    ax.set_title(f"{title}  (slice {k})", fontsize=9)
    ax.set_axis_off()
    fig.tight_layout()
    _save(fig, path)


def failure_png(path: str | os.PathLike[str], subject: str, rule: str, error: str) -> None:
    """A small card saying that ``subject`` failed in ``rule`` and why."""
    import textwrap

    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_axis_off()
    text = "\n".join(textwrap.wrap(error, 48)[:12])
    ax.text(
        0.02,
        0.98,
        f"{subject}: FAILED in {rule}\n\n{text}",
        va="top",
        ha="left",
        fontsize=7,
        color="darkred",
        transform=ax.transAxes,
        family="monospace",
    )
    _save(fig, path)


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
    plt = _plt()
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
    _save(fig, path, dpi=100)


def volumes_png(structures: Any, path: str | os.PathLike[str]) -> None:
    """Box plots of volume (mm³) by level: vertebrae (top) and discs (bottom), cranio-caudal."""
    from spinecensus import labels

    plt = _plt()
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
    _save(fig, path, dpi=100)


def _safe_sort_key(labels: Any):
    def key(name: str) -> float:
        try:
            return labels.sort_key(name)
        except KeyError:
            return 1e9

    return key


def cohort_figures(
    tables_dir: str | os.PathLike[str],
    prevalence_path: str | os.PathLike[str],
    volumes_path: str | os.PathLike[str],
) -> None:
    """Both cohort figures from ``tables_dir/{prevalence,structures}.parquet``.

    The planted rates (synthetic cohorts) come from the tables' ``spinecensus.planted``
    metadata written by the aggregate step.
    """
    import pyarrow.parquet as pq

    from spinecensus.tables import read_metadata

    tdir = Path(tables_dir)
    prev = pq.read_table(tdir / "prevalence.parquet").to_pandas()
    meta = read_metadata(tdir / "prevalence.parquet")
    planted = json.loads(meta["planted"]) if "planted" in meta else None
    prevalence_png(prev, prevalence_path, planted)
    st = pq.read_table(tdir / "structures.parquet", columns=["label", "kind", "volume_mm3"])
    volumes_png(st.to_pandas(), volumes_path)
