"""A tiny synthetic cohort of per-subject outputs (``summary.json``, ``structures.parquet``,
``qc.png``) for the review tests, written with the package's own functions.

Six subjects, whole spines named C2 ... S1:

====== ================ ============================ ================
subject pipeline status  QC flags                     true status
====== ================ ============================ ================
S0     normal                                         normal
S1     normal           count_model_disagree         lumbarization  (the one wrong call)
S2     undetermined     suspected_missed_disc        normal
S3     failed (segment)                               normal
S4     lumbarization                                  lumbarization
S5     sacralization    implausible_volume           sacralization
====== ================ ============================ ================

Flagged (the review page's default list): S1, S2, S3, S5.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from spinecensus.anatomy import labels
from spinecensus.census import tables

SUBJECTS = ("S0", "S1", "S2", "S3", "S4", "S5")
FLAGGED = ("S1", "S2", "S3", "S5")
PIPELINE = {
    "S0": ("normal", ""),
    "S1": ("normal", "count_model_disagree: labeler names L6"),
    "S2": ("undetermined", "suspected_missed_disc: gap of 41 mm below T11"),
    "S3": ("failed", ""),
    "S4": ("lumbarization", ""),
    "S5": ("sacralization", "implausible_volume: L3 1.9x its neighbours"),
}
TRUTH = {
    "S0": "normal",
    "S1": "lumbarization",
    "S2": "normal",
    "S3": "normal",
    "S4": "lumbarization",
    "S5": "sacralization",
}
SEX = {"S0": "F", "S1": "M", "S2": "F", "S3": "M", "S4": "F", "S5": "M"}


def _rows(status: str) -> list[dict]:
    """Structure rows of a whole spine of the status's variant (undetermined: normal)."""
    variant = status if status in labels.VARIANTS else "normal"
    return [
        {
            "label": name,
            "kind": labels.kind(name),
            "region": labels.region(name),
            "instance_id": i,
            "voxel_count": 100 + i,
            "volume_mm3": 100.0 + i,
            "confidence": 0.9,
        }
        for i, name in enumerate(labels.structures(variant), start=1)
    ]


def _qc_png(path: Path, subject: str, status: str) -> None:
    """A stand-in QC picture (grey column with a caption), 720 rows like the real one."""
    im = Image.new("RGB", (330, 720), (20, 20, 20))
    draw = ImageDraw.Draw(im)
    for k in range(24):
        draw.rectangle((150, 20 + 28 * k, 190, 40 + 28 * k), fill=(90 + 6 * k, 120, 160))
    draw.text((8, 4), f"{subject}: {status}", fill=(255, 255, 255))
    im.save(path)


def write_subjects(root: Path) -> Path:
    """Per-subject outputs under ``root/subjects`` (returned)."""
    base = root / "subjects"
    for s in SUBJECTS:
        d = base / s
        d.mkdir(parents=True)
        status, flags = PIPELINE[s]
        if status == "failed":
            summary = {"subject": s, "status": "failed", "rule": "segment", "error": "x: bad"}
            rows: list[dict] = []
        else:
            rows = _rows(status)
            names = [r["label"] for r in rows]
            summary = {
                "subject": s,
                "status": "ok",
                "transitional_status": status,
                "split_valid": True,
                "n_vertebrae": sum(labels.is_vertebra(n) for n in names),
                "n_discs": sum(labels.is_disc(n) for n in names),
                "lumbar_count": labels.lumbar_count(names),
                "first_visible_label": names[0],
                "last_visible_label": names[-1],
                "decided_by": "count",
                "qc_flags": [flags] if flags else [],
                "volumes_mm3": {r["label"]: r["volume_mm3"] for r in rows},
            }
        (d / "summary.json").write_text(json.dumps(summary))
        tables.write_subject_structures(s, rows, d / "structures.parquet")
        _qc_png(d / "qc.png", s, status)
    return base


def sample_sheet() -> pd.DataFrame:
    """The cohort's sample sheet: ``sex`` (a declared stratum) and the truth (``anomaly``)."""
    return pd.DataFrame(
        {
            "subject": list(SUBJECTS),
            "image": [f"{s}.nii.gz" for s in SUBJECTS],
            "sex": [SEX[s] for s in SUBJECTS],
            "anomaly": [TRUTH[s] for s in SUBJECTS],
        }
    )


def build_tables(root: Path, overrides: Path | None = None, config: dict | None = None) -> dict:
    """The cohort tables of :func:`write_subjects`'s cohort under ``root/tables``."""
    base = root / "subjects"
    if not base.exists():
        write_subjects(root)
    return tables.write_cohort_tables(
        [base / s / "summary.json" for s in SUBJECTS],
        [base / s / "structures.parquet" for s in SUBJECTS],
        root / "tables",
        sheet=sample_sheet(),
        config=config or {"prevalence": {"strata": ["sex"]}},
        overrides=overrides,
    )
