"""Training the segmentation U-Net on partially labelled real MRI (mixed with synthetic).

Reuses ``spinecensus.segment.model`` for everything the network sees (architecture, in-plane
resampling to ``target_spacing_mm``, per-volume robust normalisation, three adjacent
slices as channels, weights + sidecar); adds what real data need:

* a **partial-label loss** (:func:`partial_label_loss`).  Each voxel carries a code naming
  the *set* of classes it may belong to (``realdata.CODE_ALLOWED``); the cross-entropy term
  is ``-log sum_{c in set} p_c``, i.e. the classes the mask cannot tell apart are merged
  (log-sum-exp of their logits) before the log-likelihood.  Why: a body-only mask (VB*) is 0
  on discs because nobody drew them, not because they are background.  Plain cross-entropy
  would teach every disc voxel of those scans as background, i.e. teach the model to erase
  discs (and, symmetrically, IVD scans would teach it to erase vertebral bodies).  Merging
  {background, disc} into "not body" on VB scans keeps the body supervision intact and says
  nothing about discs; outside the annotated levels (``realdata.trusted_band``) no loss at
  all.  A soft Dice term is computed per class over the voxels where that class is known
  (known positive or known negative), so it is masked the same way.
* MRI augmentation (``realdata.augment_volume``, ``realdata.random_rotation_grid``),
  left-right slice-order flips, random SI windows (``crop_si``) for CPU-sized batches.

All randomness comes from one seed.  CPU threads follow ``torch.set_num_threads``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spinecensus.io import atomic_path
from spinecensus.segment.model import ModelSpec, neighbour_index, normalise_volume, plan_geometry
from spinecensus.split.instances import split_instances
from spinecensus.train import realdata as rd

if TYPE_CHECKING:
    import torch


@dataclass
class TrainVolume:
    """One training volume resampled in-plane to the model's spacing.

    Attributes:
        image: float32 ``[slice, SI, AP]`` raw intensities on the resampled grid.
        codes: uint8 loss codes (``realdata.CODE_*``) on the same grid.
        key: subject id; kind: ``"real"`` or ``"synthetic"``.
        dataset: the real scan's dataset (manifest column; what
            ``BatchConfig.dataset_weights`` names), "" for synthetic volumes.
        fg_slices: slice indices holding annotated foreground (sampled preferentially).
    """

    image: np.ndarray
    codes: np.ndarray
    key: str
    kind: str = "real"
    fg_slices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: mean AP column of the annotated structures (centre of AP training windows)
    ap_centre: int = 0
    dataset: str = ""


def prepare_volume(
    image: np.ndarray,
    codes: np.ndarray,
    spacing_mm: tuple[float, float, float],
    spec: ModelSpec,
    key: str,
    kind: str = "real",
    dataset: str = "",
) -> TrainVolume:
    """Resample a canonical volume and its codes in-plane to ``spec.target_spacing_mm``
    (bilinear image, nearest codes), exactly as ``model.plan_geometry`` does at inference."""
    import torch
    import torch.nn.functional as F

    geo = plan_geometry(image.shape[1:], (spacing_mm[1], spacing_mm[2]), spec)
    img = torch.from_numpy(np.asarray(image, dtype=np.float32))[:, None]
    cod = torch.from_numpy(np.asarray(codes, dtype=np.uint8).astype(np.float32))[:, None]
    if geo.resampled != geo.native:
        img = F.interpolate(img, size=geo.resampled, mode="bilinear", align_corners=False)
        cod = F.interpolate(cod, size=geo.resampled, mode="nearest-exact")
    c = cod[:, 0].numpy().astype(np.uint8)
    fg = (c == rd.CODE_BODY) | (c == rd.CODE_DISC)
    return TrainVolume(
        image=img[:, 0].numpy(),
        codes=c,
        key=key,
        kind=kind,
        fg_slices=np.nonzero(fg.reshape(len(c), -1).any(1))[0],
        ap_centre=int(np.nonzero(fg)[2].mean()) if fg.any() else c.shape[2] // 2,
        dataset=dataset,
    )


# --------------------------------------------------------------------------- loss


def partial_label_loss(
    logits: torch.Tensor, codes: torch.Tensor, dice_weight: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Partial-label cross-entropy + masked soft Dice.

    Args:
        logits: ``(B, C, H, W)``.
        codes: ``(B, H, W)`` uint8/long loss codes (``realdata.CODE_ALLOWED``).
    Returns:
        (loss, {"ce": ..., "dice": ...}).
    """
    import torch

    n_cls = logits.shape[1]
    table = torch.from_numpy(rd.allowed_table(n_cls)).to(logits.device)
    allowed = table[codes.long()].permute(0, 3, 1, 2)  # (B, C, H, W)
    supervised = codes != rd.CODE_UNKNOWN
    logp = torch.log_softmax(logits.float(), dim=1)
    # -log sum_{c allowed} p_c : the merged classes share one likelihood (see module doc)
    nll = -torch.logsumexp(logp.masked_fill(~allowed, -math.inf), dim=1)
    n_sup = supervised.sum()
    ce = (nll * supervised).sum() / n_sup.clamp(min=1)
    prob = logp.exp()
    single = allowed.sum(1, keepdim=True) == 1
    pos = allowed & single  # known positive for class c
    known = pos | ~allowed  # known positive or known negative for class c
    dims = (0, 2, 3)
    inter = (prob * pos).sum(dims)
    denom = (prob * known).sum(dims) + pos.sum(dims)
    dice = (2 * inter + 1.0) / (denom + 1.0)
    has_pos = pos.sum(dims) > 0
    has_pos[0] = False  # foreground classes only
    dice_loss = (1 - dice[has_pos]).mean() if bool(has_pos.any()) else ce * 0
    loss = ce + dice_weight * dice_loss
    return loss, {"ce": float(ce.detach()), "dice": float(dice_loss.detach())}


