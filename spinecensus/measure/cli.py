"""``spinecensus measure INSTANCES.nii.gz LABELS.json --out DIR``: one subject's morphometrics.

Reads the two files the ``analyse`` job (and ``spinecensus split``) write per subject:
``instances.nii.gz`` (uint16 instance ids on the input's stored grid, any orientation: it is
read into canonical order) and ``labels.json`` (``{"1": "C2", "2": "C2-C3", ...}``), and
writes ``DIR/morphometrics.parquet`` and ``DIR/alignment.json``
(:func:`spinecensus.measure.morphometrics.measure_subject`,
:func:`spinecensus.measure.morphometrics.write_measurements`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

from spinecensus.io import InputError, load_mask

#: a vertebra (C2, T13, S1, ...) or a disc between two (L5-S1): the schema's names and the
#: generator variants' (T13, S2, S1-S2)
_NAME = re.compile(r"[CTLS]\d{1,2}(-[CTLS]\d{1,2})?")


def read_labels(path: str | os.PathLike[str]) -> dict[int, str]:
    """``labels.json`` -> ``{id: name}``; :class:`InputError` naming the file when it is not
    a JSON object of positive integer ids to vertebra / disc names."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(p, "labels file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(p, f"not a readable JSON file ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(p, 'expected a JSON object {"<instance id>": "<structure name>"}')
    out: dict[int, str] = {}
    for key, name in raw.items():
        try:
            iid = int(key)
        except ValueError:
            raise InputError(p, f"instance id {key!r} is not an integer") from None
        if iid <= 0:
            raise InputError(p, f"instance id {iid} must be positive")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InputError(
                p, f"instance {iid}: {name!r} is not a vertebra or disc name (e.g. L1, L1-L2)"
            )
        out[iid] = name
    return out


def _cmd_measure(args: argparse.Namespace) -> int:
    from spinecensus.measure.morphometrics import measure_subject, write_measurements

    scan = load_mask(args.instances)
    names = read_labels(args.labels)
    table, spine = measure_subject(scan.data, names, scan.spacing_mm)
    parquet, js = write_measurements(table, spine, args.out)
    graded = table["genant_grade"].dropna()
    lord, kyph = spine["lordosis_deg"], spine["kyphosis_deg"]
    print(
        f"{args.instances}: {len(table)} structures, "
        f"{int((graded >= 1).sum())} with Genant grade >= 1, "
        f"lordosis {'n/a' if lord is None else f'{lord:.1f} deg'}, "
        f"kyphosis {'n/a' if kyph is None else f'{kyph:.1f} deg'} -> {parquet}, {js}"
    )
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``spinecensus measure INSTANCES.nii.gz LABELS.json --out DIR``."""
    p = sub.add_parser(
        "measure",
        help="vertebral and disc heights, Genant grades, disc height index, lordosis/kyphosis",
        description=(
            "Measure one subject's split instances (instances.nii.gz + labels.json as the "
            "analyse job and 'spinecensus split' write them): DIR/morphometrics.parquet "
            "(one row per structure, units in the schema metadata) and DIR/alignment.json."
        ),
    )
    p.add_argument("instances", help="instance mask NIfTI (uint16 ids)")
    p.add_argument("labels", help='labels JSON {"<id>": "<name>"}')
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_cmd_measure)
