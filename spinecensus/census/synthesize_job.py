"""The ``synthesize`` rule: the embedded synthetic demo cohort (``spinecensus synth`` layout).

Only used when the config's ``samples`` is ``""``; the subject IDs it writes must be the ones
the workflow planned at parse time (:func:`spinecensus.census.batches.synthetic_subject_ids`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spinecensus.census.batches import synthetic_subject_ids
from spinecensus.census.sheet import read_sheet
from spinecensus.io import atomic_path


def _synth_one(args: tuple) -> dict[str, Any]:
    """Generate and write synthetic subject ``index`` (a worker of :func:`synthesize`)."""
    from spinecensus import synthetic
    from spinecensus.synthetic.cohort import _cohort_draw, expert_status

    out, index, seed, lumbarization, sacralization, cfg = args
    anomaly, sub_seed = _cohort_draw(seed, index, lumbarization, sacralization)
    sub = synthetic.generate_subject(sub_seed, anomaly, cfg, subject=synthetic.subject_id(index))
    row = synthetic.write_subject(sub, out, cfg.storage_axcodes)
    row["expert_status"] = expert_status(seed, index, anomaly)
    for key in ("image", "semantic", "instances", "labels"):
        row[key] = Path(row[key]).relative_to(out).as_posix()
    return row


def _write_cohort_in_pool(
    out: Path,
    n: int,
    seed: int,
    lumbarization: float,
    sacralization: float,
    cfg: Any,
    workers: int,
) -> Path:
    """Subjects generated in a pool of ``workers`` processes, then ``out/samples.tsv``."""
    from concurrent.futures import ProcessPoolExecutor

    from spinecensus import synthetic

    jobs = [(out, i, seed, lumbarization, sacralization, cfg) for i in range(n)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_synth_one, jobs, chunksize=max(1, n // (4 * workers))))
    sheet = out / "samples.tsv"
    with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
        import csv

        wr = csv.DictWriter(
            fh, fieldnames=synthetic.SAMPLE_COLUMNS, delimiter="\t", lineterminator="\n"
        )
        wr.writeheader()
        wr.writerows(rows)
    return sheet


def synthesize(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    preset: str = "default",
    workers: int = 1,
) -> Path:
    """Generate the synthetic demo cohort (``spinecensus synth`` layout) and check that
    its subject IDs are the ones the workflow planned (:func:`synthetic_subject_ids`).

    With ``workers > 1`` subjects are generated in a process pool: subject ``i`` depends only
    on (seed, i, prevalences, config) (``synthetic.generate_cohort``), so the cohort is
    identical to ``synthetic.write_cohort``'s, only faster on several cores.
    """
    from spinecensus import synthetic

    cfg = synthetic.SyntheticConfig()
    if preset != "default":
        factory = getattr(synthetic.SyntheticConfig, preset, None)
        if factory is None:
            raise ValueError(f"spinecensus.synthetic has no {preset!r} preset")
        cfg = factory()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parallel_api = all(
        hasattr(synthetic, f) for f in ("generate_subject", "write_subject")
    ) and hasattr(synthetic, "SAMPLE_COLUMNS")
    if workers > 1 and n > 1 and parallel_api:
        sheet = _write_cohort_in_pool(out, n, seed, lumbarization, sacralization, cfg, workers)
    else:
        sheet = Path(
            synthetic.write_cohort(
                out,
                n=n,
                seed=seed,
                lumbarization=lumbarization,
                sacralization=sacralization,
                config=cfg,
            )
        )
    got = sorted(read_sheet(sheet)["subject"])
    want = sorted(synthetic_subject_ids(n))
    if got != want:
        raise RuntimeError(
            f"{sheet}: synthetic subject IDs {got[:3]}... differ from the planned {want[:3]}..."
        )
    return sheet
