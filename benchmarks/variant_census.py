#!/usr/bin/env python3
"""Census on a synthetic stress cohort with variants: expected_status x reported status.

Synthesizes subject ``i`` of a seeded cohort with the generator's variants
(:mod:`spinecensus.synthetic.variants`: remnant S1-S2 disc, 11/13 thoracic, C2 or sacrum
out of view, C2-C3 block), segments it (``--method model``: the shipped U-Net or
``--weights``; ``ground_truth``: the generator's semantic mask) and analyses it in-process
(:func:`spinecensus.census.subject_analysis.analyse_semantic`, as the ``analyse`` rule),
then tabulates the status a correct census reports (``expected_status``) against the
reported one, for all subjects, those without variants and each variant (a subject with
several variants counts under each).  Every figure is **synthetic**.

Resumable: one JSON line per subject is appended to ``OUT/subjects.jsonl`` as it finishes;
a rerun with the same cohort arguments skips the subjects already there (other arguments
are refused: ``OUT/run.json`` records them).  Writes ``OUT/confusion.tsv`` (group,
expected, reported, n) and ``OUT/summary.tsv`` (per group: n, correct, wrong_definite =
a definite status that is not the expected one, withheld = undetermined where a status
was expected, failed) and prints both as Markdown.

Run (acceptance: 1,000 subjects, every variant at >= 5 %)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/variant_census.py --n 1000 --seed 19 \\
        --rate sacral_disc=0.16 --rate t11=0.05 --rate t13=0.05 --rate c2_cut=0.05 \\
        --rate sacrum_cut=0.05 --rate fused_block=0.05 --method ground_truth \\
        --workers 2 --out benchmarks/out/variant_census_gt
    .venv/bin/python benchmarks/variant_census.py ... --method model --device cuda \\
        --out benchmarks/out/variant_census_model

Without ``--rate`` every variant is drawn at 0.1 (t11 and t13 at 0.1 each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from spinecensus.synthetic import cohort, variants  # noqa: E402
from spinecensus.synthetic.config import SyntheticConfig  # noqa: E402

STATUSES = ("normal", "lumbarization", "sacralization", "undetermined", "failed")
DEFINITE = ("normal", "lumbarization", "sacralization")
#: arguments that define the cohort and the method: a resumed run must repeat them (--n
#: may grow: subject i does not depend on n)
RUN_KEYS = ("seed", "rates", "lumbarization", "sacralization", "preset", "method",
            "weights", "labeler")  # fmt: skip


def _rate(text: str) -> tuple[str, float]:
    try:
        return variants.parse_rate(text)
    except variants.VariantRateError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--variant-rate", "--rate")) from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="subjects (40)")
    ap.add_argument("--seed", type=int, default=19, help="cohort seed (19)")
    ap.add_argument("--rate", type=_rate, action="append", default=[], metavar="NAME=P",
                    help="a variant's rate, repeatable (none: every variant 0.1)")  # fmt: skip
    ap.add_argument("--lumbarization", type=float, default=0.066)
    ap.add_argument("--sacralization", type=float, default=0.036)
    ap.add_argument("--preset", choices=("default", "tiny"), default="default")
    ap.add_argument("--method", choices=("ground_truth", "model"), default="ground_truth")
    ap.add_argument("--weights", default="", help="segmentation weights ('' = shipped)")
    ap.add_argument("--labeler", default="", help="labeler weights ('' = none, 'shipped')")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (model)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1,
                    help="processes (ground_truth only; the model runs in this one)")  # fmt: skip
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    args = ap.parse_args(argv)
    rates = dict(args.rate) or {v: 0.1 for v in variants.VARIANTS}
    args.rates = variants.check_rates(rates)
    return args


def _run_record(args: argparse.Namespace) -> dict[str, Any]:
    rec = {k: getattr(args, k) for k in RUN_KEYS}
    rec["rates"] = dict(sorted(args.rates.items()))
    return rec


class _Segmenter:
    """The per-subject semantic mask (and labeler votes): the model, or the ground truth."""

    def __init__(self, args: argparse.Namespace):
        self.model = self.labeler = None
        if args.method == "model" or args.labeler:
            from spinecensus.segment import weights as w  # torch: only when a model runs
        if args.method == "model":
            path = Path(args.weights) if args.weights else w.DEFAULT_SEGMENTATION_WEIGHTS
            self.model = w.load_model(path, device=args.device, threads=args.threads,
                                      batch_size=args.batch_size, task="segmentation")  # fmt: skip
        if args.labeler:
            lpath = w.weights_file(args.labeler, "labeling")
            self.labeler = w.load_model(lpath, device=args.device, threads=args.threads,
                                        batch_size=args.batch_size, task="labeling")  # fmt: skip

    def __call__(self, sub: Any, scan: Any) -> tuple[np.ndarray, np.ndarray | None]:
        sem = sub.semantic if self.model is None else self.model.predict_semantic(
            scan.data, scan.spacing_mm)  # fmt: skip
        votes = None
        if self.labeler is not None:
            votes = self.labeler.predict_structure_classes(scan.data, scan.spacing_mm, sem > 0)
        return np.asarray(sem), votes


def _top_height_ratio(instances: np.ndarray, kinds: Sequence[str], sy: float) -> float | None:
    """SI extent (mm) of the first vertebra instance over the second's: a C2 with its dens
    is ~2x a C3, a C2-C3 block more (recorded for the count-origin check)."""
    verts = [i + 1 for i, k in enumerate(kinds) if k == "vertebra"][:2]
    if len(verts) < 2:
        return None
    ext = []
    for k in verts:
        rows = np.nonzero((instances == k).any(axis=(0, 2)))[0]
        ext.append((rows.max() - rows.min() + 1) * sy)
    return float(ext[0] / ext[1])


def analyse_one(index: int, args: argparse.Namespace, segmenter: _Segmenter) -> dict[str, Any]:
    """Generate subject ``index``, segment and analyse it; its record (JSON-able)."""
    from spinecensus.census.subject_analysis import analyse_semantic
    from spinecensus.io import InputError, scan_from_image
    from spinecensus.io.checks import check_scan

    t0 = time.perf_counter()
    cfg = SyntheticConfig.preset(args.preset)
    sub = cohort.cohort_subject(args.seed, index, args.lumbarization, args.sacralization, cfg,
                                args.rates)  # fmt: skip
    rec: dict[str, Any] = {"index": index, "subject": sub.subject, "anomaly": sub.anomaly,
                           **cohort.truth_columns(sub)}  # fmt: skip
    try:
        img = sub.to_nifti(cfg.storage_axcodes)[0]
        scan = check_scan(scan_from_image(img, path=sub.subject), path=sub.subject)
        sem, votes = segmenter(sub, scan)
        a = analyse_semantic(sem, scan, labeler_votes=votes)
        s = a.summary
        rec.update(
            reported=s["transitional_status"], split_valid=s["split_valid"],
            invalid_reason=s["invalid_reason"], qc_flags=s["qc_flags"],
            decided_by=s["decided_by"], first_label=s["first_visible_label"],
            last_label=s["last_visible_label"], lumbar_count=s["lumbar_count"],
            n_vertebrae=s["n_vertebrae"], n_discs=s["n_discs"],
            top_height_ratio=_top_height_ratio(a.split.instances, a.split.kinds,
                                               scan.spacing_mm[1]),
        )  # fmt: skip
    except InputError as exc:  # a bad subject is a failure of the census, not of the run
        rec.update(reported="failed", error=str(exc))
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _worker(job: tuple[int, argparse.Namespace]) -> dict[str, Any]:
    index, args = job
    return analyse_one(index, args, _Segmenter(args))


def _done(path: Path) -> dict[int, dict[str, Any]]:
    """Records already written (a torn last line from a killed run is dropped)."""
    out: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[int(rec["index"])] = rec
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Analyse every subject not yet in ``OUT/subjects.jsonl``; all records, by index."""
    args.out.mkdir(parents=True, exist_ok=True)
    run_json, lines = args.out / "run.json", args.out / "subjects.jsonl"
    want = _run_record(args)
    if run_json.exists() and json.loads(run_json.read_text()) != want:
        raise SystemExit(f"{run_json}: an earlier run used other arguments "
                         f"({run_json.read_text().strip()}); use another --out")  # fmt: skip
    run_json.write_text(json.dumps(want) + "\n")
    done = _done(lines)
    todo = [i for i in range(args.n) if i not in done]
    print(f"{len(done)} subjects done, {len(todo)} to go", file=sys.stderr)
    with open(lines, "a") as fh:
        for rec in _records(todo, args):
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            done[rec["index"]] = rec
    return [done[i] for i in range(args.n)]


