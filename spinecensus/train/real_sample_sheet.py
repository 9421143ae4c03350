"""A pipeline sample sheet for the public annotated real MRI (``spinecensus real-sheet``)."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

from spinecensus.io import atomic_path
from spinecensus.train.real_data import DEFAULT_ROOT, load_manifest


def write_sample_sheet(
    out: str | os.PathLike[str],
    root: str | os.PathLike[str] = DEFAULT_ROOT,
    relative: bool = True,
) -> Path:
    """Write a cohort sample sheet (TSV) for the pipeline from the real-data manifest.

    Columns: ``subject`` (``<dataset>_<subject>``), ``image`` (path relative to the sheet's
    folder when ``relative``, else absolute; the data are never copied) and ``dataset``
    (the pipeline treats extra columns as covariates: prevalence is then stratified by
    source dataset).  The datasets carry no sex/age, so no such covariates are written.
    """
    out = Path(out)
    samples = load_manifest(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()
    with atomic_path(out) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["subject", "image", "dataset"])
        for s in samples:
            img = Path(os.path.relpath(s.image, base)) if relative else s.image
            w.writerow([s.key, img.as_posix(), s.dataset])
    return out


def _cmd_sheet(args: argparse.Namespace) -> int:
    path = write_sample_sheet(args.out, args.root, relative=not args.absolute)
    print(f"wrote {path}")
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "real-sheet", help="write a pipeline sample sheet for the public annotated real MRI"
    )
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="folder with manifest.tsv")
    p.add_argument("--out", required=True, help="TSV to write (subject, image, ...)")
    p.add_argument("--absolute", action="store_true", help="absolute image paths")
    p.set_defaults(func=_cmd_sheet)


__all__ = ["register_cli", "write_sample_sheet"]
