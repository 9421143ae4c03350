"""The workflow's job commands: one verb per Snakemake rule, plus sample-sheet checking.

Rules run ``python -m spinecensus.census <verb> ...`` (one process per job); each verb only
turns the shell arguments into Python values and calls the function named after its rule:

* rule ``synthesize`` -> ``synth`` -> :func:`spinecensus.census.synthesize_job.synthesize`
* rule ``segment`` -> ``segment`` -> :func:`spinecensus.census.segment_job.segment`
* rules ``analyse_<batch>`` -> ``analyse-batch`` ->
  :func:`spinecensus.census.analyse_batch.analyse_batch` (every subject of a segmentation
  batch in one process); ``analyse`` -> :func:`spinecensus.census.analyse_job.analyse` (one)
* rule ``aggregate`` -> ``aggregate`` -> :func:`spinecensus.census.aggregate_job.aggregate`
* rule ``cohort_qc`` -> ``cohort-qc`` -> :func:`spinecensus.census.cohort_figures.cohort_qc`
* rule ``failure_guard`` -> ``failure-guard`` ->
  :func:`spinecensus.census.failure_guard.failure_guard`
* rule ``review_page`` -> ``review-page`` -> :func:`spinecensus.review.page.review_page`

``check-sheet`` validates a sample sheet (:func:`spinecensus.census.sheet.read_sheet`).
Input and sample-sheet errors that stop a job print one line and exit with status 2; the
failure guard prints its line and exits with status 1; any other exception is a fault of the
program or the machine and ends the job with its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from spinecensus.census.aggregate_job import aggregate
from spinecensus.census.analyse_job import analyse
from spinecensus.census.cohort_figures import cohort_qc
from spinecensus.census.failure_guard import CohortFailed, failure_guard
from spinecensus.census.segment_job import segment
from spinecensus.census.sheet import SampleSheetError, read_sheet
from spinecensus.census.synthesize_job import synthesize
from spinecensus.io import InputError


def _cmd_segment(a: argparse.Namespace) -> int:
    # "-" stands for "no path in the sheet" (an empty shell argument would vanish)
    segment(
        a.subjects,
        ["" if p == "-" else p for p in a.images],
        a.out,
        method=a.method,
        semantics=["" if p == "-" else p for p in a.semantics] if a.semantics else None,
        weights=a.weights,
        device=a.device,
        batch_size=a.batch_size if a.batch_size == "auto" else int(a.batch_size),
        threads=a.threads,
        model_options=json.loads(a.model_options) if a.model_options else None,
        labeler_weights=a.labeler_weights,
        precision=a.precision,
        gzip_level=a.gzip_level,
    )
    return 0


def _cmd_failure_guard(a: argparse.Namespace) -> int:
    try:
        failure_guard(
            a.tables, a.seg_dirs, a.marker, a.max_failed_fraction, not a.no_whole_batch_check
        )
    except CohortFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _cmd_analyse(a: argparse.Namespace) -> int:
    analyse(
        a.subject,
        a.seg_dir,
        a.out,
        image=a.image or None,
        qc_png=not a.no_qc,
        field_of_view=a.field_of_view,
    )
    return 0


def _cmd_analyse_batch(a: argparse.Namespace) -> int:
    from spinecensus.census.analyse_batch import analyse_batch

    analyse_batch(
        a.subjects,
        a.seg_dir,
        a.out_root,
        images=["" if p == "-" else p for p in a.images] if a.images else None,
        qc_png=not a.no_qc,
        field_of_view=a.field_of_view,
        gzip_level=a.gzip_level,
    )
    return 0


def _cmd_aggregate(a: argparse.Namespace) -> int:
    config = json.loads(a.config) if a.config else None
    subjects = read_sheet(a.sheet)["subject"].tolist()
    aggregate(a.subjects_dir, subjects, a.out, sheet=a.sheet, config=config, overrides=a.overrides)
    return 0


def _cmd_review_page(a: argparse.Namespace) -> int:
    from spinecensus.review.page import review_page

    review_page(a.tables, a.subjects_dir, a.out, a.all_subjects, a.overrides or None)
    return 0


def _cmd_synth(a: argparse.Namespace) -> int:
    synthesize(a.out, a.n, a.seed, a.lumbarization, a.sacralization, a.preset, a.workers,
               dict(a.variant_rate))  # fmt: skip
    return 0


def _cmd_cohort_qc(a: argparse.Namespace) -> int:
    cohort_qc(a.tables, a.prevalence_png, a.volumes_png, a.morphometrics_png)
    return 0


def _cmd_check_sheet(a: argparse.Namespace) -> int:
    df = read_sheet(a.sheet)
    print(f"{a.sheet}: {len(df)} subjects, columns: {', '.join(df.columns)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from spinecensus.naming.labeling import FIELDS_OF_VIEW
    from spinecensus.synthetic.cli import variant_rate

    p = argparse.ArgumentParser(
        prog="python -m spinecensus.census", description=__doc__.splitlines()[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("segment", help="segment a batch of subjects (model loaded once)")
    s.add_argument("--subjects", nargs="+", required=True)
    s.add_argument("--images", nargs="+", required=True)
    s.add_argument("--semantics", nargs="*", default=None)
    s.add_argument("--out", required=True)
    s.add_argument("--method", default="model", choices=("model", "ground_truth"))
    s.add_argument("--weights", default="")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", default="16", help='slices per forward pass, or "auto"')
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    s.add_argument("--gzip-level", type=int, default=1, choices=range(10), metavar="0-9")
    s.add_argument("--model-options", default="", help="JSON: amp, layout, normalisation")
    s.add_argument(
        "--labeler-weights", default="", help='small-FOV labeler: "shipped", a path, or ""'
    )
    s.set_defaults(func=_cmd_segment)
    s = sub.add_parser("analyse", help="split + label + measure one subject")
    s.add_argument("--subject", required=True)
    s.add_argument("--seg-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--image", default="")
    s.add_argument("--no-qc", action="store_true")
    s.add_argument(
        "--field-of-view",
        default="whole_spine",
        choices=FIELDS_OF_VIEW,
        help="lumbar: C2 not in view, name levels upward from the sacrum",
    )
    s.set_defaults(func=_cmd_analyse)
    s = sub.add_parser("analyse-batch", help="analyse every subject of a segmentation batch")
    s.add_argument("--subjects", nargs="+", required=True)
    s.add_argument("--images", nargs="*", default=None, help='one per subject, "-" = none')
    s.add_argument("--seg-dir", required=True)
    s.add_argument("--out-root", required=True, help="results/subjects: <root>/<subject>/")
    s.add_argument("--no-qc", action="store_true")
    s.add_argument("--field-of-view", default="whole_spine", choices=FIELDS_OF_VIEW)
    s.add_argument("--gzip-level", type=int, default=1, choices=range(10), metavar="0-9")
    s.set_defaults(func=_cmd_analyse_batch)
    s = sub.add_parser("aggregate", help="build the cohort tables")
    s.add_argument("--subjects-dir", required=True)
    s.add_argument("--sheet", required=True, help="sample sheet: the cohort's subjects")
    s.add_argument("--config", default="", help="the workflow config as JSON (metadata)")
    s.add_argument("--out", required=True)
    s.add_argument("--overrides", default="", help="an analyst's overrides.tsv (or none)")
    s.set_defaults(func=_cmd_aggregate)
    s = sub.add_parser("review-page", help="the static review page of the flagged subjects")
    s.add_argument("--tables", required=True, help="folder of the cohort tables")
    s.add_argument("--subjects-dir", required=True, help="folder of the per-subject outputs")
    s.add_argument("--out", required=True, help="the page, e.g. results/review/index.html")
    s.add_argument("--all-subjects", action="store_true", help="list every subject")
    s.add_argument("--overrides", default="", help="the overrides file the tables used")
    s.set_defaults(func=_cmd_review_page)
    s = sub.add_parser("synth", help="generate the synthetic demo cohort")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--lumbarization", type=float, default=0.066)
    s.add_argument("--sacralization", type=float, default=0.036)
    s.add_argument("--preset", default="default", choices=("default", "tiny"))
    s.add_argument("--workers", type=int, default=1, help="processes (Snakemake threads)")
    s.add_argument("--variant-rate", type=variant_rate, action="append", default=[],
                   metavar="NAME=P", help="a variant's rate (synthetic.variants)")  # fmt: skip
    s.set_defaults(func=_cmd_synth)
    s = sub.add_parser("cohort-qc", help="cohort QC figures from the tables")
    s.add_argument("--tables", required=True)
    s.add_argument("--prevalence-png", required=True)
    s.add_argument("--volumes-png", required=True)
    s.add_argument("--morphometrics-png", help="per-level height and DHI curves by age band")
    s.set_defaults(func=_cmd_cohort_qc)
    s = sub.add_parser("failure-guard", help="fail the run when too many subjects failed")
    s.add_argument("--tables", required=True)
    s.add_argument("--marker", required=True, help="written when the run passes the guard")
    s.add_argument("--max-failed-fraction", type=float, default=0.2)
    s.add_argument(
        "--no-whole-batch-check", action="store_true", help="pass batches that failed whole"
    )
    s.add_argument("--seg-dirs", nargs="*", default=[], help="segmentation batch folders")
    s.set_defaults(func=_cmd_failure_guard)
    s = sub.add_parser("check-sheet", help="validate a sample sheet")
    s.add_argument("sheet")
    s.set_defaults(func=_cmd_check_sheet)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, SampleSheetError) as exc:
        print(f"spinecensus.census {args.command}: error: {exc}", file=sys.stderr)
        return 2
