"""The training loop of both networks (:func:`train_network`): cross-entropy + soft Dice,
AdamW, linear warm-up + cosine decay, optional bf16 autocast; and when bf16 is used."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from spinecensus.io import atomic_path
from spinecensus.segment.network import build_network
from spinecensus.segment.spec import ModelSpec
from spinecensus.segment.weights import load_network
from spinecensus.train.slice_bank import SliceBank, sample_batch

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def dice_loss(
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
    the bank must be built with the same value, :func:`~spinecensus.train.slice_bank.to_bank`).
    """
    import torch

    if len(bank.index) == 0:
        raise ValueError(f"{name}: no training slice contains foreground")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    use_bf16 = training_uses_bf16(amp, device)
    net = _initial_network(spec, device, init_weights, name)
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
        for group in opt.param_groups:
            group["lr"] = _scheduled_lr(lr, progress)
        x, y = sample_batch(bank, rng, batch_size, crop, ignore_index)
        loss = _optimiser_step(net, opt, x, y, device, use_bf16, ce_weight, ignore_index)
        losses.append(loss)
        progress = _progress(step, steps, t0, max_seconds)
        last = progress >= 1.0 or step == steps
        if step % log_every == 0 or last:
            rows.append(_log_progress(name, step, steps, losses[-log_every:], t0))
        if last:
            break
    if log_path is not None:
        with atomic_path(log_path) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
    return net.eval().cpu().to(memory_format=torch.contiguous_format), losses


def _initial_network(
    spec: ModelSpec, device: str, init_weights: str | os.PathLike[str] | None, name: str
) -> torch.nn.Module:
    """A fresh network from ``spec``, or the ``init_weights`` one (same architecture and
    classes, else ValueError), on ``device`` in training mode."""
    if init_weights is None:
        return build_network(spec).to(device).train()
    net, init_spec = load_network(init_weights)

    def arch(s: ModelSpec) -> tuple:
        return s.n_classes, s.encoder, s.encoder_depth, tuple(s.decoder_channels)

    if arch(init_spec) != arch(spec):
        raise ValueError(f"{name}: init_weights {init_weights} do not match the spec")
    return net.to(device).train()


def _scheduled_lr(lr: float, progress: float) -> float:
    """Learning rate at ``progress`` (0..1): warm-up over the first 10 %, then cosine decay
    to 1 % of ``lr``."""
    return lr * (
        progress / 0.1 + 0.01
        if progress < 0.1
        else 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (progress - 0.1) / 0.9))
    )


def _optimiser_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    device: str,
    use_bf16: bool,
    ce_weight: torch.Tensor | None,
    ignore_index: int | None,
) -> float:
    """One AdamW step on the batch ``(x, y)``; returns its loss.  The forward pass runs under
    bf16 autocast when ``use_bf16``; the loss is always computed in fp32."""
    import torch

    x, y = x.to(device), y.to(device)
    if use_bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=use_bf16):
        logits = net(x)
    logits = logits.float()
    ce = torch.nn.functional.cross_entropy(
        logits, y, weight=ce_weight, ignore_index=-100 if ignore_index is None else ignore_index
    )
    loss = ce + dice_loss(logits, y, ignore_index)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _progress(step: int, steps: int, t0: float, max_seconds: float | None) -> float:
    """Share of the run done: steps done, or the wall-clock share of ``max_seconds`` when
    that is larger."""
    progress = step / steps
    if max_seconds:
        progress = max(progress, (time.perf_counter() - t0) / max_seconds)
    return progress


def _log_progress(name: str, step: int, steps: int, recent: list[float], t0: float) -> str:
    """Log the mean of the ``recent`` losses; returns the TSV row (step, loss, seconds)."""
    mean = float(np.mean(recent))
    el = time.perf_counter() - t0
    log.info("%s step %d/%d loss %.4f (%.0f s)", name, step, steps, mean, el)
    return f"{step}\t{mean:.5f}\t{el:.1f}"


def training_uses_bf16(amp: str | None, device: str) -> bool:
    """A training loop's ``amp`` setting resolved: ``"bf16"`` yes, None no, ``"auto"`` =
    where bf16 is fast (:func:`bf16_is_fast`)."""
    return amp == "bf16" or (amp == "auto" and bf16_is_fast(device))


def bf16_is_fast(device: str = "cpu") -> bool:
    """True on CUDA and on CPUs with native bf16 matmuls (AVX512-BF16 or AMX), as torch
    reports them (:func:`spinecensus.segment.runners.native_bf16`)."""
    import torch

    from spinecensus.segment.runners import native_bf16

    if torch.device(device).type == "cuda":
        return True
    return native_bf16(device)
