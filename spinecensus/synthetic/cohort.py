"""Synthetic cohorts: anomaly and variant draws, subject ids, writing subjects and
``samples.tsv``.

Subject ``i`` of a cohort depends only on (cohort seed, i, prevalences, variant rates,
config), never on the cohort size.  Written layout:
``<out>/<subject>/{image,semantic,instances}.nii.gz``, ``labels.json``, ``truth.json``
(the drawn heights, Genant grades, lordosis and kyphosis of what is in view:
:mod:`spinecensus.synthetic.truth`) and ``<out>/samples.tsv`` (columns
``SAMPLE_COLUMNS``).

Truth columns of the sheet: ``anomaly`` (the generator's lumbosacral anomaly: L6, or L5
fused into the sacrum; carried as ``true_status``), ``true_presacral_count`` (C1..L-last),
``true_thoracic_count``, ``variants`` (comma list of
:data:`spinecensus.synthetic.variants.VARIANTS`, empty for none) and ``expected_status``
(what a correct census reports, :func:`spinecensus.synthetic.variants.expected_status`).
The counts carry a ``true_`` prefix because ``presacral_count`` is an output column of
``subjects.parquet``.  A seeded :data:`VALIDATED_FRACTION` of the subjects is
"expert-validated": their ``expert_status`` is the count-defined truth (``expected_status``
where it is a definite status; an expert cannot read a status off a scan without C2 or the
sacrum either), empty for the others (:func:`expert_status`), so the demo's prevalence
table shows the misclassification-corrected estimate.  Without variants ``expected_status``
equals ``anomaly``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from spinecensus.io import atomic_path, write_json
from spinecensus.synthetic.config import DEFAULT_AXCODES, SyntheticConfig
from spinecensus.synthetic.generate import generate_subject
from spinecensus.synthetic.subject import SyntheticSubject
from spinecensus.synthetic.truth import truth_json
from spinecensus.synthetic.variants import (
    draw_variants,
    expected_status,
    presacral_count,
    thoracic_count,
)

SAMPLE_COLUMNS = (
    "subject", "image", "semantic", "instances", "labels", "anomaly", "sex", "age",
    "true_presacral_count", "true_thoracic_count", "variants", "expected_status",
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


def expert_status(seed: int, index: int, status: str) -> str:
    """``expert_status`` of subject ``index``: its true ``status`` with probability
    :data:`VALIDATED_FRACTION` (a validated subject), else ``""``.

    Drawn from a generator seeded with (seed + :data:`VALIDATION_SEED_OFFSET`, index), so it
    depends only on (seed, i), like the subject, and leaves the images' streams untouched.
    """
    ss = np.random.SeedSequence([int(seed) + VALIDATION_SEED_OFFSET, int(index)])
    return status if np.random.default_rng(ss).random() < VALIDATED_FRACTION else ""


def subject_id(index: int) -> str:
    """Cohort subject id: ``S0000``, ``S0001``, ... (wider when index >= 10000)."""
    return f"S{index:04d}"


def generate_cohort(
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    config: SyntheticConfig | None = None,
    variant_rates: Mapping[str, float] | None = None,
) -> Iterator[SyntheticSubject]:
    """Yield ``n`` subjects; subject ``i`` depends only on (seed, i, prevalences, variant
    rates, config)."""
    for i in range(n):
        yield cohort_subject(seed, i, lumbarization, sacralization, config, variant_rates)


def cohort_subject(
    seed: int,
    index: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    config: SyntheticConfig | None = None,
    variant_rates: Mapping[str, float] | None = None,
) -> SyntheticSubject:
    """Subject ``index`` of cohort ``seed``: anomaly, seed and variants drawn from streams
    of their own (:func:`spinecensus.synthetic.variants.draw_variants`)."""
    anomaly, sub_seed = _cohort_draw(seed, index, lumbarization, sacralization)
    variants = draw_variants(seed, index, variant_rates)
    return generate_subject(sub_seed, anomaly, config, subject_id(index), variants)


def truth_columns(subject: SyntheticSubject) -> dict[str, object]:
    """The sheet's truth columns of ``subject`` beside ``anomaly`` (see the module doc)."""
    return {
        "true_presacral_count": presacral_count(subject.anomaly, subject.variants),
        "true_thoracic_count": thoracic_count(subject.variants),
        "variants": ",".join(subject.variants),
        "expected_status": expected_status(subject.anomaly, subject.variants),
    }


def sheet_row(
    subject: SyntheticSubject,
    seed: int,
    index: int,
    out: Path,
    axcodes: str = DEFAULT_AXCODES,
) -> dict[str, object]:
    """Write subject ``index`` of cohort ``seed`` under ``out``; its ``samples.tsv`` row
    (paths relative to ``out``, truth columns, ``expert_status``)."""
    row = write_subject(subject, out, axcodes)
    row.update(truth_columns(subject))
    status = str(row["expected_status"])
    row["expert_status"] = expert_status(seed, index, "" if status == "undetermined" else status)
    for key in ("image", "semantic", "instances", "labels"):
        row[key] = Path(row[key]).relative_to(out).as_posix()  # type: ignore[arg-type]
    return row


def write_subject(
    subject: SyntheticSubject, out_dir: Path | str, axcodes: str = DEFAULT_AXCODES
) -> dict[str, object]:
    """Write ``<out_dir>/<subject>/{image,semantic,instances}.nii.gz``, ``labels.json`` and
    (generated subjects) ``truth.json``
    (:func:`spinecensus.synthetic.truth.truth_json`) atomically; return a row for the
    sample sheet (paths absolute)."""
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
    if subject.truth is not None:  # planted heights, grades and angles of what is in view
        write_json(truth_json(subject.instances, subject.id_to_name, subject.truth),
                   d / "truth.json")  # fmt: skip
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
    variant_rates: Mapping[str, float] | None = None,
) -> Path:
    """Write a cohort and ``out_dir/samples.tsv``; return the sheet's path.

    Sheet columns (:data:`SAMPLE_COLUMNS`): subject, image, semantic, instances, labels
    (paths relative to the sheet), anomaly, sex, age, the truth columns
    (:func:`truth_columns`) and expert_status (:func:`expert_status`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SyntheticConfig()
    subjects = generate_cohort(n, seed, lumbarization, sacralization, cfg, variant_rates)
    rows = [sheet_row(sub, seed, i, out, cfg.storage_axcodes) for i, sub in enumerate(subjects)]
    return write_sheet(rows, out)


def write_sheet(rows: Sequence[Mapping[str, object]], out: Path) -> Path:
    """``out/samples.tsv`` (columns :data:`SAMPLE_COLUMNS`) from the rows, atomically."""
    sheet = out / "samples.tsv"
    with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS, delimiter="\t", lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    return sheet
