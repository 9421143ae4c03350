"""MRI augmentations of real (and synthetic) training volumes.

Seeded numpy / torch operations on whole canonical volumes ``[slice, SI, AP]`` or batches
(no Python loop over voxels or slices): intensity changes (:func:`augment_volume`) and an
in-plane rotation and zoom (:func:`random_rotation_grid`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class AugmentConfig:
    """MRI augmentation strengths (all seeded by the caller's generator).

    Attributes:
        scale: range of a global intensity gain (log-uniform).  A global gain alone is removed
            by the per-volume z-score, so ``slice_gain`` varies it per sagittal slice too.
        slice_gain: +- relative gain per sagittal slice (2-D multi-slice acquisitions vary).
        gamma: +- range of log(gamma) for ``x ** gamma`` on the [0, 1]-scaled volume.
        bias: +- amplitude of a smooth multiplicative bias field ``exp(quadratic)``.
        noise: max Rician noise sigma as a fraction of the volume's 99th percentile.
        rotation_deg: +- in-plane (sagittal) rotation in degrees.
        zoom: +- relative in-plane zoom.
        flip_lr: probability of reversing the left-right slice order.
    """

    scale: tuple[float, float] = (0.7, 1.4)
    slice_gain: float = 0.08
    gamma: float = 0.4
    bias: float = 0.3
    noise: float = 0.05
    rotation_deg: float = 8.0
    zoom: float = 0.1
    flip_lr: float = 0.5

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugmentConfig:
        d = dict(d or {})
        if "scale" in d:
            d["scale"] = tuple(d["scale"])
        return cls(**d)


def augment_volume(
    volume: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> np.ndarray:
    """Intensity augmentation of one canonical volume ``[slice, SI, AP]`` (float32 out).

    In order: global gain and per-slice gain, gamma, smooth bias field (a random quadratic
    in the three normalised coordinates, exponentiated), Rician noise
    (``sqrt((x + n1)^2 + n2^2)``, as magnitude MRI).  Vectorized over the volume.
    """
    cfg = cfg or AugmentConfig()
    v = np.asarray(volume, dtype=np.float32)
    p99 = float(np.percentile(v[:: max(1, v.shape[0] // 8)], 99.0)) or 1.0
    x = np.clip(v / p99, 0.0, None)
    gain = math.exp(rng.uniform(math.log(cfg.scale[0]), math.log(cfg.scale[1])))
    per_slice = 1.0 + rng.uniform(-cfg.slice_gain, cfg.slice_gain, size=(v.shape[0], 1, 1))
    x = x * np.float32(gain) * per_slice.astype(np.float32)
    gamma = math.exp(rng.uniform(-cfg.gamma, cfg.gamma))
    x = np.power(x, np.float32(gamma))
    if cfg.bias > 0:
        # smooth field: quadratic polynomial of normalised coordinates in [-1, 1]
        axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in v.shape]
        a = rng.uniform(-cfg.bias, cfg.bias, size=(3, 2)).astype(np.float32)
        terms = [a[i, 0] * ax + a[i, 1] * (ax * ax - 1.0 / 3.0) for i, ax in enumerate(axes)]
        field_ = terms[0][:, None, None] + terms[1][None, :, None] + terms[2][None, None, :]
        x = x * np.exp(field_)
    sigma = rng.uniform(0.0, cfg.noise)
    if sigma > 0:
        n1 = rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
        n2 = rng.normal(0.0, sigma, size=x.shape).astype(np.float32)
        x = np.sqrt((x + n1) ** 2 + n2**2)
    return (x * np.float32(p99)).astype(np.float32)


def random_rotation_grid(
    n: int, size: tuple[int, int], rng: np.random.Generator, cfg: AugmentConfig | None = None
) -> Any:
    """Sampling grids ``(n, H, W, 2)`` for ``torch.nn.functional.grid_sample``: a random
    in-plane rotation (+- ``rotation_deg``) and zoom (+- ``zoom``) per batch element."""
    import torch
    import torch.nn.functional as F

    cfg = cfg or AugmentConfig()
    ang = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg, size=n))
    zoom = 1.0 + rng.uniform(-cfg.zoom, cfg.zoom, size=n)
    h, w = size
    # rotation in physical proportions: normalised coords scale differently along H and W
    c, s = np.cos(ang) / zoom, np.sin(ang) / zoom
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = c
    theta[:, 0, 1] = -s * h / w
    theta[:, 1, 0] = s * w / h
    theta[:, 1, 1] = c
    return F.affine_grid(torch.from_numpy(theta), [n, 1, h, w], align_corners=False)


__all__ = ["AugmentConfig", "augment_volume", "random_rotation_grid"]
