"""Step 2 of the generated-label training (rule ``train_autolabel``): segment the larger
cohort with the step-1 model, split into instances, name them by counting from C2 and keep
the subjects whose split is valid.  The cohort's ground-truth masks and names are never read.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.io import atomic_path, write_json
from spinecensus.naming.counting import count_labels
from spinecensus.segment.weights import load_model
from spinecensus.train.config import TrainConfig
from spinecensus.train.networks import inference_amp
from spinecensus.train.subjects import COHORT_OFFSET, make_subject, subject_seed
from spinecensus.train.union_maps import union_class_map

log = logging.getLogger(__name__)


def train_autolabel(
    config: dict[str, Any] | None,
    segmentation_weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> Path:
    """Step 2: segment the cohort, split, count-label from C2, keep valid splits.

    Writes ``out`` (npz): per kept subject its seed and the automatic union-class label map
    (``lab_<seed>``, uint8); plus ``out``.json with per-subject validity.  The cohort's
    ground truth is never read (the image is regenerated from its seed).
    """
    import torch

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    model = load_model(
        segmentation_weights, device=cfg.device, threads=cfg.threads, amp=inference_amp(cfg)
    )
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for i in range(cfg.n_cohort):
        seed = subject_seed(cfg, COHORT_OFFSET, i)
        row, union = _autolabel_subject(model, make_subject(cfg, seed), seed)
        if union is not None:
            arrays[f"lab_{seed}"] = union
        rows.append(row)
        log.info("autolabel %d/%d seed %d valid=%s", i + 1, cfg.n_cohort, seed, row["valid"])
    _write_autolabels(arrays, rows, segmentation_weights, out)
    return Path(out)


def _autolabel_subject(model: Any, sub: Any, seed: int) -> tuple[dict[str, Any], Any]:
    """One cohort subject segmented, split and count-labelled from C2: its summary row and
    its automatic union-class map (None when the subject is dropped)."""
    from spinecensus.split import instances as split

    sem = model.predict_semantic(sub.image, sub.spacing_mm)
    res = split.split_instances(sem, sub.spacing_mm)
    row: dict[str, Any] = {"seed": seed, "valid": bool(res.valid)}
    if not res.valid:
        row["invalid_reason"] = str(res.invalid_reason)
        return row, None
    lab = count_labels(res)
    names = {int(k): str(v) for k, v in lab.id_to_name.items()}
    row["transitional_status"] = str(lab.transitional_status)
    row["n_structures"] = len(names)
    merged = [f for f in lab.qc_flags if f.startswith("missed_disc_suspected")]
    if merged:
        # a merged vertebra shifts every name below it: such labels would teach the
        # labeler wrong names, so the subject is dropped like an invalid split
        row["valid"] = False
        row["invalid_reason"] = merged[0]
        return row, None
    if not names:
        row["valid"] = False
        return row, None
    return row, union_class_map(res.instances, names)


def _write_autolabels(
    arrays: dict[str, np.ndarray],
    rows: list[dict[str, Any]],
    segmentation_weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> None:
    """The kept label maps to ``out`` (npz) and the per-subject summary, with the
    segmentation weights that produced them, to ``out``.json."""
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    kept = sum(r["valid"] for r in rows)
    from spinecensus.segment.weights import sha256_file

    write_json(
        {
            "subjects": rows,
            "kept": kept,
            "total": len(rows),
            "segmentation_weights": Path(segmentation_weights).name,
            "segmentation_sha256": sha256_file(segmentation_weights),
        },
        Path(out).with_suffix(".json"),
    )
    log.info("autolabel: kept %d of %d subjects", kept, len(rows))
