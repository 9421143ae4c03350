"""Subjects into segmentation jobs: deterministic batches and the demo cohort's subject IDs.

Both run at workflow parse time, so the DAG (one ``segment`` job per batch, one ``analyse``
job per subject) is known before any image is read or generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def make_batches(subjects: Sequence[str], per_job: int) -> dict[str, list[str]]:
    """Deterministic batches: consecutive chunks of the *sorted* subject list.

    Names are ``b00000``, ``b00001``, ...  Deterministic, so the DAG is static (no
    checkpoint); note that inserting a subject shifts the chunks after it (those batches
    rerun).
    """
    per_job = max(1, int(per_job))
    ordered = sorted(subjects)
    return {
        f"b{i // per_job:05d}": ordered[i : i + per_job] for i in range(0, len(ordered), per_job)
    }


def batch_of(batches: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Inverse of :func:`make_batches`: subject -> batch name."""
    return {s: b for b, subs in batches.items() for s in subs}


def synthetic_subject_ids(n: int) -> list[str]:
    """Subject IDs of a synthetic cohort of ``n`` (as ``spinecensus.synthetic`` names them)."""
    try:
        from spinecensus import synthetic

        fn = getattr(synthetic, "subject_ids", None) or getattr(synthetic, "subject_id", None)
        if fn is not None and fn.__name__ == "subject_ids":
            return list(fn(n))
        if fn is not None:
            return [fn(i) for i in range(n)]
    except ImportError:
        pass
    return [f"S{i:04d}" for i in range(n)]
