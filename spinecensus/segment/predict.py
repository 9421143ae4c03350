"""Batched inference on whole volumes: :class:`SegmentationModel` (a runner + its spec).

Input and preprocessing (all batched in torch, no Python loop over slices except batching)
-----------------------------------------------------------------------------------------
* The volume is in the package's canonical order ``[slice, SI, AP]`` (``spinecensus.io``).
* Per-volume intensity normalisation and three neighbouring slices as channels
  (:mod:`spinecensus.segment.preprocess`).
* In-plane resampling to ``target_spacing_mm`` and centred crop / zero-pad to ``input_size``
  (:mod:`spinecensus.segment.grid`).
* Logits are un-padded, interpolated back (bilinear) to the native slice grid and only then
  soft-maxed / arg-maxed (in fp32 whatever the precision), so outputs have exactly the
  input's shape.  Voxels cropped away get background.

On CUDA the normalised volume goes to the device once, from pinned host memory (asynchronous
copy); gathering the batches, resampling, the network, un-gridding and the arg-max all stay
on the device, and only the uint8 classes come back.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from spinecensus.io import InputError
from spinecensus.segment.grid import from_network_grid, plan_geometry, to_network_grid
from spinecensus.segment.postprocess import spine_column
from spinecensus.segment.preprocess import neighbour_index, normalise_for_grid
from spinecensus.segment.runners import Runner, TorchRunner, auto_batch_size, resolve_precision
from spinecensus.segment.spec import ModelSpec

if TYPE_CHECKING:  # torch is imported lazily so that the light CLI commands stay fast
    import torch


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch using ``n`` CPU threads, then restore the previous count.

    Torch's thread count is process-wide, so a library call must not leave it changed (an
    analyst's notebook, a training loop in the same process).  ``None`` leaves it alone.
    """
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def channel_argmax(logits: torch.Tensor) -> torch.Tensor:
    """``logits.argmax(1)`` as uint8 (class indices < 256), the first maximum on ties like
    torch's.  A running maximum over the channels: on a CPU, torch's arg-max across the
    strided channel axis took ~10 % of a subject's inference, this ~1 %."""
    import torch

    best = logits[:, 0].clone()
    idx = torch.zeros(best.shape, dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[1]):
        idx.masked_fill_(logits[:, c] > best, c)
        torch.maximum(best, logits[:, c], out=best)
    return idx


