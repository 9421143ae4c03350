"""Training batches of the partial-label loop: slices drawn from real and synthetic volumes.

Volumes (``spinecensus.train.real_volumes``) are drawn by pool and dataset weight, augmented
(``spinecensus.train.real_augment``), normalised as at inference, flipped left-right at
random; slices with annotated foreground are preferred; three adjacent slices form the
channels (``spinecensus.segment.preprocess.neighbour_index``).  Each slice is cut to a random SI
window (``crop_si``, for CPU-sized batches) and an AP window around the annotated structures,
then the batch is rotated and zoomed in-plane.  Canonical ``[slice, SI, AP]``; batches are
``(B, 3, SI, AP)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spinecensus.segment.preprocess import neighbour_index, normalise_volume
from spinecensus.segment.spec import ModelSpec
from spinecensus.train.real_augment import AugmentConfig, augment_volume, random_rotation_grid
from spinecensus.train.real_codes import CODE_BG, CODE_UNKNOWN
from spinecensus.train.real_volumes import TrainVolume

if TYPE_CHECKING:
    import torch


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
    acfg: AugmentConfig | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw an augmented batch: ``x (B, 3, H, W)`` float32 and ``codes (B, H, W)`` uint8.

    ``acfg=None`` disables augmentation (validation-style batches).
    """
    import torch

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
        x, c = _draw_slices(vol, per_vol, rng, bcfg, acfg)
        out_x, out_c = _window(vol, x, c, (h, w), rng, bcfg)
        xs.append(out_x)
        cs.append(out_c)
    x_t = torch.from_numpy(np.concatenate(xs)[: bcfg.batch_size])
    c_t = torch.from_numpy(np.concatenate(cs)[: bcfg.batch_size])
    if acfg is not None and (acfg.rotation_deg > 0 or acfg.zoom > 0):
        x_t, c_t = _rotate(x_t, c_t, (h, w), rng, acfg)
    return x_t, c_t


def _draw_slices(
    vol: TrainVolume,
    per_vol: int,
    rng: np.random.Generator,
    bcfg: BatchConfig,
    acfg: AugmentConfig | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``per_vol`` slices of one volume, augmented, normalised and perhaps flipped
    left-right: images ``(per_vol, 3, SI, AP)`` (three adjacent slices as channels) and
    their codes ``(per_vol, SI, AP)``; a slice with annotated foreground with probability
    ``bcfg.fg_fraction``."""
    img = vol.image
    if acfg is not None:
        img = augment_volume(img, rng, acfg)
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
    return img[idx], codes[ks]  # (per_vol, 3, SI, AP), (per_vol, SI, AP)


def _window(
    vol: TrainVolume,
    x: np.ndarray,
    c: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    bcfg: BatchConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut slices ``x (n, 3, SI, AP)`` and codes ``c (n, SI, AP)`` to the ``size`` (SI, AP)
    window: a random SI offset, the AP window centred as at inference or, with ``crop_ap``,
    around the annotated structures (jittered); padding is 0 in the image, unknown in the
    codes (background where the whole SI extent fits, as inference forces it)."""
    h, w = size
    per_vol = len(x)
    # window: random SI offset, centred AP (as inference); pad with 0 / unknown
    si, ap = x.shape[2:]
    out_x = np.zeros((per_vol, 3, h, w), dtype=np.float32)
    out_c = np.full((per_vol, h, w), CODE_UNKNOWN, dtype=np.uint8)
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
        out_c[:, ~inside] = CODE_BG
    return out_x, out_c


def _rotate(
    x_t: torch.Tensor,
    c_t: torch.Tensor,
    size: tuple[int, int],
    rng: np.random.Generator,
    acfg: AugmentConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate and zoom a batch in-plane (:func:`random_rotation_grid`): the image bilinear,
    the codes nearest; what the rotation brings in from outside the image is unknown."""
    import torch
    import torch.nn.functional as F

    grid = random_rotation_grid(len(x_t), size, rng, acfg)
    x_t = F.grid_sample(x_t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # codes + 1 so that "outside the rotated image" (0 after sampling) becomes unknown
    c1 = (c_t.float() + 1)[:, None]
    c1 = F.grid_sample(c1, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    c_i = c1[:, 0].round().long() - 1
    return x_t, torch.where(c_i < 0, CODE_UNKNOWN, c_i).to(torch.uint8)


__all__ = ["BatchConfig", "make_batch"]
