#!/usr/bin/env python3
"""Segmentation Dice per contrast: each weights file on the same synthetic subjects rendered
in every named appearance (``spinecensus.train.contrast_evaluation``), **synthetic**.

Usage::

    .venv/bin/python benchmarks/contrast_dice.py spinecensus/weights/segmentation.pt \
        spinecensus/weights/segmentation_real.pt [--subjects 3] [--threads 2]

Prints one markdown row per (weights, contrast): mean and minimum body / disc Dice, n,
seeds, and the weights' sha256 prefix.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from spinecensus.segment.weights import sha256_file  # noqa: E402
from spinecensus.train.contrast_evaluation import (  # noqa: E402
    EVAL_SEED0,
    NAMED_CONTRASTS,
    contrast_dice,
    contrast_summary,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="+")
    ap.add_argument("--subjects", type=int, default=3)
    ap.add_argument("--seed0", type=int, default=EVAL_SEED0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contrasts", nargs="+", default=list(NAMED_CONTRASTS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seeds = f"{args.seed0}-{args.seed0 + args.subjects - 1}"
    print("| weights (sha256) | contrast | n | body Dice mean / min | disc Dice mean / min "
          "| seeds |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for w in args.weights:
        summary = contrast_summary(contrast_dice(w, args.contrasts, args.subjects, args.seed0))
        tag = f"{os.path.basename(w)} ({sha256_file(w)[:8]})"
        for contrast, r in summary.iterrows():
            print(
                f"| {tag} | {contrast} | {int(r['n'])} | {r['dice_vertebra_mean']:.3f} / "
                f"{r['dice_vertebra_min']:.3f} | {r['dice_disc_mean']:.3f} / "
                f"{r['dice_disc_min']:.3f} | {seeds} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
