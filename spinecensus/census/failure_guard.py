"""The ``failure_guard`` rule: a cohort run never "succeeds" on garbage.

Runs after ``aggregate`` (whose tables are kept: they are its outputs, not the guard's) and
fails the run, with one clear line, when more than ``qc.max_failed_fraction`` of the
subjects failed, or when every subject of one segmentation batch failed (a batch that fails
whole points at the machine or the configuration, not at its subjects).  Otherwise it writes
its marker file, which the workflow's target ``all`` requires.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from spinecensus.io import atomic_path

DEFAULT_MAX_FAILED_FRACTION = 0.2


class CohortFailed(RuntimeError):
    """Too many subjects failed; the message is the guard's one line."""


def error_kind(error: str) -> str:
    """An error message without its leading file path, so that the same problem of many
    files counts as one message (``"/a/S1.nii.gz: file does not exist"`` ->
    ``"file does not exist"``)."""
    head, sep, rest = error.partition(": ")
    if sep and ("/" in head or "." in head) and " " not in head:
        return rest
    return error


def commonest_errors(errors: Iterable[str], n: int = 3) -> list[tuple[str, int]]:
    """The ``n`` commonest error messages (file paths removed) with their counts."""
    return Counter(error_kind(e) for e in errors).most_common(n)


def batch_members(seg_dirs: Iterable[str | os.PathLike[str]]) -> dict[str, list[str]]:
    """``{batch name: [subject, ...]}`` from each segmentation batch's ``batch.json``."""
    members = {}
    for d in seg_dirs:
        info = json.loads((Path(d) / "batch.json").read_text())
        members[Path(d).name] = [rec["subject"] for rec in info.get("subjects", [])]
    return members


def guard_message(
    processed: Mapping[str, bool],
    batches: Mapping[str, Sequence[str]],
    failures: Sequence[Mapping[str, str]],
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION,
    whole_batch: bool = True,
) -> str | None:
    """The guard's one line, or ``None`` when the run may count as a success.

    ``processed``: subject -> analysed (``subjects.parquet``); ``failures``: rows of
    ``failures.parquet`` (``subject``, ``rule``, ``error``); ``whole_batch``: also fail when
    every subject of one batch failed (``qc.fail_on_whole_batch``).
    """
    n = len(processed)
    failed = {s for s, ok in processed.items() if not ok}
    whole = sorted(
        b for b, subs in batches.items() if whole_batch and subs and all(s in failed for s in subs)
    )
    too_many = n > 0 and len(failed) / n > max_failed_fraction
    if not (too_many or whole):
        return None
    parts = [f"{len(failed)} of {n} subjects failed"]
    if too_many:
        parts.append(f"more than qc.max_failed_fraction = {max_failed_fraction:g}")
    if whole:
        listed = ", ".join(whole[:5]) + (f" and {len(whole) - 5} more" if len(whole) > 5 else "")
        parts.append(f"every subject of batch {listed} failed")
    common = commonest_errors(row["error"] for row in failures)
    if common:
        parts.append("commonest: " + "; ".join(f"{e} ({k}x)" for e, k in common))
    return "spinecensus: run failed: " + ", ".join(parts)


def failure_guard(
    tables_dir: str | os.PathLike[str],
    seg_dirs: Iterable[str | os.PathLike[str]],
    marker: str | os.PathLike[str],
    max_failed_fraction: float = DEFAULT_MAX_FAILED_FRACTION,
    whole_batch: bool = True,
) -> None:
    """Check the cohort tables in ``tables_dir``; raise :class:`CohortFailed` with the guard's
    line, else write ``marker`` (one line: subjects analysed and failed)."""
    import pyarrow.parquet as pq

    tdir = Path(tables_dir)
    subjects = pq.read_table(tdir / "subjects.parquet", columns=["subject", "processed"])
    names = subjects.column("subject").to_pylist()
    processed = dict(zip(names, subjects.column("processed").to_pylist(), strict=True))
    failures = pq.read_table(tdir / "failures.parquet").to_pylist()
    message = guard_message(
        processed, batch_members(seg_dirs), failures, max_failed_fraction, whole_batch
    )
    if message is not None:
        raise CohortFailed(f"{message}; tables written to {tdir}")
    n_failed = sum(not ok for ok in processed.values())
    with atomic_path(marker) as tmp:
        tmp.write_text(f"{len(processed)} subjects, {n_failed} failed: within the guard\n")
