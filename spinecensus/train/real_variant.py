"""Training one model of the real-MRI study: a variant (``snakemake train_real``, rule
``train_real_variant``) or a cross-validation fold's model (rule ``train_real_fold``).

A run reads the patient-level split's training side (partial labels as loss codes,
``spinecensus.train.real_codes``), mixes in seeded synthetic subjects when the variant asks for
them, starts from scratch or from the shipped synthetic weights, trains with the partial-label
loop (``spinecensus.train.real_train_loop``) and writes weights + a sidecar that states
exactly which data trained them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.segment.spec import ModelSpec
from spinecensus.train.real_augment import AugmentConfig
from spinecensus.train.real_batches import BatchConfig
from spinecensus.train.real_codes import full_codes, target_codes
from spinecensus.train.real_data import LoadedSample
from spinecensus.train.real_run_config import (
    SYNTH_TRAIN_OFFSET,
    VARIANTS,
    RealRunConfig,
    base_spec,
    load_real_split,
    synthetic_appearance,
    synthetic_subject,
)
from spinecensus.train.real_train_loop import TrainConfig, train_partial
from spinecensus.train.real_volumes import TrainVolume, prepare_volume

log = logging.getLogger(__name__)


def train_real_variant(
    config: dict[str, Any] | None, variant: str, out: str | os.PathLike[str]
) -> Path:
    """Train one study variant (:data:`~spinecensus.train.real_run_config.VARIANTS`) and
    write ``out`` (.pt + .json sidecar).

    The sidecar's ``training`` records exactly which data trained it: the real subjects
    (dataset_subject keys), the synthetic seeds, the initial weights and their sha256.
    """
    import torch

    from spinecensus.segment.weights import save_weights

    cfg = RealRunConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    v = VARIANTS[variant]
    spec = base_spec(cfg)
    t0 = time.perf_counter()
    train, val = load_real_split(cfg)
    real = _real_volumes(train, spec, cfg)
    seeds = [cfg.seed * 1_000_000 + SYNTH_TRAIN_OFFSET + i for i in range(cfg.n_synthetic)]
    synth = _synthetic_volumes(cfg, seeds, spec) if v["real_fraction"] < 1.0 else []
    net, init_info = _initial_network(cfg, v["init"], spec)
    lr = cfg.finetune_lr if v["init"] == "pretrained" else cfg.lr
    tcfg = _train_config(cfg, v["real_fraction"], lr)
    hist = train_partial(net, spec, real, synth, tcfg, cfg.device, log=log.info)
    spec.training = _training_record(
        cfg, variant, init_info, train, val, seeds if synth else [], tcfg, hist, t0
    )
    out = Path(out)
    save_weights(net, spec, out)
    log.info("%s done in %.0f s -> %s", variant, time.perf_counter() - t0, out)
    return out


def train_real_fold(
    config: dict[str, Any] | None, fold: int, variant: str, out: str | os.PathLike[str]
) -> Path:
    """The cross-validation model of ``fold`` (``snakemake train_real_cv``): the
    ``variant``'s recipe trained on every patient group outside that fold
    (:func:`train_real_variant` with ``fold`` set)."""
    return train_real_variant({**(config or {}), "fold": int(fold)}, variant, out)


def _real_volumes(
    train: list[LoadedSample], spec: ModelSpec, cfg: RealRunConfig
) -> list[TrainVolume]:
    """The training side's scans with the run's loss codes, on the network grid."""
    codes = {
        "fill_between": cfg.fill_between_levels,
        "disc_fill_margin_mm": cfg.disc_fill_margin_mm,
        "end_face_mm": cfg.end_face_mm,
        "end_body_mm": cfg.end_body_mm,
    }
    return [
        prepare_volume(
            s.scan.data,
            target_codes(s, **codes),
            s.spacing_mm,
            spec,
            s.meta.key,
            dataset=s.meta.dataset,
        )
        for s in train
    ]


def _synthetic_volumes(cfg: RealRunConfig, seeds: list[int], spec: ModelSpec) -> list[TrainVolume]:
    """The seeded synthetic subjects mixed in, fully labelled, on the network grid."""
    synth: list[TrainVolume] = []
    for i, sd in enumerate(seeds):
        look = synthetic_appearance(cfg, i)
        sub = synthetic_subject(cfg, sd, look)
        synth.append(
            prepare_volume(
                sub.image, full_codes(sub.semantic), sub.spacing_mm, spec,
                f"synthetic_{sd}_{look}", "synthetic",
            )
        )  # fmt: skip
    return synth


def _initial_network(cfg: RealRunConfig, init: str, spec: ModelSpec) -> tuple[Any, dict[str, Any]]:
    """The network a variant starts from (``init``: ``"pretrained"`` = the run's pretrained
    weights, else random weights seeded by ``cfg.seed``) and the record of that start."""
    import torch

    from spinecensus.segment.network import build_network
    from spinecensus.segment.weights import load_network, sha256_file

    init_info: dict[str, Any] = {"init": init}
    if init == "pretrained":
        net, init_spec = load_network(cfg.pretrained_path())
        init_info |= {
            "init_weights": cfg.pretrained_path().name,
            "init_sha256": sha256_file(cfg.pretrained_path()),
        }
        # the start's own training record, so that a chain of fine-tunes still says exactly
        # which data trained the result
        if init_spec.training:
            init_info["init_training"] = init_spec.training
        return net, init_info
    torch.manual_seed(cfg.seed)
    return build_network(spec), init_info


def _train_config(cfg: RealRunConfig, variant_real_fraction: float, lr: float) -> TrainConfig:
    """The loop's config: the run's schedule and batches, the variant's share of real
    volumes (``cfg.real_fraction`` overrides it for the mixed variants)."""
    real_fraction = variant_real_fraction
    if cfg.real_fraction is not None and 0.0 < real_fraction < 1.0:
        real_fraction = float(cfg.real_fraction)
    bdict = {**cfg.batch, "real_fraction": real_fraction}
    return TrainConfig(
        steps=cfg.steps, lr=lr, seed=cfg.seed, log_every=cfg.log_every,
        max_seconds=cfg.max_seconds,
        batch=BatchConfig(**bdict), augment=AugmentConfig.from_dict(cfg.augment),
    )  # fmt: skip


def _training_record(
    cfg: RealRunConfig,
    variant: str,
    init_info: dict[str, Any],
    train: list[LoadedSample],
    val: list[LoadedSample],
    synthetic_seeds: list[int],
    tcfg: TrainConfig,
    hist: list[dict[str, float]],
    t0: float,
) -> dict[str, Any]:
    """The sidecar's ``training``: the start, the real subjects on each side, the
    synthetic seeds (empty when none were mixed in), the loss codes' recipe, the schedule."""
    return {
        **init_info,
        "variant": variant,
        "data": "public annotated real MRI (../shared/data/real, partial labels: VB1/VB2/VB3 "
        "vertebral bodies, IVD discs; partial-label loss)"
        + (" mixed with synthetic subjects (spinecensus.synthetic)" if synthetic_seeds else ""),
        "real_train_subjects": [s.meta.key for s in train],
        "real_validation_subjects": [s.meta.key for s in val],
        "fold": cfg.fold,
        "synthetic_seeds": synthetic_seeds,
        "synthetic_preset": cfg.synthetic_preset if synthetic_seeds else None,
        "synthetic_appearances": list(cfg.synthetic_appearances) if synthetic_seeds else None,
        "real_fraction": tcfg.batch.real_fraction,
        "fill_between_levels": cfg.fill_between_levels,
        "disc_fill_margin_mm": cfg.disc_fill_margin_mm,
        "end_face_mm": cfg.end_face_mm,
        "end_body_mm": cfg.end_body_mm,
        "steps": len(hist),
        "max_seconds": cfg.max_seconds,
        "lr": tcfg.lr,
        "batch": asdict(tcfg.batch),
        "augment": asdict(tcfg.augment),
        "seed": cfg.seed,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": float(np.mean([h["loss"] for h in hist[-20:]])),
    }


__all__ = ["train_real_fold", "train_real_variant"]
