"""Step 3 of the generated-label training (rules ``train_crops``, ``train_expert_crops``):
random small-FOV windows of V = v_min..v_max visible vertebrae, stored as seeds and SI rows
only; and reading them back as (image, union label map, spacing) volumes.

A window of a subject is the SI row range ``r0:r1`` of its canonical volume (axis 1,
superior -> inferior; ``spinecensus.io``), all sagittal slices and the full AP extent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.io import atomic_path
from spinecensus.train.config import TrainConfig
from spinecensus.train.subjects import EXPERT_OFFSET, anomaly_for, make_subject, subject_seed
from spinecensus.train.union_maps import instances_from_union, union_class_map

log = logging.getLogger(__name__)


def train_crops(
    config: dict[str, Any] | None,
    autolabels: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> Path:
    """Rule ``train_crops``: windows of the auto-labelled cohort, chosen on its automatic
    labels (:func:`make_crops`)."""
    return make_crops(config, autolabels, out)


def train_expert_crops(config: dict[str, Any] | None, out: str | os.PathLike[str]) -> Path:
    """Rule ``train_expert_crops``: windows of the expert subset with its ground truth, the
    control labeler's data (:func:`make_crops` with ``expert=True``)."""
    return make_crops(config, None, out, expert=True)


def make_crops(
    config: dict[str, Any] | None,
    autolabels: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    expert: bool = False,
) -> Path:
    """Step 3: random small-FOV windows (V = v_min..v_max vertebrae), as a small npz.

    ``expert=False``: the auto-labelled cohort (windows chosen on the automatic labels of
    ``autolabels``).  ``expert=True``: the expert subset with its ground truth (the control's
    data).  Only the windows are stored (``seed``, ``v``, ``r0``, ``r1``: SI rows
    ``r0:r1``) plus ``labels`` (the autolabels path or ``"ground_truth"``); images are
    regenerated from their seeds when training, which keeps the file tiny.
    """
    cfg = TrainConfig.from_dict(config)
    rng = np.random.default_rng([cfg.seed, 3, int(expert)])
    if expert:
        items, status = _expert_subjects(cfg)
    else:
        items, status = _autolabelled_subjects(autolabels)  # type: ignore[arg-type]
    rows: list[tuple[int, int, int, int]] = []
    for seed, union in items:
        rows += _subject_windows(cfg, seed, union, status.get(seed), rng)
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    source = "ground_truth" if expert else str(Path(autolabels).resolve())  # type: ignore[arg-type]
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, seed=arr[:, 0], v=arr[:, 1], r0=arr[:, 2], r1=arr[:, 3], labels=source)
    log.info("crops: %d from %d subjects (expert=%s)", len(rows), len(items), expert)
    return Path(out)


def _expert_subjects(cfg: TrainConfig) -> tuple[list[tuple[int, None]], dict[int, str]]:
    """The expert subset's seeds (labels: their ground truth, made later) and the anomaly
    each was generated with."""
    items = [(subject_seed(cfg, EXPERT_OFFSET, i), None) for i in range(cfg.n_expert)]
    return items, {seed: anomaly_for(cfg, seed) for seed, _ in items}


def _autolabelled_subjects(
    autolabels: str | os.PathLike[str],
) -> tuple[list[tuple[int, np.ndarray]], dict[int, str]]:
    """The kept cohort subjects of an autolabels file with their automatic union-class maps,
    and the transitional status their automatic labels give (from the ``.json`` summary)."""
    with np.load(autolabels) as z:
        items = [(int(key[4:]), z[key]) for key in z.files]
    status: dict[int, str] = {}
    summary = Path(autolabels).with_suffix(".json")
    if summary.exists():
        for row in json.loads(summary.read_text()).get("subjects", []):
            status[int(row["seed"])] = str(row.get("transitional_status", ""))
    return items, status


