"""The ``spinecensus train`` command: the five generated-label steps in order, without
Snakemake (the same functions the rules of ``workflow/rules/train.smk`` call)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spinecensus.segment.weights import weights_file
from spinecensus.train.autolabel import train_autolabel
from spinecensus.train.config import PRESETS, load_config
from spinecensus.train.crops import train_crops, train_expert_crops
from spinecensus.train.evaluation import train_evaluate
from spinecensus.train.job_logging import setup_logging
from spinecensus.train.labeler import train_labeler
from spinecensus.train.segmentation import train_segmentation


def _cmd_train(args: argparse.Namespace) -> int:
    setup_logging()
    cfg = load_config(args.config)
    if args.size:
        cfg["size"] = args.size
    cfg["threads"] = args.threads
    out = Path(args.out)
    seg = (
        weights_file(args.segmentation_weights, "segmentation")
        if args.segmentation_weights
        else train_segmentation(cfg, out / "segmentation.pt")
    )
    auto = train_autolabel(cfg, seg, out / "autolabels.npz")
    crops = train_crops(cfg, auto, out / "crops.npz")
    ecrops = train_expert_crops(cfg, out / "expert_crops.npz")
    lab = train_labeler(cfg, crops, out / "labeler.pt", "labeler")
    ctl = train_labeler(cfg, ecrops, out / "control.pt", "control")
    train_evaluate(cfg, lab, ctl, out / "eval.parquet", out / "eval.md")
    print((out / "eval.md").read_text())
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="run the whole training pipeline without Snakemake (synthetic data)"
    )
    p.add_argument("--config", help="YAML with a train: section")
    p.add_argument("--size", choices=sorted(PRESETS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/train")
    p.add_argument(
        "--segmentation-weights",
        help='skip step 1: auto-label with these weights ("shipped", or a .pt/.onnx path)',
    )
    p.set_defaults(func=_cmd_train)
