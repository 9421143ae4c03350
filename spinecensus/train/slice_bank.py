"""Training slices on the network grid (:class:`SliceBank`) and the random batches drawn
from them.

Volumes come in the package's canonical voxel order (``spinecensus.io``: axis 0 sagittal
slice, axis 1 superior -> inferior, axis 2 anterior -> posterior) with ``spacing_mm`` in that
order; each sagittal slice is resampled in-plane (SI x AP) onto the network grid once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spinecensus.segment.grid import plan_geometry, to_network_grid
from spinecensus.segment.preprocess import neighbour_index, normalise_volume
from spinecensus.segment.spec import ModelSpec

if TYPE_CHECKING:
    import torch


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
    ``spinecensus.train.real_labeler``); such voxels count as neither foreground nor background.
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


def sample_batch(
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
