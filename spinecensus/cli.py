"""Command line: ``spinecensus <command> ...``.

Each module that offers a command defines ``register_cli(subparsers)`` which adds its
sub-parser and sets ``func`` (called with the parsed namespace; returns an exit code).
Heavy imports (torch) happen inside the handlers so that ``spinecensus split`` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from spinecensus import __version__
from spinecensus.io import InputError

#: modules that contribute sub-commands, in the order shown by ``--help``
CLI_MODULES = (
    "spinecensus.synthetic.cli",
    "spinecensus.census.subject_analysis",
    "spinecensus.measure.cli",
    "spinecensus.segment.onnx_export",
    "spinecensus.train.cli",
    "spinecensus.census.tables",
    "spinecensus.train.real_sample_sheet",
    "spinecensus.io.checks",
    "spinecensus.census.cluster",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spinecensus", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"spinecensus {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # module not part of this build
            raise
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        # one clear line, no traceback: the message names the file and the problem
        print(f"spinecensus {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
