"""Step 5 of the generated-label training (rule ``train_evaluate``): both labelers judged on
held-out synthetic crops at V = 5, 8, 10, 15 - subset accuracy (every vertebra and disc of
the crop named correctly) and mean Dice - and the thesis-shaped Markdown table."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.io import atomic_path
from spinecensus.naming.sequence import consistent_sequence
from spinecensus.naming.vote import vote_log_probs
from spinecensus.segment.predict import SegmentationModel
from spinecensus.segment.weights import load_model
from spinecensus.train.config import TrainConfig
from spinecensus.train.metrics import dice_per_class
from spinecensus.train.networks import inference_amp
from spinecensus.train.subjects import EVAL_OFFSET, make_subject, subject_seed
from spinecensus.train.union_maps import union_class_map

log = logging.getLogger(__name__)

#: visible vertebrae per evaluation crop (the thesis's table columns)
EVAL_V = (5, 8, 10, 15)
AGGREGATIONS = ("vote", "mean")
THESIS_SUBSET_ACCURACY = {5: 85.5, 8: 90.9, 10: 92.6, 15: 94.4}


def train_evaluate(
    config: dict[str, Any] | None,
    labeler: str | os.PathLike[str],
    control: str | os.PathLike[str],
    out_parquet: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
) -> Path:
    """Rule ``train_evaluate``: the generated-label ``labeler`` against the ``control``
    (:func:`evaluate_labelers`)."""
    models = {"generated": labeler, "control": control}
    return evaluate_labelers(config, models, out_parquet, out_markdown)


def label_crop(
    model: SegmentationModel, crop: Any, aggregation: str = "vote"
) -> tuple[list[str], np.ndarray]:
    """Names for the ground-truth instances of ``crop`` from the labeler + consistent DP, and
    the labeler's per-voxel union-class prediction (arg-max incl. background, for Dice).

    ``aggregation``: ``"vote"`` = per-voxel majority inside each instance
    (:func:`spinecensus.naming.vote.vote_log_probs`, what the cohort workflow does) or
    ``"mean"`` = mean log-softmax per instance (``SegmentationModel.instance_log_probs``).
    """
    names, pred = label_crop_all(model, crop)
    return names[aggregation], pred


def label_crop_all(model: SegmentationModel, crop: Any) -> tuple[dict[str, list[str]], np.ndarray]:
    """:func:`label_crop` for every aggregation at once: ``({aggregation: names}, pred)``."""
    inst = np.asarray(crop.instances)
    ids = sorted(int(i) for i in crop.id_to_name)
    kinds = [labels.kind(crop.id_to_name[i]) for i in ids]
    n = max(ids)
    mean = model.instance_log_probs(crop.image, crop.spacing_mm, inst, n)
    votes = model.predict_structure_classes(crop.image, crop.spacing_mm, inst > 0)
    pred = model.predict(crop.image, crop.spacing_mm)
    out = {}
    for agg, logp in (("mean", mean), ("vote", vote_log_probs(inst, votes, n))):
        names, _ = consistent_sequence(logp[np.asarray(ids) - 1], kinds)
        out[agg] = list(names)
    return out, pred


def evaluate_labelers(
    config: dict[str, Any] | None,
    models: dict[str, str | os.PathLike[str]],
    out_parquet: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
) -> Path:
    """Step 5: subset accuracy and Dice at V = 5, 8, 10, 15 on held-out synthetic crops.

    Names are predicted for the crop's ground-truth instances (isolating the labeler from
    segmentation errors); subset accuracy = every vertebra and disc in the crop named
    correctly.  Dice = mean over the structure classes present in the crop.  One row per
    crop, model and ``aggregation`` (``vote``: per-voxel majority, the cohort workflow's
    method; ``mean``: mean log-softmax).
    """
    import pandas as pd
    import torch

    from spinecensus import synthetic

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    loaded = {
        k: load_model(p, device=cfg.device, threads=cfg.threads, amp=inference_amp(cfg))
        for k, p in models.items()
    }
    rows = []
    for v in EVAL_V:
        rng = np.random.default_rng([cfg.seed, 5, v])
        for i in range(cfg.n_eval_per_v):
            seed = subject_seed(cfg, EVAL_OFFSET, v * 1000 + i)
            crop = synthetic.crop_fov(make_subject(cfg, seed), v, rng)
            rows += _score_crop(crop, loaded, v, seed)
        log.info("evaluated V=%d", v)
    df = pd.DataFrame(rows)
    with atomic_path(out_parquet) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(eval_markdown(df, cfg))
    return Path(out_parquet)


def _score_crop(
    crop: Any, models: dict[str, SegmentationModel], v: int, seed: int
) -> list[dict[str, Any]]:
    """One row per model and aggregation for one held-out crop of ``v`` vertebrae."""
    truth_names = [crop.id_to_name[i] for i in sorted(crop.id_to_name)]
    truth_map = union_class_map(crop.instances, crop.id_to_name)
    present = sorted(int(c) for c in np.unique(truth_map) if c > 0)
    rows = []
    for mname, model in models.items():
        by_agg, pred = label_crop_all(model, crop)
        d = dice_per_class(pred, truth_map, present)
        for agg, names in by_agg.items():
            rows.append({
                "model": mname, "aggregation": agg, "V": v, "subject_seed": seed,
                "n_structures": len(truth_names),
                "subset_correct": list(names) == truth_names,
                "structure_accuracy": float(np.mean([
                    a == b for a, b in zip(names, truth_names, strict=False)
                ])) if names else 0.0,
                "dice": float(np.nanmean(list(d.values()))) if d else math.nan,
            })  # fmt: skip
    return rows


def eval_markdown(df: Any, cfg: TrainConfig) -> str:
    """Markdown table shaped like the thesis's (subset accuracy % per V), marked SYNTHETIC."""
    if "aggregation" not in df:
        df = df.assign(aggregation="mean")
    df = df.assign(model=df["model"] + " [" + df["aggregation"] + "]")
    agg = (
        df.groupby(["model", "V"])
        .agg(subset=("subset_correct", "mean"), dice=("dice", "mean"), n=("subset_correct", "size"))
        .reset_index()
    )
    models = list(dict.fromkeys(df["model"]))
    lines = [
        "## Small-FOV labeling — SYNTHETIC data (not comparable to real MRI)",
        "",
        f"Config size `{cfg.size}`, seed {cfg.seed}; held-out synthetic crops, "
        f"{cfg.n_eval_per_v} per V; names for the ground-truth instances from the labeler "
        "+ the consistent-sequence DP; per-instance scores by [vote] = per-voxel majority "
        "(the cohort workflow's method) or [mean] = mean log-softmax.",
        "",
        "| model | " + " | ".join(f"V={v} subset acc. / Dice" for v in EVAL_V) + " |",
        "|---|" + "---|" * len(EVAL_V),
        "| thesis (real MRI, generated data) | "
        + " | ".join(f"{THESIS_SUBSET_ACCURACY[v]:.1f} % / -" for v in EVAL_V)
        + " |",
    ]
    for m in models:
        cells = []
        for v in EVAL_V:
            r = agg[(agg.model == m) & (agg.V == v)]
            if len(r):
                cells.append(f"{100 * r.subset.iloc[0]:.1f} % / {r.dice.iloc[0]:.3f}")
            else:
                cells.append("-")
        lines.append(f"| {m} (synthetic) | " + " | ".join(cells) + " |")
    lines += ["", f"n per cell: {int(agg.n.min()) if len(agg) else 0} crops.", ""]
    return "\n".join(lines)
