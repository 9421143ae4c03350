"""The ``synthesize`` rule: the embedded synthetic demo cohort (``spinecensus synth`` layout).

Only used when the config's ``samples`` is ``""``; the subject IDs it writes must be the ones
the workflow planned at parse time (:func:`spinecensus.census.batches.synthetic_subject_ids`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spinecensus.census.batches import synthetic_subject_ids
from spinecensus.census.sheet import read_sheet


def _synth_one(args: tuple) -> dict[str, Any]:
    """Generate and write synthetic subject ``index`` (a worker of :func:`synthesize`)."""
    from spinecensus.synthetic.cohort import cohort_subject, sheet_row

    out, index, seed, lumbarization, sacralization, cfg, rates = args
    sub = cohort_subject(seed, index, lumbarization, sacralization, cfg, rates)
    return sheet_row(sub, seed, index, out, cfg.storage_axcodes)


def _write_cohort_in_pool(
    out: Path,
    n: int,
    seed: int,
    lumbarization: float,
    sacralization: float,
    cfg: Any,
    workers: int,
    rates: Mapping[str, float] | None = None,
) -> Path:
    """Subjects generated in a pool of ``workers`` processes, then ``out/samples.tsv``."""
    from concurrent.futures import ProcessPoolExecutor

    from spinecensus.synthetic.cohort import write_sheet

    jobs = [(out, i, seed, lumbarization, sacralization, cfg, rates) for i in range(n)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_synth_one, jobs, chunksize=max(1, n // (4 * workers))))
    return write_sheet(rows, out)


def synthesize(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    preset: str = "default",
    workers: int = 1,
    variant_rates: Mapping[str, float] | None = None,
) -> Path:
    """Generate the synthetic demo cohort (``spinecensus synth`` layout) and check that
    its subject IDs are the ones the workflow planned (:func:`synthetic_subject_ids`).

    With ``workers > 1`` subjects are generated in a process pool: subject ``i`` depends only
    on (seed, i, prevalences, variant rates, config) (``synthetic.generate_cohort``), so the
    cohort is identical to ``synthetic.write_cohort``'s, only faster on several cores.
    ``variant_rates``: ``{name: rate}`` of :data:`spinecensus.synthetic.VARIANTS` (config
    ``synthetic.variants``; none by default, the demo cohort).
    """
    from spinecensus import synthetic
    from spinecensus.synthetic.variants import check_rates

    rates = check_rates(variant_rates)  # a bad name or rate fails before any subject
    cfg = synthetic.SyntheticConfig()
    if preset != "default":
        factory = getattr(synthetic.SyntheticConfig, preset, None)
        if factory is None:
            raise ValueError(f"spinecensus.synthetic has no {preset!r} preset")
        cfg = factory()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if workers > 1 and n > 1:
        sheet = _write_cohort_in_pool(
            out, n, seed, lumbarization, sacralization, cfg, workers, rates
        )
    else:
        sheet = Path(
            synthetic.write_cohort(
                out,
                n=n,
                seed=seed,
                lumbarization=lumbarization,
                sacralization=sacralization,
                config=cfg,
                variant_rates=rates,
            )
        )
    got = sorted(read_sheet(sheet)["subject"])
    want = sorted(synthetic_subject_ids(n))
    if got != want:
        raise RuntimeError(
            f"{sheet}: synthetic subject IDs {got[:3]}... differ from the planned {want[:3]}..."
        )
    return sheet