# --------------------------------------------------------------------------- batches


@dataclass
class BatchConfig:
    """How batches are drawn.

    Attributes:
        batch_size: slices per step.
        volumes_per_step: distinct volumes per step (each augmented once per step).
        crop_si: SI window (rows on the model grid, a multiple of the network stride) drawn
            at random per slice; None = the model's full ``input_size``.
        crop_ap: AP window (columns, multiple of the stride) around the annotated
            structures' AP centre, jittered by +- a quarter window; None = the model's full
            width, centred as at inference.
        real_fraction: probability that a drawn volume is real (rest synthetic) when both
            pools are given.
        fg_fraction: probability of drawing a slice with annotated foreground.
        dataset_weights: relative chance of drawing a real volume by its
            ``TrainVolume.dataset``, e.g. ``{"IVD": 3}``; unlisted datasets weigh 1, None =
            every real volume equally likely.  Only the IVD scans annotate discs (2 of a
            fold's 13-16 training scans), so weighting them up gives discs more direct
            supervision (docs/real_mri.md, fifth run: x3 moved disc Dice by < 0.01).
    """

    batch_size: int = 8
    volumes_per_step: int = 4
    crop_si: int | None = 160
    crop_ap: int | None = 128
    real_fraction: float = 0.75
    fg_fraction: float = 0.8
    dataset_weights: dict[str, float] | None = None


def _draw_volume(
    pool: Sequence[TrainVolume], rng: np.random.Generator, weights: dict[str, float] | None
) -> TrainVolume:
    if not weights or pool[0].kind != "real":
        return pool[int(rng.integers(len(pool)))]
    w = np.array([float(weights.get(v.dataset, 1.0)) for v in pool])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"dataset_weights {weights} leave no real volume to draw")
    return pool[int(rng.choice(len(pool), p=w / w.sum()))]


