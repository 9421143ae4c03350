"""Fine-tuning the small-field-of-view labeler on real scans whose masks name their levels.

Why: on the real lumbar scans the sacrum rule (``sacrum.names_up_from_sacrum``) names
nothing where the segmentation cuts, splits or misses the sacrum (docs/real_mri.md, sixth
run), and the shipped labeler, trained on synthetic crops only, names real levels one to
three off.  The thesis's labeler learned the names from whole-spine scans counted from C2;
there are no real whole-spine scans here, but the VB2, VB3 and IVD masks *name* their levels
(T11-L5, L1-L5, L1-L2..L5-S1).  That is supervision for "which structure is this", exactly
what the labeler is asked, so the labeler can learn what the lumbosacral junction looks
like on real images even where the sacrum itself is poorly segmented.

The targets are partial (:func:`named_class_map`): a named body or disc carries its
union-schema class; every other voxel - unannotated discs of the body-only scans, the
sacrum, posterior elements, background - is :data:`IGNORE` (no loss).  This matches how the
labeler is used: the segmentation decides *where* the spine is, the labeler only *which*
structure a spine voxel belongs to (``SegmentationModel.predict_structure_classes`` ignores
the background channel).  Synthetic crops with full automatic labels (the shipped
labeler's own training windows) are mixed in so that cervical and thoracic names and the
transitional variants are not forgotten.  VB1 scans (levels not stated) are not used.

Grid and axes as in :mod:`spinecensus.segment.grid`: canonical ``[slice, SI, AP]``, the labeler's
4 mm in-plane grid, three adjacent slices as channels.

Rules ``train_real_labeler_windows`` (the synthetic windows) and ``train_real_labeler_fold``
(one fold's fine-tune); the cross-validated naming is ``spinecensus.train.real_naming``.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus.train.real_data import DEFAULT_ROOT, LoadedSample, RealSample, load_manifest
from spinecensus.train.real_splits import check_split, split_subjects

log = logging.getLogger(__name__)

#: target value of voxels the masks say nothing about (no loss)
IGNORE = 255


def named_class_map(sample: LoadedSample) -> np.ndarray | None:
    """Union-schema class (``union_maps.union_class_map``: ``j + 1`` = ``labels.all_names()[j]``)
    on each named, annotated voxel, :data:`IGNORE` elsewhere; uint8, canonical order.

    None when the scan's levels are not known (VB1: ``unknown_k`` placeholders).
    """
    from spinecensus.train.union_maps import union_class_map

    if not sample.meta.levels_known:
        return None
    inst = np.asarray(sample.instances)
    names = {int(i): n for i, n in sample.meta.level_names.items()}
    union = union_class_map(inst, names)
    return np.where(inst > 0, union, IGNORE).astype(np.uint8)


@dataclass
class RealLabelerConfig:
    """One fine-tuning run (:func:`train_real_labeler`)."""

    root: str = str(DEFAULT_ROOT)
    val_fraction: float = 0.34
    #: seed of the patient-level split (``real_splits.split_subjects``)
    seed: int = 0
    #: seed of the batch sampling and augmentation; None = ``seed + 11``.  Apart from the
    #: split's seed so that a repeat judges the same folds.
    train_seed: int | None = None
    #: cross-validation fold held out (``real_splits.split_subjects``)
    fold: int = 0
    #: labeler weights to start from ("" = the shipped synthetic labeler)
    init: str = ""
    #: synthetic training windows (``crops.make_crops`` file; "" = real scans only)
    crops: str = ""
    #: ``config.TrainConfig`` size the crops' subjects were generated with
    crops_size: str = "demo"
    #: how many of the crops file's windows to mix in (the first ones, whole subjects)
    n_synthetic_crops: int = 400
    #: share of real slices among the sampled training slices
    real_fraction: float = 0.5
    #: 1,000 steps: about 3.5 min on 2 CPU cores (the shipped fold models' recipe)
    steps: int = 1000
    lr: float = 5e-4
    batch_size: int = 12
    crop: tuple[int, int] = (128, 72)
    max_seconds: float | None = None
    device: str = "cpu"
    threads: int = 1
    log_every: int = 25

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RealLabelerConfig:
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in (d or {}).items() if k in known}
        if "crop" in kw:
            kw["crop"] = tuple(int(c) for c in kw["crop"])
        return cls(**kw)

    def init_path(self) -> Path:
        from spinecensus.segment.weights import DEFAULT_LABELING_WEIGHTS

        return Path(self.init) if self.init else DEFAULT_LABELING_WEIGHTS


def _real_volumes(
    samples: Iterable[RealSample],
) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]]:
    for s in samples:
        loaded = s.load()
        target = named_class_map(loaded)
        if target is not None:
            yield np.asarray(loaded.scan.data, dtype=np.float32), target, loaded.spacing_mm


def mixed_bank(real: Any, synthetic: Any | None, real_fraction: float) -> Any:
    """One ``slice_bank.SliceBank`` holding both banks; real slices are listed repeatedly so
    that about ``real_fraction`` of the uniformly sampled slices are real.  The real
    slices without a named voxel are dropped (they would carry no loss)."""
    from spinecensus.train.slice_bank import SliceBank

    if synthetic is None or len(synthetic.index) == 0:
        return SliceBank(real.images, real.targets, real.index)
    n_r, n_s = len(real.index), len(synthetic.index)
    if n_r == 0:
        raise ValueError("no real slice with a named structure")
    f = min(max(real_fraction, 0.0), 0.99)
    repeat = max(1, int(round(f / (1 - f) * n_s / n_r)))
    shift = len(real.images)
    syn_index = synthetic.index + np.array([shift, 0])
    syn_bg = synthetic.background + np.array([shift, 0])
    return SliceBank(
        real.images + synthetic.images,
        real.targets + synthetic.targets,
        np.concatenate([np.tile(real.index, (repeat, 1)), syn_index]),
        syn_bg,
    )


def train_real_labeler(config: dict[str, Any] | None, out: str | os.PathLike[str]) -> Path:
    """Fine-tune the labeler on the named real scans of the fold's training side (plus
    synthetic windows); writes ``out`` (.pt + sidecar naming exactly that data)."""
    import torch

    from spinecensus.segment.weights import read_spec, sha256_file
    from spinecensus.train.config import TrainConfig
    from spinecensus.train.crops import crops_provenance, iter_crops
    from spinecensus.train.loop import train_network
    from spinecensus.train.networks import save_trained
    from spinecensus.train.slice_bank import to_bank

    cfg = RealLabelerConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    t0 = time.perf_counter()
    init = cfg.init_path()
    spec = read_spec(init)
    if spec is None or spec.task != "labeling":
        raise ValueError(f"{init}: not a labeler (sidecar task must be 'labeling')")
    samples = load_manifest(cfg.root)
    train, val = split_subjects(samples, cfg.val_fraction, cfg.seed, cfg.fold)
    check_split(train, val)
    named = [s for s in train if s.levels_known]
    real = to_bank(_real_volumes(named), spec, ignore_index=IGNORE)
    synthetic = None
    if cfg.crops and cfg.n_synthetic_crops > 0:
        tcfg = TrainConfig.from_dict({"size": cfg.crops_size})
        windows = itertools.islice(iter_crops(tcfg, cfg.crops), cfg.n_synthetic_crops)
        synthetic = to_bank(windows, spec)
    bank = mixed_bank(real, synthetic, cfg.real_fraction)
    train_seed = cfg.seed + 11 if cfg.train_seed is None else int(cfg.train_seed)
    log.info(
        "real labeler fold %d: %d named real scans (%d slices), %d synthetic slices",
        cfg.fold, len(named), len(real.index), 0 if synthetic is None else len(synthetic.index),
    )  # fmt: skip
    net, losses = train_network(
        spec, bank, cfg.steps, cfg.batch_size, cfg.crop, train_seed, cfg.lr, cfg.device,
        cfg.log_every, Path(out).with_suffix(".log.tsv"), f"real_labeler_fold{cfg.fold}",
        max_seconds=cfg.max_seconds, init_weights=init, ignore_index=IGNORE,
    )  # fmt: skip
    spec.metrics = {"final_loss": float(np.mean(losses[-10:]))}
    save_trained(net, spec, out, {
        "task": "real_labeler_finetune",
        "data": "named levels of public annotated real MRI (../shared/data/real: VB2 T11-L5, "
                "VB3 L1-L5 bodies, IVD L1-L2..L5-S1 discs; unnamed voxels ignored) mixed "
                "with synthetic small-FOV windows (automatic labels)",
        "init_weights": init.name, "init_sha256": sha256_file(init),
        "real_train_subjects": [s.key for s in named],
        "real_validation_subjects": [s.key for s in val],
        "synthetic_crops": crops_provenance(cfg.crops) if cfg.crops else None,
        # the data folder's path is this machine's; the subjects above say what was read
        "config": {k: list(v) if isinstance(v, tuple) else v
                   for k, v in asdict(cfg).items() if k != "root"},
        "steps": len(losses), "train_seconds": round(time.perf_counter() - t0, 1),
    })  # fmt: skip
    return Path(out)


def train_real_labeler_fold(
    config: dict[str, Any] | None,
    fold: int,
    crops: str | os.PathLike[str],
    out: str | os.PathLike[str],
) -> Path:
    """The fine-tuned labeler of ``fold`` (``snakemake train_real_naming``): trained on the
    named real scans outside that fold plus the synthetic windows ``crops``
    (:func:`train_real_labeler` with ``fold`` and ``crops`` set)."""
    return train_real_labeler({**(config or {}), "fold": int(fold), "crops": crops}, out)


def train_real_labeler_windows(config: dict[str, Any] | None, out: str | os.PathLike[str]) -> Path:
    """The synthetic windows mixed into the fine-tuning when none are given: ground-truth
    small-FOV windows of the expert subjects of ``config``'s training size
    (``crops.make_crops(..., expert=True)``), written to ``out``."""
    from spinecensus.train.crops import make_crops

    return make_crops(config, None, out, expert=True)


__all__ = [
    "IGNORE",
    "RealLabelerConfig",
    "mixed_bank",
    "named_class_map",
    "train_real_labeler",
    "train_real_labeler_fold",
    "train_real_labeler_windows",
]
