"""Training of the segmentation and labeling U-Nets, and the thesis's training-data generation.

The thesis's key idea (Gliwa 2023): a segmentation model trained on a *small* expert-annotated
subset segments a *large* cohort; the segmentations are split into instances and named by
counting from C2 (whole-spine scans), subjects whose split is invalid are dropped, and the
resulting automatically labelled scans - cropped to small fields of view - train the
multiclass labeler.  Here every step is one function (one Snakemake rule in
``workflow/rules/train.smk``), all on the seeded synthetic cohort (``spinecensus.synthetic``):

1. :func:`train_segmentation` - U-Net (bg/vertebra/disc) on the expert subset's ground truth.
2. :func:`autolabel_cohort` - segment the larger cohort, split, count-label from C2, drop
   invalid splits (and spines with a suspected missed disc, whose names below it shift).
   Ground-truth masks/names of this cohort are never read.
3. :func:`make_crops` - random small-FOV windows (V = 5..15 visible vertebrae).
4. :func:`train_labeler` - multiclass labeler on those crops; the control labeler on the
   expert subset's (ground-truth) crops only.
5. :func:`evaluate_labelers` - held-out synthetic crops at V = 5, 8, 10, 15: subset accuracy
   (every vertebra and disc of the crop named correctly) and mean Dice, both models.

Subject seeds: expert subset ``seed*1_000_000 + i``, cohort ``seed*1_000_000 + 100_000 + i``,
evaluation ``seed*1_000_000 + 900_000 + i`` - disjoint, so nothing is evaluated on training
subjects.  All numbers produced here are on **synthetic** data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.io import atomic_path, write_json
from spinecensus.naming import labeling
from spinecensus.segment.model import (
    ModelSpec,
    SegmentationModel,
    build_network,
    load_model,
    load_network,
    neighbour_index,
    normalise_volume,
    plan_geometry,
    save_weights,
    to_network_grid,
    weights_file,
)

if TYPE_CHECKING:
    import torch

log = logging.getLogger("spinecensus.train.training")

EXPERT_OFFSET = 0
COHORT_OFFSET = 100_000
EVAL_OFFSET = 900_000
EVAL_V = (5, 8, 10, 15)

#: presets for ``train.size``; explicit config keys override them
PRESETS: dict[str, dict[str, Any]] = {
    "ci": {
        "n_expert": 6,
        "n_cohort": 24,
        "crops_per_subject": 6,
        "n_eval_per_v": 12,
        "seg_steps": 150,
        "lab_steps": 150,
        "batch_size": 8,
        "synthetic_preset": "tiny",
    },
    # what produced the shipped weights: segmentation 1200 steps (~15 min, 1 thread); the
    # labelers auto-labelled 300 subjects with the shipped segmentation weights
    # (segmentation_weights: shipped) and trained 25 min each (two at once, 1 thread each,
    # bf16 on this AMX CPU: ~4,840 steps for the generated-label labeler)
    "demo": {
        "n_expert": 16,
        "n_cohort": 300,
        "crops_per_subject": 8,
        "anomaly_crop_factor": 4,
        "n_eval_per_v": 20,
        "seg_steps": 1200,
        "lab_steps": 6000,
        "lab_max_seconds": 1500,
        "batch_size": 8,
        "lab_batch_size": 12,
        "synthetic_preset": "default",
    },
    # thesis proportions: 162 expert of 10,833 (1.5 %); GPU-sized
    "gpu": {
        "n_expert": 162,
        "n_cohort": 10_833,
        "crops_per_subject": 10,
        "n_eval_per_v": 500,
        "seg_steps": 20_000,
        "lab_steps": 50_000,
        "batch_size": 32,
        "synthetic_preset": "default",
    },
}

SEGMENTATION_DEFAULTS: dict[str, Any] = {
    "encoder": "resnet18",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 16, 8],
    "target_spacing_mm": [2.0, 2.0],
    # 1024 x 320 mm: a whole synthetic spine (skull base to coccyx, <= ~1000 mm) fits
    "input_size": [512, 160],
    "weights_dtype": "float16",
}
LABELING_DEFAULTS: dict[str, Any] = {
    "encoder": "resnet18",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 16, 16],
    # coarse: level recognition needs context (landmarks several levels away), not detail
    "target_spacing_mm": [4.0, 4.0],
    "input_size": None,
    "weights_dtype": "float16",
}


@dataclass
class TrainConfig:
    """Resolved ``train:`` config (see ``workflow/rules/train.smk`` for the YAML)."""

    size: str = "ci"
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    n_expert: int = 6
    n_cohort: int = 24
    crops_per_subject: int = 6
    #: crops_per_subject x this for subjects whose labels say lumbarization / sacralization
    anomaly_crop_factor: int = 1
    n_eval_per_v: int = 12
    seg_steps: int = 150
    lab_steps: int = 150
    batch_size: int = 8
    #: labelers' batch size (None = batch_size)
    lab_batch_size: int | None = None
    lr: float = 2e-3
    seg_crop: tuple[int, int] = (192, 96)
    lab_crop: tuple[int, int] = (128, 72)
    v_min: int = 5
    v_max: int = 15
    lumbarization: float = 0.066
    sacralization: float = 0.036
    synthetic_preset: str = "tiny"
    log_every: int = 25
    #: wall-clock budgets (s) per network; None = exactly seg_steps / lab_steps steps
    seg_max_seconds: float | None = None
    lab_max_seconds: float | None = None
    segmentation: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(SEGMENTATION_DEFAULTS)
    )
    labeling: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(LABELING_DEFAULTS))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        d = dict(d or {})
        merged = {**PRESETS.get(str(d.get("size", "ci")), PRESETS["ci"]), **d}
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in merged.items() if k in known})
        cfg.segmentation = {**SEGMENTATION_DEFAULTS, **(d.get("segmentation") or {})}
        cfg.labeling = {**LABELING_DEFAULTS, **(d.get("labeling") or {})}
        cfg.seg_crop = tuple(cfg.seg_crop)  # type: ignore[assignment]
        cfg.lab_crop = tuple(cfg.lab_crop)  # type: ignore[assignment]
        return cfg


# --------------------------------------------------------------------------- synthetic data


def _synthetic_config(cfg: TrainConfig) -> Any:
    from spinecensus.synthetic import generator as synthetic

    return synthetic.SyntheticConfig.preset(cfg.synthetic_preset)


def subject_seed(cfg: TrainConfig, offset: int, i: int) -> int:
    return int(cfg.seed) * 1_000_000 + offset + int(i)


def anomaly_for(cfg: TrainConfig, seed: int) -> str:
    """Anomaly drawn at the configured prevalences (seeded per subject)."""
    u = np.random.default_rng([seed, 7]).random()
    if u < cfg.lumbarization:
        return "lumbarization"
    if u < cfg.lumbarization + cfg.sacralization:
        return "sacralization"
    return "normal"


def make_subject(cfg: TrainConfig, seed: int, anomaly: str | None = None) -> Any:
    from spinecensus.synthetic import generator as synthetic

    return synthetic.generate_subject(
        seed, anomaly=anomaly or anomaly_for(cfg, seed), config=_synthetic_config(cfg)
    )


def union_class_map(instances: np.ndarray, id_to_name: dict[int, str]) -> np.ndarray:
    """Instance map -> per-voxel union-schema class (0 bg, i = all_names()[i-1]), uint8."""
    names = labels.all_names()
    lut = np.zeros(int(np.max(instances, initial=0)) + 1, dtype=np.uint8)
    for iid, name in id_to_name.items():
        if 0 < int(iid) < len(lut):
            # L4-S1 / L5-S1 are no union column: learned as "L6-S1", the disc above the
            # sacrum (labeling.COLUMN_ALIASES scores them from it when decoding)
            lut[int(iid)] = names.index(labeling.union_column(name)) + 1
    return lut[np.asarray(instances, dtype=np.int64)]


# --------------------------------------------------------------------------- training core


@dataclass
class SliceBank:
    """Training slices on the network grid: normalised images and targets, per volume."""

    images: list[np.ndarray]  # (S, h, w) float16 normalised
    targets: list[np.ndarray]  # (S, h, w) uint8 class ids
    index: np.ndarray  # (n, 2) (volume, slice) pairs with foreground
    #: (m, 2) slices without foreground (lateral slices): sampled now and then so the
    #: network also learns to say "nothing here"
    background: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), int))


def to_bank(
    volumes: Iterable[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]],
    spec: ModelSpec,
    ignore_index: int | None = None,
) -> SliceBank:
    """Resample (image, class map, spacing) volumes onto the network grid, once.

    ``ignore_index``: a target value meaning "not supervised" (partially named real scans,
    ``spinecensus.train.reallabel``); such voxels count as neither foreground nor background.
    """
    import torch

    images, targets, index, bg_index = [], [], [], []
    for v, (image, target, spacing) in enumerate(volumes):
        geo = plan_geometry(image.shape[1:], (spacing[1], spacing[2]), spec)
        x = torch.from_numpy(normalise_volume(image, spec.normalisation))[:, None]
        y = torch.from_numpy(np.asarray(target, dtype=np.float32))[:, None]
        xi = to_network_grid(x, geo)[:, 0].numpy().astype(np.float16)
        yi = to_network_grid(y, geo, mode="nearest")[:, 0].numpy().astype(np.uint8)
        images.append(xi)
        targets.append(yi)
        has_fg = _supervised_fg(yi, ignore_index).reshape(len(yi), -1).any(axis=1)
        index += [(v, int(s)) for s in np.flatnonzero(has_fg)]
        bg_index += [(v, int(s)) for s in np.flatnonzero(~has_fg)]
    return SliceBank(
        images,
        targets,
        np.asarray(index, dtype=np.int64).reshape(-1, 2),
        np.asarray(bg_index, dtype=np.int64).reshape(-1, 2),
    )


def _supervised_fg(target: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """Foreground voxels of a target map, the ``ignore_index`` ones excluded."""
    fg = target > 0
    return fg if ignore_index is None else fg & (target != ignore_index)


def _sample_batch(
    bank: SliceBank,
    rng: np.random.Generator,
    batch: int,
    crop: tuple[int, int],
    ignore_index: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random foreground slices with neighbours, random crop, intensity jitter.  Padding
    beyond the slice is background, or ``ignore_index`` where one is given."""
    import torch

    xs, ys = [], []
    picks = bank.index[rng.integers(0, len(bank.index), batch)]
    if len(bank.background):
        swap = rng.random(batch) < 0.1
        picks[swap] = bank.background[rng.integers(0, len(bank.background), int(swap.sum()))]
    pad_value = 0 if ignore_index is None else ignore_index
    for v, s in picks:
        img, tgt = bank.images[v], bank.targets[v]
        nb = neighbour_index(len(img))[s]
        h, w = img.shape[1:]
        ch, cw = min(crop[0], h), min(crop[1], w)
        fg = np.argwhere(_supervised_fg(tgt[s], ignore_index))
        # centre the crop on a random foreground voxel, jittered, clipped into the slice
        cy, cx = fg[rng.integers(len(fg))] if len(fg) else (h // 2, w // 2)
        y0 = int(np.clip(cy - ch // 2 + rng.integers(-ch // 4, ch // 4 + 1), 0, h - ch))
        x0 = int(np.clip(cx - cw // 2 + rng.integers(-cw // 4, cw // 4 + 1), 0, w - cw))
        x = img[nb, y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
        x = x * rng.uniform(0.8, 1.25) + rng.uniform(-0.2, 0.2)
        x = x + rng.normal(0, rng.uniform(0, 0.1), x.shape).astype(np.float32)
        pad = ((0, 0), (0, crop[0] - ch), (0, crop[1] - cw))
        xs.append(np.pad(x, pad))
        ys.append(np.pad(tgt[s, y0 : y0 + ch, x0 : x0 + cw], pad[1:], constant_values=pad_value))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


def _dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None
) -> torch.Tensor:
    """Soft Dice over the foreground classes present in the batch (``ignore_index``
    voxels left out of both the prediction and the target sums)."""
    import torch

    prob = logits.softmax(1)
    if ignore_index is not None:
        known = (target != ignore_index).unsqueeze(1)
        target = torch.where(known[:, 0], target, torch.zeros_like(target))
        prob = prob * known
    onehot = torch.nn.functional.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
    if ignore_index is not None:
        onehot = onehot * known
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    denom = prob.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims)[1:] > 0
    dice = (2 * inter[1:] + 1.0) / (denom[1:] + 1.0)
    return 1.0 - dice[present].mean() if bool(present.any()) else logits.sum() * 0.0


def train_network(
    spec: ModelSpec,
    bank: SliceBank,
    steps: int,
    batch_size: int,
    crop: tuple[int, int],
    seed: int,
    lr: float = 2e-3,
    device: str = "cpu",
    log_every: int = 25,
    log_path: str | os.PathLike[str] | None = None,
    name: str = "model",
    amp: str | None = "auto",
    max_seconds: float | None = None,
    init_weights: str | os.PathLike[str] | None = None,
    class_weights: Sequence[float] | None = None,
    ignore_index: int | None = None,
) -> tuple[torch.nn.Module, list[float]]:
    """Train a network from ``spec`` on ``bank``: cross-entropy + soft Dice, AdamW,
    warm-up + cosine schedule.  Seeded (torch and numpy).  Returns the network and per-step losses;
    progress goes to the log (and ``log_path`` as TSV: step, loss, seconds).

    ``amp``: bf16 autocast + channels_last (``"bf16"``), fp32 (None) or ``"auto"`` = bf16 on
    CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX: about 3x faster here), else fp32.

    ``max_seconds``: wall-clock budget.  The learning-rate schedule (linear warm-up, cosine
    decay) then follows ``max(step / steps, elapsed / max_seconds)`` and training stops when
    that reaches 1, so a run on a busy machine still ends annealed, on time, with fewer steps
    (the number done is ``len(losses)``).  Without it the run is exactly ``steps`` steps and
    bit-reproducible for a seed.

    ``init_weights``: a ``.pt`` + sidecar to fine-tune from (its spec must equal ``spec`` in
    architecture and classes) instead of a fresh initialisation.  ``class_weights``: one
    cross-entropy weight per class (e.g. up-weight thin discs); the soft Dice term is
    unchanged.  ``ignore_index``: target value of unsupervised voxels (no loss there;
    the bank must be built with the same value, :func:`to_bank`).
    """
    import torch

    if len(bank.index) == 0:
        raise ValueError(f"{name}: no training slice contains foreground")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    use_bf16 = training_uses_bf16(amp, device)
    if init_weights is not None:
        net, init_spec = load_network(init_weights)

        def arch(s: ModelSpec) -> tuple:
            return s.n_classes, s.encoder, s.encoder_depth, tuple(s.decoder_channels)

        if arch(init_spec) != arch(spec):
            raise ValueError(f"{name}: init_weights {init_weights} do not match the spec")
        net = net.to(device).train()
    else:
        net = build_network(spec).to(device).train()
    ce_weight = (
        None
        if class_weights is None
        else torch.as_tensor(list(class_weights), dtype=torch.float32, device=device)
    )
    if use_bf16:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    losses: list[float] = []
    t0 = time.perf_counter()
    rows = ["step\tloss\tseconds"]
    progress = 0.0
    for step in range(1, steps + 1):
        # warm-up over the first 10 %, then cosine decay to 1 % of lr
        for group in opt.param_groups:
            group["lr"] = lr * (
                progress / 0.1 + 0.01
                if progress < 0.1
                else 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (progress - 0.1) / 0.9))
            )
        x, y = _sample_batch(bank, rng, batch_size, crop, ignore_index)
        x, y = x.to(device), y.to(device)
        if use_bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=use_bf16):
            logits = net(x)
        logits = logits.float()
        ce = torch.nn.functional.cross_entropy(
            logits, y, weight=ce_weight, ignore_index=-100 if ignore_index is None else ignore_index
        )
        loss = ce + _dice_loss(logits, y, ignore_index)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        progress = step / steps
        if max_seconds:
            progress = max(progress, (time.perf_counter() - t0) / max_seconds)
        last = progress >= 1.0 or step == steps
        if step % log_every == 0 or last:
            mean = float(np.mean(losses[-log_every:]))
            el = time.perf_counter() - t0
            log.info("%s step %d/%d loss %.4f (%.0f s)", name, step, steps, mean, el)
            rows.append(f"{step}\t{mean:.5f}\t{el:.1f}")
        if last:
            break
    if log_path is not None:
        with atomic_path(log_path) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
    return net.eval().cpu().to(memory_format=torch.contiguous_format), losses


def training_uses_bf16(amp: str | None, device: str) -> bool:
    """A training loop's ``amp`` setting resolved: ``"bf16"`` yes, None no, ``"auto"`` =
    where bf16 is fast (:func:`bf16_is_fast`)."""
    return amp == "bf16" or (amp == "auto" and bf16_is_fast(device))


def bf16_is_fast(device: str = "cpu") -> bool:
    """True on CUDA and on CPUs with native bf16 matmuls (AVX512-BF16 or AMX)."""
    import torch

    if torch.device(device).type == "cuda":
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " amx_bf16" in flags or " avx512_bf16" in flags


# --------------------------------------------------------------------------- metrics


def dice_per_class(pred: np.ndarray, truth: np.ndarray, classes: Sequence[int]) -> dict[int, float]:
    """Dice per class id (classes absent from both give NaN), vectorised with bincount."""
    n = int(max(np.max(pred, initial=0), np.max(truth, initial=0), max(classes, default=0))) + 1
    p = np.bincount(pred.ravel(), minlength=n).astype(np.float64)
    t = np.bincount(truth.ravel(), minlength=n).astype(np.float64)
    both = np.bincount(pred.ravel()[pred.ravel() == truth.ravel()], minlength=n).astype(float)
    out = {}
    for c in classes:
        den = p[c] + t[c]
        out[int(c)] = float(2 * both[c] / den) if den > 0 else math.nan
    return out


def name_accuracy(
    pred_instances: np.ndarray,
    pred_names: dict[int, str],
    true_instances: np.ndarray,
    true_names: dict[int, str],
) -> float:
    """Fraction of ground-truth structures whose best-overlapping predicted instance carries
    the same name (instances matched by voxel overlap; no overlap = wrong)."""
    t = np.asarray(true_instances, dtype=np.int64).ravel()
    p = np.asarray(pred_instances, dtype=np.int64).ravel()
    m = (t > 0) & (p > 0)
    if not true_names:
        return math.nan
    nt, np_ = int(t.max()) + 1, int(p.max()) + 1
    overlap = np.bincount(t[m] * np_ + p[m], minlength=nt * np_).reshape(nt, np_)
    best = overlap.argmax(axis=1)
    correct = [
        overlap[tid].max() > 0 and pred_names.get(int(best[tid])) == name
        for tid, name in true_names.items()
    ]
    return float(np.mean(correct))


# --------------------------------------------------------------------------- pipeline steps


def _infer_amp(cfg: TrainConfig) -> str | None:
    return "bf16" if bf16_is_fast(cfg.device) else None


def _spec(cfg: TrainConfig, task: str) -> ModelSpec:
    section = cfg.segmentation if task == "segmentation" else cfg.labeling
    return ModelSpec.from_config(section, task)  # type: ignore[arg-type]


def _save(net: Any, spec: ModelSpec, out: str | os.PathLike[str], training: dict) -> None:
    spec.training = training
    save_weights(net, spec, out)


def train_segmentation(config: dict[str, Any] | None, out: str | os.PathLike[str]) -> Path:
    """Step 1: train the 3-class U-Net on the expert subset (synthetic ground truth)."""
    import torch

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    spec = _spec(cfg, "segmentation")
    t0 = time.perf_counter()
    seeds = [subject_seed(cfg, EXPERT_OFFSET, i) for i in range(cfg.n_expert)]
    vols = []
    for s in seeds:
        sub = make_subject(cfg, s)
        vols.append((sub.image, sub.semantic, sub.spacing_mm))
    bank = to_bank(vols, spec)
    log.info("segmentation: %d expert subjects, %d slices", len(seeds), len(bank.index))
    net, losses = train_network(
        spec, bank, cfg.seg_steps, cfg.batch_size, cfg.seg_crop, cfg.seed, cfg.lr,
        cfg.device, cfg.log_every, Path(out).with_suffix(".log.tsv"), "segmentation",
        max_seconds=cfg.seg_max_seconds,
    )  # fmt: skip
    # Dice on fresh subjects (never used for training)
    model = SegmentationModel.from_network(net, spec, amp=_infer_amp(cfg))
    dices = []
    for i in range(3):
        sub = make_subject(cfg, subject_seed(cfg, EVAL_OFFSET + 50_000, i))
        pred = model.predict(sub.image, sub.spacing_mm)
        d = dice_per_class(pred, np.asarray(sub.semantic), [1, 2])
        dices.append(d)
    metrics = {
        "synthetic": True,
        "dice_vertebra": float(np.nanmean([d[1] for d in dices])),
        "dice_disc": float(np.nanmean([d[2] for d in dices])),
        "final_loss": float(np.mean(losses[-10:])),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    spec.metrics = metrics
    _save(net, spec, out, {
        "data": "synthetic expert subset (spinecensus.synthetic.generator ground truth)",
        "n_subjects": len(seeds), "seeds": [seeds[0], seeds[-1]], "steps": len(losses),
        "max_seconds": cfg.seg_max_seconds,
        "batch_size": cfg.batch_size, "crop": list(cfg.seg_crop), "lr": cfg.lr,
        "synthetic_preset": cfg.synthetic_preset, "size": cfg.size,
    })  # fmt: skip
    log.info("segmentation done: %s", metrics)
    return Path(out)


def autolabel_cohort(
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

    from spinecensus.split import instances as split

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    model = load_model(
        segmentation_weights, device=cfg.device, threads=cfg.threads, amp=_infer_amp(cfg)
    )
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for i in range(cfg.n_cohort):
        seed = subject_seed(cfg, COHORT_OFFSET, i)
        sub = make_subject(cfg, seed)
        sem = model.predict_semantic(sub.image, sub.spacing_mm)
        res = split.split_instances(sem, sub.spacing_mm)
        row: dict[str, Any] = {"seed": seed, "valid": bool(res.valid)}
        if res.valid:
            lab = labeling.count_labels(res)
            names = {int(k): str(v) for k, v in lab.id_to_name.items()}
            row["transitional_status"] = str(lab.transitional_status)
            row["n_structures"] = len(names)
            merged = [f for f in lab.qc_flags if f.startswith("missed_disc_suspected")]
            if merged:
                # a merged vertebra shifts every name below it: such labels would teach the
                # labeler wrong names, so the subject is dropped like an invalid split
                row["valid"] = False
                row["invalid_reason"] = merged[0]
            elif names:
                arrays[f"lab_{seed}"] = union_class_map(res.instances, names)
            else:
                row["valid"] = False
        else:
            row["invalid_reason"] = str(res.invalid_reason)
        rows.append(row)
        log.info("autolabel %d/%d seed %d valid=%s", i + 1, cfg.n_cohort, seed, row["valid"])
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    kept = sum(r["valid"] for r in rows)
    from spinecensus.segment.model import sha256_file

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
    return Path(out)


def instances_from_union(union: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Union-class map of one labelled spine -> (instances 1..N cranio-caudal, names).

    Every structure of a spine has its own union class, so ranking the classes present
    gives the instances back (the union order is cranio-caudal).
    """
    present = np.unique(union)
    present = present[present > 0]
    lut = np.zeros(256, dtype=np.uint16)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    names = labels.all_names()
    return lut[union], {i + 1: names[int(c) - 1] for i, c in enumerate(present)}


def _crop_union(sub: Any, union: np.ndarray, v: int, rng: np.random.Generator) -> Any:
    """Crop ``sub`` to ``v`` vertebrae as seen by ``union`` (an automatic or ground-truth
    union-class map); the returned crop's ``semantic`` is the cropped union map."""
    from spinecensus.synthetic import generator as synthetic

    # crop_fov chooses the window from the subject's instances: hand it the instances of
    # the union map (never the ground truth for auto-labelled subjects) and carry the
    # label map through as "semantic" so both get exactly the same window
    inst, names = instances_from_union(union)
    carrier = dataclasses.replace(sub, semantic=union, instances=inst, id_to_name=names)
    return synthetic.crop_fov(carrier, v, rng)


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
    status: dict[int, str] = {}
    if expert:
        items = [(subject_seed(cfg, EXPERT_OFFSET, i), None) for i in range(cfg.n_expert)]
        status = {seed: anomaly_for(cfg, seed) for seed, _ in items}
    else:
        with np.load(autolabels) as z:
            items = [(int(key[4:]), z[key]) for key in z.files]
        summary = Path(autolabels).with_suffix(".json")  # type: ignore[arg-type]
        if summary.exists():
            for row in json.loads(summary.read_text()).get("subjects", []):
                status[int(row["seed"])] = str(row.get("transitional_status", ""))
    rows: list[tuple[int, int, int, int]] = []
    for seed, union in items:
        sub = make_subject(cfg, seed)
        if union is None:
            union = union_class_map(sub.instances, sub.id_to_name)
        # transitional spines are rare (a few % of a cohort) but the labeler must learn their
        # lumbosacral names (L4-S1, L6): oversample them, chosen by the status the labels
        # themselves give (automatic labels for the cohort, never its ground truth)
        rare = status.get(seed) in ("lumbarization", "sacralization")
        n_crops = cfg.crops_per_subject * (int(cfg.anomaly_crop_factor) if rare else 1)
        for _ in range(n_crops):
            v = int(rng.integers(cfg.v_min, cfg.v_max + 1))
            r0, r1 = _crop_union(sub, union, v, rng).meta["crop_rows"]
            rows.append((seed, v, int(r0), int(r1)))
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    source = "ground_truth" if expert else str(Path(autolabels).resolve())  # type: ignore[arg-type]
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, seed=arr[:, 0], v=arr[:, 1], r0=arr[:, 2], r1=arr[:, 3], labels=source)
    log.info("crops: %d from %d subjects (expert=%s)", len(rows), len(items), expert)
    return Path(out)


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
    spec = _spec(cfg, "labeling")
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
    _save(net, spec, out, {
        "data": f"{Path(crops).name}: {n} small-FOV crops (synthetic)",
        "crops": crops_provenance(crops), "steps": len(losses),
        "max_seconds": cfg.lab_max_seconds,
        "batch_size": lab_batch, "crop": list(cfg.lab_crop), "lr": cfg.lr,
        "size": cfg.size,
    })  # fmt: skip
    return Path(out)


AGGREGATIONS = ("vote", "mean")


def label_crop(
    model: SegmentationModel, crop: Any, aggregation: str = "vote"
) -> tuple[list[str], np.ndarray]:
    """Names for the ground-truth instances of ``crop`` from the labeler + consistent DP, and
    the labeler's per-voxel union-class prediction (arg-max incl. background, for Dice).

    ``aggregation``: ``"vote"`` = per-voxel majority inside each instance
    (:func:`spinecensus.naming.labeling.vote_log_probs`, what the cohort workflow does) or
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
    for agg, logp in (("mean", mean), ("vote", labeling.vote_log_probs(inst, votes, n))):
        names, _ = labeling.consistent_sequence(logp[np.asarray(ids) - 1], kinds)
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

    from spinecensus.synthetic import generator as synthetic

    cfg = TrainConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    loaded = {
        k: load_model(p, device=cfg.device, threads=cfg.threads, amp=_infer_amp(cfg))
        for k, p in models.items()
    }
    rows = []
    for v in EVAL_V:
        rng = np.random.default_rng([cfg.seed, 5, v])
        for i in range(cfg.n_eval_per_v):
            seed = subject_seed(cfg, EVAL_OFFSET, v * 1000 + i)
            crop = synthetic.crop_fov(make_subject(cfg, seed), v, rng)
            truth_names = [crop.id_to_name[i] for i in sorted(crop.id_to_name)]
            truth_map = union_class_map(crop.instances, crop.id_to_name)
            present = sorted(int(c) for c in np.unique(truth_map) if c > 0)
            for mname, model in loaded.items():
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
        log.info("evaluated V=%d", v)
    df = pd.DataFrame(rows)
    with atomic_path(out_parquet) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(out_markdown) as tmp:
        tmp.write_text(eval_markdown(df, cfg))
    return Path(out_parquet)


THESIS_SUBSET_ACCURACY = {5: 85.5, 8: 90.9, 10: 92.6, 15: 94.4}


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


# --------------------------------------------------------------------------- CLI


def setup_logging(path: str | os.PathLike[str] | None = None) -> None:
    """Progress to stderr and, when given, to ``path`` (Snakemake ``log:``)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=handlers,
        force=True,
    )


def _load_config(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    return dict(data.get("train", data))


def _cmd_train(args: argparse.Namespace) -> int:
    setup_logging()
    cfg = _load_config(args.config)
    if args.size:
        cfg["size"] = args.size
    cfg["threads"] = args.threads
    out = Path(args.out)
    seg = (
        weights_file(args.segmentation_weights, "segmentation")
        if args.segmentation_weights
        else train_segmentation(cfg, out / "segmentation.pt")
    )
    auto = autolabel_cohort(cfg, seg, out / "autolabels.npz")
    crops = make_crops(cfg, auto, out / "crops.npz")
    ecrops = make_crops(cfg, None, out / "expert_crops.npz", expert=True)
    lab = train_labeler(cfg, crops, out / "labeler.pt", "labeler")
    ctl = train_labeler(cfg, ecrops, out / "control.pt", "control")
    evaluate_labelers(
        cfg, {"generated": lab, "control": ctl}, out / "eval.parquet", out / "eval.md"
    )
    print((out / "eval.md").read_text())
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train", help="run the whole training pipeline without Snakemake (synthetic data)"
    )
    p.add_argument("--config", help="YAML with a train: section")
    p.add_argument("--size", choices=sorted(PRESETS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="results/train")
    p.add_argument(
        "--segmentation-weights",
        help='skip step 1: auto-label with these weights ("shipped", or a .pt/.onnx path)',
    )
    p.set_defaults(func=_cmd_train)


def dump_config(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)
