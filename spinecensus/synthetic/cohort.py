"""Synthetic cohorts: anomaly draws, subject ids, and writing subjects and ``samples.tsv``.

Subject ``i`` of a cohort depends only on (cohort seed, i, prevalences, config), never on
the cohort size.  Written layout: ``<out>/<subject>/{image,semantic,instances}.nii.gz``,
``labels.json`` and ``<out>/samples.tsv`` (columns ``SAMPLE_COLUMNS``).  A seeded
:data:`VALIDATED_FRACTION` of the subjects is "expert-validated": their ``expert_status`` is
the truth (``anomaly``), empty for the others (:func:`expert_status`), so the demo's
prevalence table shows the misclassification-corrected estimate.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.io import atomic_path, write_json
from spinecensus.synthetic.config import DEFAULT_AXCODES, SyntheticConfig
from spinecensus.synthetic.generate import generate_subject
from spinecensus.synthetic.subject import SyntheticSubject

SAMPLE_COLUMNS = (
    "subject", "image", "semantic", "instances", "labels", "anomaly", "sex", "age",
    "expert_status",
)  # fmt: skip
#: expected fraction of subjects marked as validated (``expert_status`` filled)
VALIDATED_FRACTION = 0.2
#: added to the cohort seed for the validation draw, a stream of its own: the images and
#: the anomaly draws are those of a cohort without it
VALIDATION_SEED_OFFSET = 7_000_003


def sample_anomaly(rng: np.random.Generator, lumbarization: float, sacralization: float) -> str:
    """Draw ``"lumbarization"`` with probability ``lumbarization``, ``"sacralization"`` with
    ``sacralization``, else ``"normal"`` (one uniform draw)."""
    if lumbarization < 0 or sacralization < 0 or lumbarization + sacralization > 1:
        raise ValueError(
            f"anomaly probabilities must be >= 0 and sum to <= 1, got "
            f"lumbarization={lumbarization}, sacralization={sacralization}"
        )
    u = rng.random()
    if u < lumbarization:
        return "lumbarization"
    if u < lumbarization + sacralization:
        return "sacralization"
    return "normal"


def _cohort_draw(seed: int, index: int, lumbarization: float, sacralization: float):
    """(anomaly, subject seed) of subject ``index`` of cohort ``seed``, independent of n."""
    ss = np.random.SeedSequence([int(seed), int(index)])
    a_ss, s_ss = ss.spawn(2)
    anomaly = sample_anomaly(np.random.default_rng(a_ss), lumbarization, sacralization)
    sub_seed = int(s_ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
    return anomaly, sub_seed


def expert_status(seed: int, index: int, anomaly: str) -> str:
    """``expert_status`` of subject ``index``: its ``anomaly`` with probability
    :data:`VALIDATED_FRACTION` (a validated subject), else ``""``.

    Drawn from a generator seeded with (seed + :data:`VALIDATION_SEED_OFFSET`, index), so it
    depends only on (seed, i), like the subject, and leaves the images' streams untouched.
    """
    ss = np.random.SeedSequence([int(seed) + VALIDATION_SEED_OFFSET, int(index)])
    return anomaly if np.random.default_rng(ss).random() < VALIDATED_FRACTION else ""


def subject_id(index: int) -> str:
    """Cohort subject id: ``S0000``, ``S0001``, ... (wider when index >= 10000)."""
    return f"S{index:04d}"


def generate_cohort(
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    config: SyntheticConfig | None = None,
) -> Iterator[SyntheticSubject]:
    """Yield ``n`` subjects; subject ``i`` depends only on (seed, i, prevalences, config)."""
    for i in range(n):
        anomaly, sub_seed = _cohort_draw(seed, i, lumbarization, sacralization)
        yield generate_subject(sub_seed, anomaly, config, subject=subject_id(i))


def write_subject(
    subject: SyntheticSubject, out_dir: Path | str, axcodes: str = DEFAULT_AXCODES
) -> dict[str, object]:
    """Write ``<out_dir>/<subject>/{image,semantic,instances}.nii.gz`` and ``labels.json``
    atomically; return a row for the sample sheet (paths absolute)."""
    d = Path(out_dir) / subject.subject
    d.mkdir(parents=True, exist_ok=True)
    imgs = subject.to_nifti(axcodes)
    paths = {}
    for key, img in zip(("image", "semantic", "instances"), imgs, strict=True):
        p = d / f"{key}.nii.gz"
        with atomic_path(p) as tmp:
            nib.save(img, str(tmp))
        paths[key] = p
    write_json({str(k): v for k, v in sorted(subject.id_to_name.items())}, d / "labels.json")
    return {
        "subject": subject.subject,
        "image": paths["image"],
        "semantic": paths["semantic"],
        "instances": paths["instances"],
        "labels": d / "labels.json",
        "anomaly": subject.anomaly,
        "sex": subject.sex,
        "age": subject.age,
    }


def write_cohort(
    out_dir: Path | str,
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    config: SyntheticConfig | None = None,
) -> Path:
    """Write a cohort and ``out_dir/samples.tsv``; return the sheet's path.

    Sheet columns: subject, image, semantic, instances, labels (paths relative to the
    sheet), anomaly, sex, age, expert_status (:func:`expert_status`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SyntheticConfig()
    rows = []
    for i, sub in enumerate(generate_cohort(n, seed, lumbarization, sacralization, cfg)):
        row = write_subject(sub, out, cfg.storage_axcodes)
        row["expert_status"] = expert_status(seed, i, sub.anomaly)
        for key in ("image", "semantic", "instances", "labels"):
            row[key] = Path(row[key]).relative_to(out).as_posix()  # type: ignore[arg-type]
        rows.append(row)
    sheet = out / "samples.tsv"
    with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS, delimiter="\t", lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    return sheet
