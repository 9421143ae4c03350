"""Gallery of synthetic appearances: one subject's mid-sagittal slice in every named contrast
and in several randomised draws (synthetic, seeded) -> ``docs/gallery_appearance.png``.

Run:  .venv/bin/python benchmarks/appearance_gallery.py [--seed 7] [--out PNG]

Panels (3 x 4): ``default`` (the demo's fixed realistic T2, ``generate_subject``), the named
contrasts ``t2``, ``t1``, ``water``, ``fat``, ``inverted``
(:func:`spinecensus.synthetic.appearance.render_appearance`), then six ``randomised`` draws,
each cropped to its drawn field of view.  Every panel is windowed to its own 0.5-99.5th
percentile; the aspect follows the voxel spacing.  The subject is generated with the default
config (seed ``--seed``); the render draws use ``numpy.random.default_rng([seed, k])``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from spinecensus.census.pyplot_png import pyplot, save_png  # noqa: E402
from spinecensus.synthetic import SyntheticConfig, generate_subject  # noqa: E402
from spinecensus.synthetic.appearance import render_appearance  # noqa: E402

NAMED = ("t2", "t1", "water", "fat", "inverted")
N_RANDOM = 6


def panels(seed: int) -> list[tuple[str, np.ndarray, float]]:
    """(title, 2-D mid-sagittal slice (SI x AP), aspect = SI / AP spacing) per panel."""
    sub = generate_subject(seed, "normal", SyntheticConfig())
    mid = sub.shape[0] // 2
    aspect = sub.spacing_mm[1] / sub.spacing_mm[2]
    out = [("default (demo T2)", sub.image[mid], aspect)]
    for k, name in enumerate(NAMED):
        r = render_appearance(sub.tissue, sub.spacing_mm, name, np.random.default_rng([seed, k]))
        out.append((name, r.image[mid], aspect))
    for k in range(N_RANDOM):
        rng = np.random.default_rng([seed, len(NAMED) + k])
        r = render_appearance(sub.tissue, sub.spacing_mm, "randomised", rng)
        img, _ = r.cropped(sub.semantic)
        d = r.draw
        title = (
            f"randomised {k + 1}: {d.source}\n"
            f"res x{d.factors[1]:.1f}/x{d.factors[2]:.1f}, noise {d.noise_sd:.0f}, "
            f"rows {d.rows[0]}-{d.rows[1]}"
        )
        out.append((title, img[mid], aspect))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("docs/gallery_appearance.png"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    plt = pyplot()
    fig, axes = plt.subplots(3, 4, figsize=(12, 13))
    for ax, (title, img, aspect) in zip(axes.ravel(), panels(args.seed), strict=True):
        lo, hi = np.percentile(img, [0.5, 99.5])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"synthetic appearances of one subject (seed {args.seed}), mid-sagittal slice")
    fig.tight_layout()
    save_png(fig, args.out, dpi=70)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
