"""Step 1 of the generated-label training (rule ``train_segmentation``): the 3-class U-Net
(background / vertebral body / disc) trained on the small expert subset's ground truth."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.segment.predict import SegmentationModel
from spinecensus.segment.spec import ModelSpec
from spinecensus.train.config import TrainConfig
from spinecensus.train.loop import train_network
from spinecensus.train.metrics import dice_per_class
from spinecensus.train.networks import inference_amp, model_spec, save_trained
from spinecensus.train.slice_bank import SliceBank, to_bank
from spinecensus.train.subjects import EVAL_OFFSET, EXPERT_OFFSET, make_subject, subject_seed

log = logging.getLogger(__name__)


def train_segmentation(config: dict[str, Any] | None, out: str | os.PathLike[str]) -> Path:
    """Step 1: train the 3-class U-Net on the expert subset (synthetic ground truth)."""
    import torch

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    spec = model_spec(cfg, "segmentation")
    t0 = time.perf_counter()
    seeds, bank = _expert_bank(cfg, spec)
    log.info("segmentation: %d expert subjects, %d slices", len(seeds), len(bank.index))
    net, losses = train_network(
        spec, bank, cfg.seg_steps, cfg.batch_size, cfg.seg_crop, cfg.seed, cfg.lr,
        cfg.device, cfg.log_every, Path(out).with_suffix(".log.tsv"), "segmentation",
        max_seconds=cfg.seg_max_seconds,
    )  # fmt: skip
    metrics = {
        "synthetic": True,
        **_held_out_dice(cfg, net, spec),
        "final_loss": float(np.mean(losses[-10:])),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    spec.metrics = metrics
    save_trained(net, spec, out, {
        "data": "synthetic expert subset (spinecensus.synthetic ground truth)",
        "n_subjects": len(seeds), "seeds": [seeds[0], seeds[-1]], "steps": len(losses),
        "max_seconds": cfg.seg_max_seconds,
        "batch_size": cfg.batch_size, "crop": list(cfg.seg_crop), "lr": cfg.lr,
        "synthetic_preset": cfg.synthetic_preset, "size": cfg.size,
    })  # fmt: skip
    log.info("segmentation done: %s", metrics)
    return Path(out)


def _expert_bank(cfg: TrainConfig, spec: ModelSpec) -> tuple[list[int], SliceBank]:
    """The expert subset's seeds and its (image, semantic mask) slices on the network grid."""
    seeds = [subject_seed(cfg, EXPERT_OFFSET, i) for i in range(cfg.n_expert)]
    vols = []
    for s in seeds:
        sub = make_subject(cfg, s)
        vols.append((sub.image, sub.semantic, sub.spacing_mm))
    return seeds, to_bank(vols, spec)


def _held_out_dice(cfg: TrainConfig, net: Any, spec: ModelSpec) -> dict[str, Any]:
    """Mean vertebral-body and disc Dice on 3 fresh subjects (never used for training), in
    the precision inference will use here, plus fp32 and bf16 apart and their difference
    (``precision_dice``: what ``segmentation.precision: auto`` trades on bf16 hardware)."""
    subjects = [make_subject(cfg, subject_seed(cfg, EVAL_OFFSET + 50_000, i)) for i in range(3)]
    by_precision = {}
    for amp in ("fp32", "bf16"):
        model = SegmentationModel.from_network(net, spec, amp=amp)
        dices = [
            dice_per_class(model.predict(s.image, s.spacing_mm), np.asarray(s.semantic), [1, 2])
            for s in subjects
        ]
        by_precision[amp] = {
            "dice_vertebra": float(np.nanmean([d[1] for d in dices])),
            "dice_disc": float(np.nanmean([d[2] for d in dices])),
        }
    used = by_precision["bf16" if inference_amp(cfg) == "bf16" else "fp32"]
    diff = {k: by_precision["bf16"][k] - by_precision["fp32"][k] for k in used}
    record = {"synthetic": True, "n_subjects": 3, **by_precision, "bf16_minus_fp32": diff}
    return {**used, "precision_dice": record}