def _records(todo: list[int], args: argparse.Namespace) -> Iterable[dict[str, Any]]:
    if args.workers > 1 and args.method == "ground_truth" and not args.labeler:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(_worker, (i, args)) for i in todo]
            for f in as_completed(futures):
                yield f.result()
        return
    segmenter = _Segmenter(args)
    for i in todo:
        yield analyse_one(i, args, segmenter)


def groups_of(rec: dict[str, Any]) -> list[str]:
    """The table groups of a record: all, none or each of its variants."""
    vs = [v for v in str(rec.get("variants") or "").split(",") if v]
    return ["all", *(vs or ["none"])]


def tables(records: Sequence[dict[str, Any]]) -> tuple[list[tuple], list[tuple]]:
    """(confusion rows (group, expected, reported, n), summary rows (group, n, correct,
    wrong_definite, withheld, failed)), groups in the order all, none, VARIANTS."""
    conf: Counter[tuple[str, str, str]] = Counter()
    for r in records:
        for g in groups_of(r):
            conf[(g, r["expected_status"], r["reported"])] += 1
    order = ["all", "none", *variants.VARIANTS]
    confusion = sorted(
        ((g, e, p, n) for (g, e, p), n in conf.items()),
        key=lambda t: (order.index(t[0]), STATUSES.index(t[1]), STATUSES.index(t[2])),
    )
    summary = []
    for g in order:
        rows = [(e, p, n) for (gg, e, p), n in conf.items() if gg == g]
        if not rows:
            continue
        total = sum(n for _, _, n in rows)
        correct = sum(n for e, p, n in rows if e == p)
        wrong = sum(n for e, p, n in rows if p in DEFINITE and p != e)
        withheld = sum(n for e, p, n in rows if e in DEFINITE and p == "undetermined")
        failed = sum(n for _, p, n in rows if p == "failed")
        summary.append((g, total, correct, wrong, withheld, failed))
    return confusion, summary


