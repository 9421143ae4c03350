"""Step 4 of the generated-label training (rule ``train_labeler``): the 50-channel union
labeler trained on small-FOV windows - the generated-label labeler on the auto-labelled
cohort's windows, the control on the expert subset's ground-truth windows."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.train.config import TrainConfig
from spinecensus.train.crops import crops_provenance, iter_crops
from spinecensus.train.loop import train_network
from spinecensus.train.networks import model_spec, save_trained
from spinecensus.train.slice_bank import to_bank

log = logging.getLogger(__name__)


def train_labeler(
    config: dict[str, Any] | None,
    crops: str | os.PathLike[str],
    out: str | os.PathLike[str],
    name: str = "labeler",
) -> Path:
    """Step 4: train the 50-channel union labeler on the windows listed in ``crops``."""
    import torch

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    spec = model_spec(cfg, "labeling")
    t0 = time.perf_counter()
    with np.load(crops) as z:
        n = len(z["seed"])
    if n == 0:
        raise ValueError(
            f"{name}: {crops} lists no crops - no auto-labelled subject had a valid split "
            "(is the segmentation model trained long enough?)"
        )
    bank = to_bank(iter_crops(cfg, crops), spec)
    log.info("%s: %d crops, %d slices", name, n, len(bank.index))
    lab_batch = int(cfg.lab_batch_size or cfg.batch_size)
    net, losses = train_network(
        spec, bank, cfg.lab_steps, lab_batch, cfg.lab_crop, cfg.seed + 1, cfg.lr,
        cfg.device, cfg.log_every, Path(out).with_suffix(".log.tsv"), name,
        max_seconds=cfg.lab_max_seconds,
    )  # fmt: skip
    spec.metrics = {
        "synthetic": True,
        "final_loss": float(np.mean(losses[-10:])),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    save_trained(net, spec, out, {
        "data": f"{Path(crops).name}: {n} small-FOV crops (synthetic)",
        "crops": crops_provenance(crops), "steps": len(losses),
        "max_seconds": cfg.lab_max_seconds,
        "batch_size": lab_batch, "crop": list(cfg.lab_crop), "lr": cfg.lr,
        "size": cfg.size,
    })  # fmt: skip
    return Path(out)