def make_batch(
    real: Sequence[TrainVolume],
    synthetic: Sequence[TrainVolume],
    spec: ModelSpec,
    rng: np.random.Generator,
    bcfg: BatchConfig,
    acfg: rd.AugmentConfig | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw an augmented batch: ``x (B, 3, H, W)`` float32 and ``codes (B, H, W)`` uint8.

    ``acfg=None`` disables augmentation (validation-style batches).
    """
    import torch
    import torch.nn.functional as F

    h_full, w = spec.input_size or (384, 160)
    h = bcfg.crop_si or h_full
    w = bcfg.crop_ap or w
    xs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    per_vol = int(math.ceil(bcfg.batch_size / bcfg.volumes_per_step))
    for _ in range(bcfg.volumes_per_step):
        use_real = bool(real) and (not synthetic or rng.random() < bcfg.real_fraction)
        pool = real if use_real else synthetic
        vol = _draw_volume(pool, rng, bcfg.dataset_weights)
        img = vol.image
        if acfg is not None:
            img = rd.augment_volume(img, rng, acfg)
        img = normalise_volume(img)
        codes = vol.codes
        if acfg is not None and rng.random() < acfg.flip_lr:
            # left-right slice order: the neighbour channels swap sides
            img, codes = img[::-1], codes[::-1]
            fg_sl = len(codes) - 1 - vol.fg_slices
        else:
            fg_sl = vol.fg_slices
        n_sl = img.shape[0]
        use_fg = rng.random(per_vol) < bcfg.fg_fraction
        ks = np.where(
            use_fg & (len(fg_sl) > 0),
            fg_sl[rng.integers(max(len(fg_sl), 1), size=per_vol)] if len(fg_sl) else 0,
            rng.integers(n_sl, size=per_vol),
        )
        idx = neighbour_index(n_sl)[ks]  # (per_vol, 3)
        x = img[idx]  # (per_vol, 3, SI, AP)
        c = codes[ks]  # (per_vol, SI, AP)
        # window: random SI offset, centred AP (as inference); pad with 0 / unknown
        si, ap = x.shape[2:]
        out_x = np.zeros((per_vol, 3, h, w), dtype=np.float32)
        out_c = np.full((per_vol, h, w), rd.CODE_UNKNOWN, dtype=np.uint8)
        a_len = min(ap, w)
        a_src, a_dst = (ap - a_len) // 2, (w - a_len) // 2
        if bcfg.crop_ap and ap > w:
            jitter = int(rng.integers(-w // 4, w // 4 + 1))
            a_src = int(np.clip(vol.ap_centre - w // 2 + jitter, 0, ap - w))
        s_len = min(si, h)
        s_src = int(rng.integers(0, si - s_len + 1))
        s_dst = int(rng.integers(0, h - s_len + 1))
        out_x[:, :, s_dst : s_dst + s_len, a_dst : a_dst + a_len] = x[
            :, :, s_src : s_src + s_len, a_src : a_src + a_len
        ]
        out_c[:, s_dst : s_dst + s_len, a_dst : a_dst + a_len] = c[
            :, s_src : s_src + s_len, a_src : a_src + a_len
        ]
        # padded area of a real scan is background at inference (forced) — teach it so
        inside = np.zeros((h, w), dtype=bool)
        inside[s_dst : s_dst + s_len, a_dst : a_dst + a_len] = True
        if si <= h:
            out_c[:, ~inside] = rd.CODE_BG
        xs.append(out_x)
        cs.append(out_c)
    x_t = torch.from_numpy(np.concatenate(xs)[: bcfg.batch_size])
    c_t = torch.from_numpy(np.concatenate(cs)[: bcfg.batch_size])
    if acfg is not None and (acfg.rotation_deg > 0 or acfg.zoom > 0):
        grid = rd.random_rotation_grid(len(x_t), (h, w), rng, acfg)
        x_t = F.grid_sample(x_t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # codes + 1 so that "outside the rotated image" (0 after sampling) becomes unknown
        c1 = (c_t.float() + 1)[:, None]
        c1 = F.grid_sample(c1, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        c_i = c1[:, 0].round().long() - 1
        c_t = torch.where(c_i < 0, rd.CODE_UNKNOWN, c_i).to(torch.uint8)
    return x_t, c_t


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """Optimiser schedule and batching for :func:`train_partial`."""

    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    #: wall-clock budget (s); None = exactly ``steps`` steps.  With a budget the cosine decay
    #: follows ``max(step / steps, elapsed / max_seconds)`` and training stops when that
    #: reaches 1, so a run on a busy machine still ends annealed and on time
    max_seconds: float | None = None
    dice_weight: float = 1.0
    seed: int = 0
    log_every: int = 25
    batch: BatchConfig = field(default_factory=BatchConfig)
    augment: rd.AugmentConfig = field(default_factory=rd.AugmentConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        d = dict(d or {})
        batch = BatchConfig(**d.pop("batch", {}) or {})
        aug = rd.AugmentConfig.from_dict(d.pop("augment", None))
        return cls(**d, batch=batch, augment=aug)


def train_partial(
    net: torch.nn.Module,
    spec: ModelSpec,
    real: Sequence[TrainVolume],
    synthetic: Sequence[TrainVolume] = (),
    cfg: TrainConfig | None = None,
    device: str = "cpu",
    log: Callable[[str], None] = print,
    amp: str | None = "auto",
) -> list[dict[str, float]]:
    """Train ``net`` in place with the partial-label loss; returns the per-step log.

    AdamW with linear warm-up and cosine decay.  Seeded: the same inputs, config and torch
    build give the same weights on CPU.  ``amp``: ``"bf16"`` autocast + channels_last,
    None (fp32) or ``"auto"`` = bf16 on CUDA and on CPUs with native bf16 matmuls (about
    3x faster on this project's AMX CPU at the same Dice; see
    ``spinecensus.train.training.train_network``); the loss is always computed in fp32.
    """
    import torch

    from spinecensus.train.training import training_uses_bf16

    cfg = cfg or TrainConfig()
    if not real and not synthetic:
        raise ValueError("no training volumes")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    use_bf16 = training_uses_bf16(amp, device)
    net.to(device).train()
    if use_bf16:
        net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    t0 = time.perf_counter()

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        if cfg.max_seconds:
            t = max(t, (time.perf_counter() - t0) / cfg.max_seconds)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history: list[dict[str, float]] = []
    for step in range(cfg.steps):
        x, codes = make_batch(real, synthetic, spec, rng, cfg.batch, cfg.augment)
        x, codes = x.to(device), codes.to(device)
        if use_bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=use_bf16):
            logits = net(x)
        loss, parts = partial_label_loss(logits.float(), codes, cfg.dice_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        rec = {"step": step, "loss": float(loss.detach()), **parts}
        history.append(rec)
        out_of_time = bool(cfg.max_seconds) and time.perf_counter() - t0 >= cfg.max_seconds
        last = step == cfg.steps - 1 or out_of_time
        if cfg.log_every and (step % cfg.log_every == 0 or last):
            el = time.perf_counter() - t0
            log(
                f"step {step + 1}/{cfg.steps} loss {rec['loss']:.4f} (ce {parts['ce']:.4f} "
                f"dice {parts['dice']:.4f}) {el:.0f}s"
            )
        if out_of_time:
            break
    net.eval().to(memory_format=torch.contiguous_format)
    return history


# --------------------------------------------------------------------------- pipeline

#: presets for ``train_real.size``; explicit keys override them
REAL_PRESETS: dict[str, dict[str, Any]] = {
    # CPU, a few minutes per variant with 2 threads
    "ci": {"steps": 250, "n_synthetic": 8, "n_synthetic_eval": 3, "synthetic_preset": "default"},
    "gpu": {
        "steps": 20_000,
        "n_synthetic": 200,
        "n_synthetic_eval": 20,
        "synthetic_preset": "default",
        "batch": {"batch_size": 32, "volumes_per_step": 8, "crop_si": None, "crop_ap": None},
    },
}
#: synthetic subject seeds for mixing / evaluation (disjoint from spinecensus.train.training's)
SYNTH_TRAIN_OFFSET = 700_000
SYNTH_EVAL_OFFSET = 800_000


@dataclass
class RealRunConfig:
    """Resolved ``train_real:`` config (see ``workflow/rules/train_real.smk``)."""

    size: str = "ci"
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    root: str = str(rd.DEFAULT_ROOT)
    val_fraction: float = 0.34
    #: cross-validation fold whose subjects are the validation side (0 .. n_folds - 1,
    #: ``realdata.n_folds(val_fraction)``; 0 = the split the shipped real weights used)
    fold: int = 0
    steps: int = 300
    lr: float = 1e-3
    finetune_lr: float = 5e-4
    n_synthetic: int = 8
    n_synthetic_eval: int = 3
    synthetic_preset: str = "default"
    #: weights a "pretrained" variant starts from ("" = the shipped default weights)
    pretrained: str = ""
    #: share of real volumes in the mixed variants' batches (None = the variant's own, 0.75)
    real_fraction: float | None = None
    #: wall-clock budget per variant (s); None = exactly ``steps`` steps
    max_seconds: float | None = None
    batch: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    log_every: int = 25
    #: label the gap between consecutive annotated bodies as disc and between consecutive
    #: annotated discs as body (``realdata.target_codes(fill_between=...)``)
    fill_between_levels: bool = True
    #: mm next to each annotated body left out of that disc fill (the endplates, which the
    #: disc masks exclude; ``realdata.DISC_FILL_MARGIN_MM``).  0 = the whole gap, the
    #: recipe of sessions 2-5, which taught discs about 1.5x too high.
    disc_fill_margin_mm: float = rd.DISC_FILL_MARGIN_MM
    #: mm beyond the end structures' outer faces taught as "not that class"
    #: (``realdata.END_FACE_MM``); 0 = no loss there
    end_face_mm: float = rd.END_FACE_MM
    #: mm above the first / below the last annotated disc taught as body (L1, S1;
    #: ``realdata.END_BODY_MM``); 0 = off
    end_body_mm: float = rd.END_BODY_MM
    #: in-plane (SI, AP) spacing in mm of the network grid; None = that of the pretrained
    #: weights (2 mm).  An expert disc mask is 5-8 mm high, so a 2 mm grid alone caps disc
    #: Dice at about 0.92 on the IVD scans (the expert masks area-averaged to 2 mm and back);
    #: 1 mm is the real scans' own in-plane spacing.  The input size keeps its extent in
    #: mm.  (A 1 mm fine-tune did not raise disc Dice: docs/real_mri.md, fifth run.)
    target_spacing_mm: list[float] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RealRunConfig:
        d = dict(d or {})
        preset = REAL_PRESETS.get(str(d.get("size", "ci")), REAL_PRESETS["ci"])
        merged = {**preset, **d}
        merged["batch"] = {**preset.get("batch", {}), **(d.get("batch") or {})}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in merged.items() if k in known})

    def pretrained_path(self) -> Path:
        from spinecensus.segment.model import DEFAULT_SEGMENTATION_WEIGHTS

        return Path(self.pretrained) if self.pretrained else DEFAULT_SEGMENTATION_WEIGHTS


#: the study's variants: how the network starts and which data it sees (same budget)
VARIANTS: dict[str, dict[str, Any]] = {
    # random init, real scans only
    "real_only": {"init": "scratch", "real_fraction": 1.0},
    # random init, real scans mixed with synthetic ones (no pretraining)
    "scratch_mixed": {"init": "scratch", "real_fraction": 0.75},
    # shipped synthetic weights, then the same mixed training (the generator study)
    "pretrained_mixed": {"init": "pretrained", "real_fraction": 0.75},
}


def _synthetic_subject(cfg: RealRunConfig, seed: int) -> Any:
    from spinecensus.synthetic import generator as synthetic

    return synthetic.generate_subject(
        seed, config=synthetic.SyntheticConfig.preset(cfg.synthetic_preset)
    )


def load_real_split(cfg: RealRunConfig) -> tuple[list[rd.LoadedSample], list[rd.LoadedSample]]:
    """Load the manifest and return (train, validation) loaded samples (patient-level split)."""
    samples = rd.load_manifest(cfg.root)
    train, val = rd.split_subjects(samples, cfg.val_fraction, cfg.seed, cfg.fold)
    rd.check_split(train, val)
    return [s.load() for s in train], [s.load() for s in val]


def base_spec(cfg: RealRunConfig) -> ModelSpec:
    """Architecture of every variant: that of the pretrained weights (so that "scratch" and
    "pretrained" differ only in their initial values), else the training defaults."""
    from spinecensus.segment.model import read_spec

    spec = read_spec(cfg.pretrained_path()) if cfg.pretrained_path().exists() else None
    if spec is None:
        from spinecensus.train.training import SEGMENTATION_DEFAULTS

        spec = ModelSpec.from_config(dict(SEGMENTATION_DEFAULTS), "segmentation")
    spec = ModelSpec.from_dict(spec.to_dict())
    spec.training, spec.metrics, spec.sha256, spec.git_commit = {}, {}, None, None
    if cfg.target_spacing_mm is not None:
        new = (float(cfg.target_spacing_mm[0]), float(cfg.target_spacing_mm[1]))
        if spec.input_size is not None and spec.target_spacing_mm is not None:
            # same field of view in mm, rounded up to the network stride
            spec.input_size = tuple(  # type: ignore[assignment]
                int(math.ceil(n * old / t / spec.stride) * spec.stride)
                for n, old, t in zip(spec.input_size, spec.target_spacing_mm, new, strict=True)
            )
        spec.target_spacing_mm = new
    return spec


def train_real_variant(
    config: dict[str, Any] | None, variant: str, out: str | os.PathLike[str]
) -> Path:
    """Train one study variant (:data:`VARIANTS`) and write ``out`` (.pt + .json sidecar).

    The sidecar's ``training`` records exactly which data trained it: the real subjects
    (dataset_subject keys), the synthetic seeds, the initial weights and their sha256.
    """
    import torch

    from spinecensus.segment.model import build_network, load_network, save_weights, sha256_file

    cfg = RealRunConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    v = VARIANTS[variant]
    spec = base_spec(cfg)
    t0 = time.perf_counter()
    train, _val = load_real_split(cfg)
    codes = {
        "fill_between": cfg.fill_between_levels,
        "disc_fill_margin_mm": cfg.disc_fill_margin_mm,
        "end_face_mm": cfg.end_face_mm,
        "end_body_mm": cfg.end_body_mm,
    }
    real = [
        prepare_volume(
            s.scan.data,
            rd.target_codes(s, **codes),
            s.spacing_mm,
            spec,
            s.meta.key,
            dataset=s.meta.dataset,
        )
        for s in train
    ]
    synth: list[TrainVolume] = []
    seeds = [cfg.seed * 1_000_000 + SYNTH_TRAIN_OFFSET + i for i in range(cfg.n_synthetic)]
    if v["real_fraction"] < 1.0:
        for sd in seeds:
            sub = _synthetic_subject(cfg, sd)
            synth.append(
                prepare_volume(
                    sub.image, rd.full_codes(sub.semantic), sub.spacing_mm, spec,
                    f"synthetic_{sd}", "synthetic",
                )
            )  # fmt: skip
    init_info: dict[str, Any] = {"init": v["init"]}
    if v["init"] == "pretrained":
        net, init_spec = load_network(cfg.pretrained_path())
        init_info |= {
            "init_weights": cfg.pretrained_path().name,
            "init_sha256": sha256_file(cfg.pretrained_path()),
        }
        # the start's own training record, so that a chain of fine-tunes still says exactly
        # which data trained the result
        if init_spec.training:
            init_info["init_training"] = init_spec.training
        lr = cfg.finetune_lr
    else:
        torch.manual_seed(cfg.seed)
        net = build_network(spec)
        lr = cfg.lr
    real_fraction = v["real_fraction"]
    if cfg.real_fraction is not None and 0.0 < real_fraction < 1.0:
        real_fraction = float(cfg.real_fraction)
    bdict = {**cfg.batch, "real_fraction": real_fraction}
    tcfg = TrainConfig(
        steps=cfg.steps, lr=lr, seed=cfg.seed, log_every=cfg.log_every,
        max_seconds=cfg.max_seconds,
        batch=BatchConfig(**bdict), augment=rd.AugmentConfig.from_dict(cfg.augment),
    )  # fmt: skip
    import logging

    logger = logging.getLogger("spinecensus.train.realtrain")
    hist = train_partial(net, spec, real, synth, tcfg, cfg.device, log=logger.info)
    spec.training = {
        **init_info,
        "variant": variant,
        "data": "public annotated real MRI (../shared/data/real, partial labels: VB1/VB2/VB3 "
        "vertebral bodies, IVD discs; partial-label loss)"
        + (" mixed with synthetic subjects (spinecensus.synthetic.generator)" if synth else ""),
        "real_train_subjects": [s.meta.key for s in train],
        "real_validation_subjects": [s.meta.key for s in _val],
        "fold": cfg.fold,
        "synthetic_seeds": seeds if synth else [],
        "synthetic_preset": cfg.synthetic_preset if synth else None,
        "real_fraction": real_fraction,
        "fill_between_levels": cfg.fill_between_levels,
        "disc_fill_margin_mm": cfg.disc_fill_margin_mm,
        "end_face_mm": cfg.end_face_mm,
        "end_body_mm": cfg.end_body_mm,
        "steps": len(hist),
        "max_seconds": cfg.max_seconds,
        "lr": lr,
        "batch": dataclasses_asdict(tcfg.batch),
        "augment": dataclasses_asdict(tcfg.augment),
        "seed": cfg.seed,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "final_loss": float(np.mean([h["loss"] for h in hist[-20:]])),
    }
    out = Path(out)
    save_weights(net, spec, out)
    logger.info("%s done in %.0f s -> %s", variant, time.perf_counter() - t0, out)
    return out


def dataclasses_asdict(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(obj)


def synthetic_dice(model: Any, cfg: RealRunConfig, model_name: str) -> list[dict[str, Any]]:
    """Body and disc Dice on fresh synthetic subjects (never used in training); rows for the
    evaluation table, dataset ``synthetic``."""
    from spinecensus.naming import labeling
    from spinecensus.train.realeval import dice

    rows = []
    for i in range(cfg.n_synthetic_eval):
        sd = cfg.seed * 1_000_000 + SYNTH_EVAL_OFFSET + i
        sub = _synthetic_subject(cfg, sd)
        predict = getattr(model, "predict_semantic", model.predict)
        pred = predict(np.asarray(sub.image, dtype=np.float32), sub.spacing_mm)
        sem = np.asarray(sub.semantic)
        split = split_instances(np.asarray(pred, dtype=np.uint8), sub.spacing_mm)
        anchor = labeling.names_up_from_sacrum(split.kinds, split.voxel_counts)
        rows.append(
            {
                "model": model_name,
                "dataset": "synthetic",
                "subject": f"synthetic_{sd}",
                "split": "evaluation",
                "annotated": "vertebra+disc",
                "body_dice": dice(pred == 1, sem == 1),
                "disc_dice": dice(pred == 2, sem == 2),
                "body_dice_raw": dice(pred == 1, sem == 1),
                "disc_dice_raw": dice(pred == 2, sem == 2),
                "n_annotated": 0,
                "n_detected": 0,
                "split_valid": bool(split.valid),
                "invalid_reason": split.invalid_reason or "",
                "n_pred_vertebrae": split.n_vertebrae,
                "n_pred_discs": split.n_discs,
                "sacrum_anchor": anchor is not None,
                "levels_known": False,
                "n_named_correct": 0,
                "n_named_wrong": 0,
                "label_accuracy": math.nan,
                "misses": "",
            }
        )
    return rows


def evaluate_real(
    config: dict[str, Any] | None,
    weights: dict[str, str | os.PathLike[str]],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    qc_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Evaluate models on the validation subjects (and fresh synthetic subjects).

    Writes ``out_table`` (Parquet: one row per subject and model, incl. synthetic rows),
    ``<out_table stem>_levels.parquet`` (one row per annotated level), ``<stem>_summary
    .parquet`` and ``out_markdown`` (per-dataset summary with misses).  Returns the summary.
    """
    import logging

    import pandas as pd
    import torch

    from spinecensus.segment.model import load_model
    from spinecensus.train import realeval

    logger = logging.getLogger("spinecensus.train.realtrain")
    cfg = RealRunConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    _train, val = load_real_split(cfg)
    subj, lev = [], []
    for name, path in weights.items():
        model = load_model(path, device=cfg.device, threads=cfg.threads)
        s_df, l_df, preds = realeval.evaluate_model(model, val, name, "validation")
        s_df = pd.concat([s_df, pd.DataFrame(synthetic_dice(model, cfg, name))])
        subj.append(s_df)
        lev.append(l_df)
        if qc_dir is not None:
            for s in val:
                realeval.qc_png(
                    s, preds[s.meta.key], str(Path(qc_dir) / f"{name}_{s.meta.key}.png"), name
                )
        logger.info("evaluated %s", name)
    subjects = pd.concat(subj, ignore_index=True)
    levels = pd.concat(lev, ignore_index=True)
    summary = realeval.summarise(subjects)
    header = [
        "# Real MRI evaluation (validation subjects; `synthetic` rows: fresh synthetic subjects)",
        "",
        f"Validation subjects: {', '.join(s.meta.key for s in val)}. "
        f"Config size `{cfg.size}`, seed {cfg.seed}.",
    ]
    write_evaluation(subjects, levels, summary, out_table, out_markdown, header)
    return summary


def write_evaluation(
    subjects: Any,
    levels: Any,
    summary: Any,
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    header: list[str],
) -> None:
    """Write an evaluation atomically: ``out_table`` (subjects), ``<stem>_levels.parquet``,
    ``<stem>_summary.parquet`` and ``out_markdown`` (``header`` lines, the summary table,
    then the misses per model and dataset)."""
    from spinecensus.train import realeval

    stem = Path(out_table).with_suffix("")
    for df, path in (
        (subjects, Path(out_table)),
        (levels, Path(f"{stem}_levels.parquet")),
        (summary, Path(f"{stem}_summary.parquet")),
    ):
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    text = [
        *header,
        "",
        realeval.markdown_table(summary),
        "",
        "## Misses (undetected or misnamed annotated levels)",
        "",
        *(f"- **{r.model} / {r.dataset}**: {r.misses}" for r in summary.itertuples() if r.misses),
    ]
    with atomic_path(out_markdown) as tmp:
        tmp.write_text("\n".join(text) + "\n")


def evaluate_real_cv(
    config: dict[str, Any] | None,
    fold_weights: dict[int, str | os.PathLike[str]],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
    baseline: dict[str, str | os.PathLike[str]] | None = None,
    model_name: str = "cross_validated",
) -> Any:
    """Cross-validated evaluation: fold ``f``'s weights predict fold ``f``'s validation
    subjects (``realdata.split_subjects(..., fold=f)``), so every real subject is judged by a
    model that never trained on it.

    ``fold_weights`` must name every fold ``0 .. n_folds - 1``.  ``baseline`` models (e.g.
    the synthetic-only weights, which trained on no real scan) are evaluated on every subject
    beside them.  Writes ``out_table`` (Parquet, one row per subject and model; ``split`` =
    ``fold<k>`` or ``all``), ``<stem>_levels.parquet``, ``<stem>_summary.parquet`` (per
    dataset and pooled over all real subjects) and ``out_markdown``.  Returns the summary.
    """
    import logging

    import pandas as pd
    import torch

    from spinecensus.segment.model import load_model
    from spinecensus.train import realeval

    logger = logging.getLogger("spinecensus.train.realtrain")
    cfg = RealRunConfig.from_dict(config)
    torch.set_num_threads(max(1, int(cfg.threads)))
    k = rd.n_folds(cfg.val_fraction)
    missing = sorted(set(range(k)) - set(fold_weights))
    if missing:
        raise ValueError(f"cross-validation needs weights for folds {missing} (of 0..{k - 1})")
    samples = rd.load_manifest(cfg.root)
    # each scan read once: the folds share them out, the baselines judge them all
    loaded = {s.key: s.load() for s in samples}
    subj, lev, folds_md = [], [], []
    for fold in range(k):
        train, val = rd.split_subjects(samples, cfg.val_fraction, cfg.seed, fold)
        rd.check_split(train, val)
        model = load_model(fold_weights[fold], device=cfg.device, threads=cfg.threads)
        s_df, l_df, _ = realeval.evaluate_model(
            model, [loaded[s.key] for s in val], model_name, f"fold{fold}"
        )
        subj.append(s_df)
        lev.append(l_df)
        folds_md.append(f"- fold {fold}: `{fold_weights[fold]}` judged "
                        f"{', '.join(s.key for s in val)}")  # fmt: skip
        logger.info("evaluated fold %d (%d subjects)", fold, len(val))
    for name, path in (baseline or {}).items():
        model = load_model(path, device=cfg.device, threads=cfg.threads)
        s_df, l_df, _ = realeval.evaluate_model(model, list(loaded.values()), name, "all")
        subj.insert(0, s_df)
        lev.insert(0, l_df)
        logger.info("evaluated baseline %s", name)
    return write_cv_evaluation(
        pd.concat(subj, ignore_index=True),
        pd.concat(lev, ignore_index=True),
        f"# Real MRI, {k}-fold cross-validation (patient-level folds, seed {cfg.seed})",
        ["Each subject is judged by the fold model that did not train on it:", "", *folds_md],
        out_table,
        out_markdown,
    )


def write_cv_evaluation(
    subjects: Any,
    levels: Any,
    title: str,
    intro: list[str],
    out_table: str | os.PathLike[str],
    out_markdown: str | os.PathLike[str],
) -> Any:
    """Summarise a cross-validated evaluation per dataset and pooled over every real
    subject (``realeval.summarise``), write it (:func:`write_evaluation`, under ``title``
    and the ``intro`` lines) and return the summary."""
    from spinecensus.train import realeval

    summary = realeval.summarise(subjects, pooled=True)
    write_evaluation(subjects, levels, summary, out_table, out_markdown, [title, "", *intro])
    return summary


__all__ = [
    "VARIANTS",
    "evaluate_real_cv",
    "write_cv_evaluation",
    "write_evaluation",
    "BatchConfig",
    "RealRunConfig",
    "evaluate_real",
    "train_real_variant",
    "TrainConfig",
    "TrainVolume",
    "make_batch",
    "partial_label_loss",
    "prepare_volume",
    "train_partial",
]