def markdown(confusion: Sequence[tuple], summary: Sequence[tuple]) -> str:
    """Both tables as Markdown: the summary, then one expected x reported matrix per group."""
    out = [
        "| group | n | correct | wrong definite | withheld | failed |",
        "|---|---|---|---|---|---|",
    ]
    out += [f"| {g} | {n} | {c} | {w} | {h} | {f} |" for g, n, c, w, h, f in summary]
    for g, *_ in summary:
        cells = {(e, p): n for gg, e, p, n in confusion if gg == g}
        cols = [s for s in STATUSES if any(p == s for _, p in cells)]
        head = "| expected | " + " | ".join(cols) + " |"
        out += ["", f"**{g}** (rows expected, columns reported)", "", head,
                "|---" * (len(cols) + 1) + "|"]  # fmt: skip
        for e in STATUSES:
            if any(ee == e for ee, _ in cells):
                out.append(f"| {e} | " + " | ".join(str(cells.get((e, p), 0)) for p in cols) + " |")
    return "\n".join(out)


def write_tables(out: Path, confusion: Sequence[tuple], summary: Sequence[tuple]) -> None:
    with open(out / "confusion.tsv", "w") as fh:
        fh.write("group\texpected\treported\tn\n")
        fh.writelines("\t".join(map(str, row)) + "\n" for row in confusion)
    with open(out / "summary.tsv", "w") as fh:
        fh.write("group\tn\tcorrect\twrong_definite\twithheld\tfailed\n")
        fh.writelines("\t".join(map(str, row)) + "\n" for row in summary)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    records = run(args)
    confusion, summary = tables(records)
    write_tables(args.out, confusion, summary)
    rates = ", ".join(f"{k}={v}" for k, v in sorted(args.rates.items()))
    print(f"# Census on a synthetic stress cohort: n={args.n}, seed={args.seed}, "
          f"method={args.method}, preset={args.preset}, rates {rates} "
          f"({time.perf_counter() - t0:.0f} s this run; synthetic)\n")  # fmt: skip
    print(markdown(confusion, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
