"""The ``spinecensus synth`` command: write a synthetic cohort (listed in
``spinecensus.cli.CLI_MODULES``)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from spinecensus.synthetic.appearance import APPEARANCES
from spinecensus.synthetic.cohort import write_cohort
from spinecensus.synthetic.config import SyntheticConfig
from spinecensus.synthetic.variants import (
    REFERENCE_RATES,
    VARIANTS,
    VariantRateError,
    check_rates,
    parse_rate,
)


def _prob(text: str) -> float:
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"probability must be in [0, 1], got {text}")
    return p


def variant_rate(text: str) -> tuple[str, float]:
    """argparse type of ``--variant-rate NAME=P``; the error names the argument."""
    try:
        return parse_rate(text)
    except VariantRateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """``spinecensus synth --n N --seed S --out DIR [...]``."""
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic whole-spine cohort (images, masks, labels, samples.tsv)",
        description="Write a seeded synthetic whole-spine T2-like MRI cohort with exact "
        "ground truth: DIR/<subject>/{image,semantic,instances}.nii.gz, labels.json, "
        "truth.json (planted heights, Genant grades, lordosis) and DIR/samples.tsv.",
    )
    p.add_argument("--n", type=int, required=True, help="number of subjects")
    p.add_argument("--seed", type=int, required=True, help="cohort seed")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--lumbarization", type=_prob, default=0.066, help="prevalence (0.066)")
    p.add_argument("--sacralization", type=_prob, default=0.036, help="prevalence (0.036)")
    p.add_argument("--preset", choices=("default", "tiny"), default="default",
                   help="generator preset (tiny: coarse, for tests)")  # fmt: skip
    ref = ", ".join(f"{k}={v}" for k, v in REFERENCE_RATES.items())
    p.add_argument("--variant-rate", type=variant_rate, action="append", default=[],
                   metavar="NAME=P",
                   help=f"rate of an anatomical or field-of-view variant, repeatable; NAME one "
                   f"of {', '.join(VARIANTS)} (default 0; literature rates: {ref})")  # fmt: skip
    p.add_argument("--appearance", choices=APPEARANCES, default="default",
                   help="image contrast: default (the fixed realistic T2), a named contrast, "
                   "or randomised (a random appearance per subject)")  # fmt: skip
    p.set_defaults(func=_cli_synth)


def _cli_synth(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise SystemExit("spinecensus synth: error: --n must be >= 0")
    if args.lumbarization + args.sacralization > 1.0:
        raise SystemExit("spinecensus synth: error: prevalences sum to more than 1")
    try:
        rates = check_rates(dict(args.variant_rate))
    except VariantRateError as exc:  # t11 + t13 > 1: only the pair can tell
        raise SystemExit(f"spinecensus synth: error: --variant-rate: {exc}") from None
    sheet = write_cohort(
        args.out, args.n, args.seed, args.lumbarization, args.sacralization,
        replace(SyntheticConfig.preset(args.preset), appearance=args.appearance), rates,
    )  # fmt: skip
    print(sheet)
    return 0
