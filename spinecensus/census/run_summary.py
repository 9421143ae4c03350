"""The end-of-run summary that the Snakefile prints (``onsuccess`` and ``onerror``), read
from the cohort tables."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from spinecensus.census.failure_guard import commonest_errors


def run_summary(
    tables_dir: str | os.PathLike[str],
    max_listed: int = 20,
    guard_log: str | os.PathLike[str] | None = None,
) -> str | None:
    """Subjects analysed / failed, failures by rule, the three commonest error messages and
    each failure (one line each, at most ``max_listed``); then the failure guard's line when
    ``guard_log`` holds one.  ``None`` when the tables do not exist (a run that stopped
    before the aggregate)."""
    import pyarrow.parquet as pq

    tdir = Path(tables_dir)
    if not (tdir / "subjects.parquet").exists() or not (tdir / "failures.parquet").exists():
        return None
    n_subjects = pq.read_metadata(tdir / "subjects.parquet").num_rows
    fails = pq.read_table(tdir / "failures.parquet").to_pylist()
    lines = [
        f"spinecensus: {n_subjects} subjects, {n_subjects - len(fails)} analysed, "
        f"{len(fails)} failed" + (f" (listed in {tdir / 'failures.parquet'}):" if fails else ".")
    ]
    if fails:
        by_rule = Counter(row["rule"] for row in fails)
        lines.append("  failed by rule: " + ", ".join(f"{r} {k}" for r, k in by_rule.items()))
        for error, k in commonest_errors(row["error"] for row in fails):
            lines.append(f"  {k}x {error}")
    for row in fails[:max_listed]:
        lines.append(f"  {row['subject']} [{row['rule']}]: {row['error']}")
    if len(fails) > max_listed:
        lines.append(f"  ... and {len(fails) - max_listed} more")
    lines.append(f"Tables: {tdir}")
    guard = Path(guard_log) if guard_log else None
    if guard is not None and guard.exists():
        said = [ln for ln in guard.read_text().splitlines() if ln.startswith("spinecensus: run")]
        lines.extend(said[-1:])
    return "\n".join(lines)
