"""The ``spinecensus synth`` command: write a synthetic cohort (listed in
``spinecensus.cli.CLI_MODULES``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from spinecensus.synthetic.cohort import write_cohort
from spinecensus.synthetic.config import SyntheticConfig


def _prob(text: str) -> float:
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"probability must be in [0, 1], got {text}")
    return p


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """``spinecensus synth --n N --seed S --out DIR [...]``."""
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic whole-spine cohort (images, masks, labels, samples.tsv)",
        description="Write a seeded synthetic whole-spine T2-like MRI cohort with exact "
        "ground truth: DIR/<subject>/{image,semantic,instances}.nii.gz, labels.json "
        "and DIR/samples.tsv.",
    )
    p.add_argument("--n", type=int, required=True, help="number of subjects")
    p.add_argument("--seed", type=int, required=True, help="cohort seed")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--lumbarization", type=_prob, default=0.066, help="prevalence (0.066)")
    p.add_argument("--sacralization", type=_prob, default=0.036, help="prevalence (0.036)")
    p.add_argument("--preset", choices=("default", "tiny"), default="default",
                   help="generator preset (tiny: coarse, for tests)")  # fmt: skip
    p.set_defaults(func=_cli_synth)


def _cli_synth(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise SystemExit("spinecensus synth: error: --n must be >= 0")
    if args.lumbarization + args.sacralization > 1.0:
        raise SystemExit("spinecensus synth: error: prevalences sum to more than 1")
    sheet = write_cohort(
        args.out, args.n, args.seed, args.lumbarization, args.sacralization,
        SyntheticConfig.preset(args.preset),
    )  # fmt: skip
    print(sheet)
    return 0