class SegmentationModel:
    """A loaded network (torch or ONNX) with its :class:`ModelSpec`; predicts whole volumes.

    Use :func:`spinecensus.segment.weights.load_model` (files) or :meth:`from_network` (in
    memory, e.g. after training).  ``threads``: torch CPU threads while predicting (set and
    restored around each volume; ``None`` = torch's current setting).  ``batch_size``:
    slices per forward pass, or ``"auto"`` (from free GPU memory on CUDA, 16 elsewhere:
    :func:`~spinecensus.segment.runners.auto_batch_size`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        runner: Runner,
        batch_size: int | str = 8,
        threads: int | None = None,
    ):
        self.spec = spec
        self.runner = runner
        self.threads = threads
        if batch_size == "auto":
            with torch_threads(threads):
                batch_size = auto_batch_size(runner, spec)
        self.batch_size = int(batch_size)

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``: what the network runs in."""
        return str(getattr(self.runner, "precision", "fp32"))

    @classmethod
    def from_network(
        cls,
        net: torch.nn.Module,
        spec: ModelSpec,
        device: str = "cpu",
        amp: str | None = None,
        batch_size: int | str = 8,
    ) -> SegmentationModel:
        """``amp``: ``"bf16"``, ``"fp16"``, None / ``"fp32"``, or ``"auto"``
        (:func:`~spinecensus.segment.runners.resolve_precision`)."""
        if amp == "auto":
            amp = resolve_precision("auto", device)
        return cls(spec, TorchRunner(net, spec, device, amp), batch_size)

    # -- core generator ---------------------------------------------------------------
    def iter_logits(
        self, volume: np.ndarray, spacing_mm: tuple[float, float, float]
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(first_slice, logits)``: float32 logits ``(b, C, SI, AP)`` on the native
        grid, on the runner's device (consumers move only what they keep to the host).

        ``volume`` is canonical ``[slice, SI, AP]``; ``spacing_mm`` in the same order (mm).
        """
        import torch

        vol = np.asarray(volume)
        if vol.ndim != 3:
            raise InputError(None, f"expected a 3-D volume [slice, SI, AP], got {vol.shape}")
        geo = plan_geometry(vol.shape[1:], (spacing_mm[1], spacing_mm[2]), self.spec)
        norm = torch.from_numpy(normalise_for_grid(vol, self.spec.normalisation, geo))
        idx = torch.from_numpy(neighbour_index(vol.shape[0]))
        device = getattr(self.runner, "device", None)
        if device is not None and device.type == "cuda":
            # the whole normalised volume (tens of MB) in one asynchronous copy from pinned
            # host memory; slices are gathered and resampled on the device
            norm = norm.pin_memory().to(device, non_blocking=True)
            idx = idx.to(device)
        with torch_threads(self.threads):
            for start in range(0, vol.shape[0], self.batch_size):
                x = norm[idx[start : start + self.batch_size]]  # (b, 3, SI, AP)
                logits = self.runner(to_network_grid(x, geo))
                yield start, from_network_grid(logits.float(), geo)

    # -- outputs ----------------------------------------------------------------------
    def predict_semantic(
        self, volume: np.ndarray, spacing_mm: tuple[float, float, float]
    ) -> np.ndarray:
        """Semantic mask (0/1/2) cleaned for splitting: :meth:`predict` then only the
        spine column's pieces (see :func:`spine_column`)."""
        return spine_column(self.predict(volume, spacing_mm), spacing_mm)

    def predict(self, volume: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
        """Arg-max class per voxel, uint8, same shape as ``volume`` (canonical order)."""
        out = np.zeros(np.shape(volume), dtype=np.uint8)
        for start, logits in self.iter_logits(volume, spacing_mm):
            out[start : start + len(logits)] = channel_argmax(logits).cpu().numpy()
        return out

    def predict_structure_classes(
        self,
        volume: np.ndarray,
        spacing_mm: tuple[float, float, float],
        foreground: np.ndarray | None = None,
    ) -> np.ndarray:
        """The labeler's per-voxel vote: arg-max over the structure classes only (background
        channel ignored), uint8, canonical order, as a union class: ``j + 1`` =
        ``labels.all_names()[j]`` (what :func:`spinecensus.naming.vote.vote_log_probs` reads).

        ``foreground`` (same shape, bool): voxels the segmentation calls vertebra or disc;
        elsewhere 0.  Deciding *where* the spine is belongs to the segmentation model, the
        labeler only says *which* structure a spine voxel belongs to.
        """
        # channel -> union class (identity for the union labeler; a thesis 45/47/49-class
        # model's names are mapped, its lumbosacral disc onto the union's "L6-S1" column)
        from spinecensus.naming.vote import union_indices

        # union column j -> class j + 1; a name outside the schema (-1) -> 0, no vote
        lut = np.concatenate([[0], union_indices(self.spec.classes[1:]) + 1]).astype(np.uint8)
        out = np.zeros(np.shape(volume), dtype=np.uint8)
        for start, logits in self.iter_logits(volume, spacing_mm):
            out[start : start + len(logits)] = lut[channel_argmax(logits[:, 1:]).cpu().numpy() + 1]
        if foreground is not None:
            out[~np.asarray(foreground, dtype=bool)] = 0
        return out

    def predict_proba(
        self, volume: np.ndarray, spacing_mm: tuple[float, float, float]
    ) -> np.ndarray:
        """Class probabilities ``(C, slice, SI, AP)`` float32 (memory: C x volume)."""
        out = np.zeros((self.spec.n_classes, *np.shape(volume)), dtype=np.float32)
        for start, logits in self.iter_logits(volume, spacing_mm):
            out[:, start : start + len(logits)] = logits.softmax(1).transpose(0, 1).cpu().numpy()
        return out

    def instance_log_probs(
        self,
        volume: np.ndarray,
        spacing_mm: tuple[float, float, float],
        instances: np.ndarray,
        n_instances: int | None = None,
    ) -> np.ndarray:
        """Mean log-softmax over each instance's voxels, background channel dropped.

        Returns ``(n_instances, C - 1)`` float64; row ``i`` is instance id ``i + 1``.  For
        the union labeler the columns follow ``labels.all_names()``.  Instances without
        voxels get uniform log-probabilities.  Accumulated batch by batch (``index_add``),
        so memory stays at one batch of logits.
        """
        import torch

        inst = np.asarray(instances)
        n = int(inst.max()) if n_instances is None else int(n_instances)
        c = self.spec.n_classes
        sums = torch.zeros((n + 1, c), dtype=torch.float64)
        counts = torch.zeros(n + 1, dtype=torch.float64)
        for start, logits in self.iter_logits(volume, spacing_mm):
            ids = torch.from_numpy(inst[start : start + len(logits)].astype(np.int64)).reshape(-1)
            logp = logits.log_softmax(1).transpose(0, 1).reshape(c, -1).T.double().cpu()
            keep = ids > 0
            sums.index_add_(0, ids[keep], logp[keep])
            counts.index_add_(0, ids[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
        mean = sums[1:] / counts[1:].clamp(min=1)[:, None]
        # renormalise over the structure classes (background excluded)
        struct = mean[:, 1:]
        struct = struct - torch.logsumexp(struct, dim=1, keepdim=True)
        empty = counts[1:] == 0
        struct[empty] = -math.log(c - 1)
        return struct.numpy()
