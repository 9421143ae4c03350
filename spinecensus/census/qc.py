"""Quality-control figures: one PNG per subject and the cohort figures of the report.

* :func:`subject_png` — the mid-sagittal slice (canonical ``[slice, SI, AP]`` order, head at
  the top, anterior on the left) with the labeled instance overlay and structure names.
* :func:`failure_png` — a card naming the failed rule and the error (so a QC browser shows
  failures in place).
* :func:`prevalence_png` — recovered prevalence with Wilson 95 % CIs per status and stratum;
  for synthetic cohorts the planted rate and the cohort's true rate beside it.
* :func:`volumes_png` — volume (mm³) by level, one box per vertebra/disc label.

The per-subject PNG is drawn with Pillow (cheap to import in a per-subject job); the cohort
figures use matplotlib, imported inside the functions with the non-interactive Agg backend.
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


#: 20 distinct overlay colours (RGB 0-255), the "tab20" palette; instance ``i`` gets colour
#: ``i % 20``.
_PALETTE = np.array(
    [
        (31, 119, 180), (174, 199, 232), (255, 127, 14), (255, 187, 120), (44, 160, 44),
        (152, 223, 138), (214, 39, 40), (255, 152, 150), (148, 103, 189), (197, 176, 213),
        (140, 86, 75), (196, 156, 148), (227, 119, 194), (247, 182, 210), (127, 127, 127),
        (199, 199, 199), (188, 189, 34), (219, 219, 141), (23, 190, 207), (158, 218, 229),
    ],
    dtype=np.float32,
)  # fmt: skip


def _centroids(
    inst: np.ndarray, sl: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, shown) per instance id 0..n-1: in-slice centroid where the instance is in
    the slice, else its projected whole-volume centroid (``shown`` False for absent ids)."""
    ids = np.arange(n)
    rows, cols = np.nonzero(sl)
    labs = sl[rows, cols]
    cnt = np.bincount(labs, minlength=n).astype(float)
    r_mean = np.bincount(labs, weights=rows, minlength=n) / np.maximum(cnt, 1)
    c_mean = np.bincount(labs, weights=cols, minlength=n) / np.maximum(cnt, 1)
    missing = (cnt == 0) & (ids > 0)
    if missing.any():
        _, rr, cc = np.nonzero(inst)
        vl = inst[inst > 0]
        cnt3 = np.bincount(vl, minlength=n).astype(float)
        r_mean[missing] = (np.bincount(vl, weights=rr, minlength=n) / np.maximum(cnt3, 1))[missing]
        c_mean[missing] = (np.bincount(vl, weights=cc, minlength=n) / np.maximum(cnt3, 1))[missing]
        missing &= cnt3 > 0
    return r_mean, c_mean, (cnt > 0) | missing


def subject_png(
    path: str | os.PathLike[str],
    instances: np.ndarray,
    id_to_name: Mapping[int, str],
    spacing_mm: tuple[float, float, float],
    image: np.ndarray | None = None,
    title: str = "",
    height_px: int = 720,
) -> None:
    """Mid-sagittal slice with the instance overlay and each structure's name.

    ``instances`` and ``image`` in canonical order; pixels are resampled to square mm
    (SI / AP spacing) so anatomy is not stretched, ``height_px`` rows tall.  Names sit at
    the in-slice centroid of each instance (instances absent from the slice are labeled at
    their projected centroid): vertebrae in white left of the body, discs in yellow right
    of it.  Drawn with Pillow rather than matplotlib: one PNG per subject is written by a
    per-subject job, where importing pyplot alone cost more than the split it illustrates.
    """
    from PIL import Image, ImageDraw, ImageFont

    inst = np.asarray(instances)
    k = mid_sagittal_index(inst)
    sl = inst[k]
    h, w = sl.shape
    scale = height_px / max(h * float(spacing_mm[1]), 1e-6)  # px per mm
    out_h = max(1, round(h * float(spacing_mm[1]) * scale))
    out_w = max(1, round(w * float(spacing_mm[2]) * scale))
    if image is not None:
        im = np.asarray(image[min(k, image.shape[0] - 1)], dtype=np.float32)
        lo, hi = np.percentile(im, [1, 99]) if im.size else (0.0, 1.0)
        grey = np.clip((im - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * 255
    else:
        grey = np.zeros(sl.shape, dtype=np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    fg = sl > 0
    # 45 % overlay of the instance colour, as a vectorised blend over the labeled pixels
    rgb[fg] = 0.55 * rgb[fg] + 0.45 * _PALETTE[sl[fg] % len(_PALETTE)]
    canvas = Image.fromarray(rgb.astype(np.uint8), "RGB").resize((out_w, out_h), Image.NEAREST)
    margin_l, margin_r, margin_t = 60, 80, 24
    page = Image.new("RGB", (out_w + margin_l + margin_r, out_h + margin_t), "black")
    page.paste(canvas, (margin_l, margin_t))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default()
    n = int(inst.max(initial=0)) + 1
    r_mean, c_mean, shown = _centroids(inst, sl, n)
    sy, sx = out_h / h, out_w / w
    for iid, name in sorted(id_to_name.items()):
        iid = int(iid)
        if not (0 < iid < n and shown[iid]):
            continue
        y = margin_t + (r_mean[iid] + 0.5) * sy
        x = margin_l + (c_mean[iid] + 0.5) * sx
        if "-" in name:  # disc: yellow, to the right of the column
            draw.text((x + 0.18 * out_w, y), name, fill=(255, 255, 0), font=font, anchor="lm")
        else:
            draw.text((x - 0.05 * out_w, y), name, fill=(255, 255, 255), font=font, anchor="rm")
    draw.text((4, 4), f"{title}  (slice {k})", fill=(255, 255, 255), font=font)
    with atomic_path(path) as tmp:
        page.save(tmp, format="PNG")


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
    from spinecensus.anatomy import labels

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

    from spinecensus.census.tables import read_metadata

    tdir = Path(tables_dir)
    prev = pq.read_table(tdir / "prevalence.parquet").to_pandas()
    meta = read_metadata(tdir / "prevalence.parquet")
    planted = json.loads(meta["planted"]) if "planted" in meta else None
    prevalence_png(prev, prevalence_path, planted)
    st = pq.read_table(tdir / "structures.parquet", columns=["label", "kind", "volume_mm3"])
    volumes_png(st.to_pandas(), volumes_path)