def _subject_windows(
    cfg: TrainConfig,
    seed: int,
    union: np.ndarray | None,
    status: str | None,
    rng: np.random.Generator,
) -> list[tuple[int, int, int, int]]:
    """The ``(seed, v, r0, r1)`` windows of one subject, chosen on ``union`` (its ground
    truth when None)."""
    sub = make_subject(cfg, seed)
    if union is None:
        union = union_class_map(sub.instances, sub.id_to_name)
    # transitional spines are rare (a few % of a cohort) but the labeler must learn their
    # lumbosacral names (L4-S1, L6): oversample them, chosen by the status the labels
    # themselves give (automatic labels for the cohort, never its ground truth)
    rare = status in ("lumbarization", "sacralization")
    n_crops = cfg.crops_per_subject * (int(cfg.anomaly_crop_factor) if rare else 1)
    rows = []
    for _ in range(n_crops):
        v = int(rng.integers(cfg.v_min, cfg.v_max + 1))
        r0, r1 = _crop_union(sub, union, v, rng).meta["crop_rows"]
        rows.append((seed, v, int(r0), int(r1)))
    return rows


def _crop_union(sub: Any, union: np.ndarray, v: int, rng: np.random.Generator) -> Any:
    """Crop ``sub`` to ``v`` vertebrae as seen by ``union`` (an automatic or ground-truth
    union-class map); the returned crop's ``semantic`` is the cropped union map."""
    from spinecensus import synthetic

    # crop_fov chooses the window from the subject's instances: hand it the instances of
    # the union map (never the ground truth for auto-labelled subjects) and carry the
    # label map through as "semantic" so both get exactly the same window
    inst, names = instances_from_union(union)
    carrier = dataclasses.replace(sub, semantic=union, instances=inst, id_to_name=names)
    return synthetic.crop_fov(carrier, v, rng)


def iter_crops(
    cfg: TrainConfig, crops: str | os.PathLike[str]
) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]:
    """(image, union label map, spacing) of every window in a :func:`make_crops` file."""
    with np.load(crops) as z:
        seeds, r0s, r1s = z["seed"], z["r0"], z["r1"]
        source = str(z["labels"])
    auto = None if source == "ground_truth" else np.load(source)
    try:
        for seed in dict.fromkeys(int(s) for s in seeds):
            sub = make_subject(cfg, seed)
            union = (
                union_class_map(sub.instances, sub.id_to_name)
                if auto is None
                else auto[f"lab_{seed}"]
            )
            for r0, r1 in zip(r0s[seeds == seed], r1s[seeds == seed], strict=True):
                yield sub.image[:, r0:r1], union[:, r0:r1], sub.spacing_mm
    finally:
        if auto is not None:
            auto.close()


def crops_provenance(crops: str | os.PathLike[str]) -> dict[str, Any]:
    """Where a :func:`make_crops` file's labels came from: ground truth (the expert subset)
    or an autolabels file, with the segmentation weights that produced it and how many
    subjects it kept (from the autolabels' ``.json`` summary, when present)."""
    with np.load(crops) as z:
        source = str(z["labels"])
        seeds = z["seed"]
        info: dict[str, Any] = {
            "n_crops": int(len(seeds)),
            "n_subjects": int(len(np.unique(seeds))),
            "subject_seeds": [int(seeds.min()), int(seeds.max())] if len(seeds) else [],
            "v_range": [int(z["v"].min()), int(z["v"].max())] if len(seeds) else [],
        }
    if source == "ground_truth":
        return {**info, "labels": "ground truth of the synthetic expert subset"}
    info["labels"] = "automatic: segmented, split and count-labelled from C2 (never ground truth)"
    summary = Path(source).with_suffix(".json")
    if summary.exists():
        js = json.loads(summary.read_text())
        info["autolabel"] = {
            k: js[k]
            for k in ("kept", "total", "segmentation_weights", "segmentation_sha256")
            if k in js
        }
    return info
