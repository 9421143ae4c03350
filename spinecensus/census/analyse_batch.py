"""The ``analyse_<batch>`` rules: every subject of one segmentation batch analysed in one
process, each with its own outputs, failure record and "rerun one subject".

Why per batch: an analysis takes ~0.3 s, a fresh Python process with the imports it needs
~1 s (measured, benchmarks/README.md), and Snakemake ignores ``group:`` when it runs
locally (each grouped job is still its own process), so one process per batch is what
removes the start-up cost on a workstation.

Which subjects a run recomputes: the rules declare each subject's ``summary.json``,
``structures.parquet``, ``morphometrics.parquet`` and ``qc.png`` with Snakemake's
``update()`` flag, so Snakemake keeps existing outputs when it reruns a batch's rule,
and :func:`analyse_batch` recomputes

* the subjects whose outputs are missing or whose recorded :func:`analysis_key` differs
  from the current one (a run killed midway resumes where it stopped; a deleted subject
  folder, requested again, is recomputed alone);
* every subject of the batch when none is missing or stale: the rule was run on purpose
  (``--forcerun results/subjects/S/summary.json``, ``-R``), so it reruns like a
  one-subject-per-job rule would, for the batch's subjects.

The key covers everything the outputs depend on: the subject's mask, vote map and failure
record (sha256), its image (path and sha256), the segmentation batch's method / model /
labeler, the analysis options and the package's source code.

Failures stay per subject (:func:`spinecensus.census.analyse_job.analyse`: a subject's bad
input becomes its ``failed.json``; a fault of the program fails the job, and Snakemake
restores the outputs it had backed up).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spinecensus import __version__
from spinecensus.census.analyse_job import analyse, file_sha256, image_sha256, read_batch_info
from spinecensus.census.environment import process_age_s

#: the per-subject outputs the rules declare (``qc.png`` only with QC pictures on)
DECLARED = ("summary.json", "structures.parquet", "morphometrics.parquet", "qc.png")


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 of the package's Python sources (relative names + bytes; ~5 ms): a changed
    algorithm makes every stored analysis stale."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def analysis_key(
    subject: str,
    seg: Path,
    image: str | None,
    image_sha: str | None,
    batch_info: Mapping[str, Any],
    options: Mapping[str, Any],
) -> str:
    """A digest of everything ``subject``'s analysis outputs depend on (module docstring);
    ``image_sha``: the image's sha256 (:func:`~spinecensus.census.analyse_job.image_sha256`)."""
    files = {}
    names = (f"{subject}.nii.gz", f"{subject}.labeler.nii.gz", f"{subject}.failed.json")
    for name in (*names, f"{subject}.qc.npz"):
        files[name] = file_sha256(seg / name) if (seg / name).exists() else None
    record = {
        "subject": subject,
        "segmentation": files,
        "image": image or None,
        "image_sha256": image_sha,
        "batch": {k: batch_info.get(k) for k in ("method", "model", "labeler")},
        "options": dict(options),
        "version": __version__,
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _is_current(out: Path, key: str, qc_png: bool) -> bool:
    """Whether ``out`` holds complete outputs computed under ``key``."""
    names = DECLARED if qc_png else DECLARED[:-1]
    if not all((out / n).exists() for n in names):
        return False
    try:
        return json.loads((out / "summary.json").read_text()).get("analysis_key") == key
    except (OSError, ValueError):
        return False


def _keep_newer_than_inputs(out: Path, inputs: Sequence[Path]) -> None:
    """Touch kept outputs older than an input (e.g. a re-segmented batch that gave the same
    mask), so Snakemake does not see them as outdated on every later run."""
    newest = max((p.stat().st_mtime for p in inputs if p.exists()), default=0.0)
    stamp = max(newest, time.time())
    for name in DECLARED:
        f = out / name
        if f.exists() and f.stat().st_mtime < newest:
            os.utime(f, (stamp, stamp))


def analyse_batch(
    subjects: Sequence[str],
    seg_dir: str | os.PathLike[str],
    out_root: str | os.PathLike[str],
    images: Sequence[str | None] | None = None,
    qc_png: bool = True,
    field_of_view: str = "whole_spine",
    gzip_level: int = 1,
) -> dict[str, Any]:
    """Analyse the ``subjects`` of one segmentation batch (``seg_dir``) into
    ``out_root/<subject>/`` (:func:`spinecensus.census.analyse_job.analyse` each), skipping
    those whose outputs are current (same :func:`analysis_key`).

    ``images``: each subject's image path (``""`` / None = none), for the QC picture and
    provenance.  When every subject is current, all are recomputed (module docstring).
    Returns ``{"analysed": [...], "kept": [...], "failed": [...], "seconds":
    ...}``; per-subject lines go to stderr (the rule's log).
    """
    started = time.perf_counter()
    age = process_age_s() or 0.0
    seg, root = Path(seg_dir), Path(out_root)
    images = list(images) if images is not None else [None] * len(subjects)
    if len(images) != len(subjects):
        raise ValueError("subjects and images must have the same length")
    info = read_batch_info(seg)
    options = {"qc_png": qc_png, "field_of_view": field_of_view, "gzip_level": gzip_level}
    shas = [image_sha256(info, s, im or None) for s, im in zip(subjects, images, strict=True)]
    keys = [
        analysis_key(s, seg, im or None, sha, info, options)
        for s, im, sha in zip(subjects, images, shas, strict=True)
    ]
    current = [_is_current(root / s, k, qc_png) for s, k in zip(subjects, keys, strict=True)]
    if all(current):  # nothing missing or stale: the rule was forced, so recompute the batch
        current = [False] * len(subjects)
    todo, kept = [], []
    for subject, image, sha, key, keep in zip(subjects, images, shas, keys, current, strict=True):
        if keep:
            inputs = [seg / ".snakemake_timestamp", seg / f"{subject}.nii.gz"]
            _keep_newer_than_inputs(root / subject, inputs + ([Path(image)] if image else []))
            kept.append(subject)
        else:
            todo.append((subject, image or None, sha, key))
    failed = []
    for subject, image, sha, key in todo:
        summary = analyse(
            subject, seg, root / subject, image=image, qc_png=qc_png,
            field_of_view=field_of_view, gzip_level=gzip_level, batch_info=info,
            analysis_key=key, startup_s=age / len(todo), input_sha256=sha,
        )  # fmt: skip
        if summary.get("status") != "ok":
            failed.append(subject)
        print(f"analyse: {subject}: {summary.get('status')} ({summary['seconds']:.2f} s)",
              file=sys.stderr)  # fmt: skip
    result = {
        "analysed": [t[0] for t in todo],
        "kept": kept,
        "failed": failed,
        "process_age_at_start_s": age,
        "seconds": time.perf_counter() - started,
    }
    print(f"analyse: {seg.name}: {len(todo)} analysed ({len(failed)} failed), "
          f"{len(kept)} kept (current), {result['seconds']:.1f} s", file=sys.stderr)  # fmt: skip
    return result
