"""Runners: one network (torch or ONNX Runtime) applied to a batch in spinecensus layout,
``(B, 3, SI, AP) -> (B, C, SI, AP)``; a ``"thesis"``-layout network's input is transposed
and flipped on the way in and its logits back on the way out (see
:mod:`spinecensus.segment.spec`).

Precision (``segmentation.precision``): ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` =
bf16 where the hardware runs it natively (CUDA with bf16 support, CPUs with AVX512-BF16 or
AMX), else fp32 (:func:`resolve_precision`).  Logits leave the runner as float32, so
probabilities and arg-max are always computed in fp32.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinecensus.segment.spec import ModelSpec

if TYPE_CHECKING:  # torch is imported lazily so that the light CLI commands stay fast
    import torch

#: values of ``segmentation.precision`` (``"fp16"`` is accepted too, for CUDA only)
PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: str) -> bool:
    """Whether ``device`` runs bf16 natively, asked of torch (no ``/proc/cpuinfo`` parsing).

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).  CPU: torch's capability
    flags for AVX512-BF16 or AMX tiles.  Neither ``torch.backends.cpu.get_cpu_capability()``
    ("AVX512" says nothing about bf16) nor ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
    (true on AVX512 CPUs that only emulate bf16, where it is slower than fp32) answers this.
    """
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if dev.type != "cpu":
        return False
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str | None, device: str) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for a configured ``precision`` on ``device``.

    ``"auto"`` (or None) = bf16 where :func:`native_bf16`, else fp32: on CPUs without native
    bf16 (AVX2, plain AVX512) autocast emulates it and is slower than fp32.
    """
    p = "auto" if precision in (None, "") else str(precision).lower()
    if p == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if p not in (*PRECISIONS, "fp16"):
        raise ValueError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    return p


def fold_batch_norm(net: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``net`` with every BatchNorm folded into the conv before it.

    Folding (``torch.fx.experimental.optimization.fuse``) removes one pass over every
    activation map: ~10 % less CPU time per slice for the shipped U-Net, logits equal up to
    float rounding (max |difference| ~3e-5).  A network that torch.fx cannot trace is
    returned unfolded (a warning on stderr): folding is only a speed-up.
    """
    import copy

    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(copy.deepcopy(net).eval(), inplace=True)
    except Exception as exc:  # fx tracing limits (data-dependent control flow), not a fault
        print(f"segment: BatchNorm not folded ({type(exc).__name__}: {exc})", file=sys.stderr)
        return net


class Runner:
    """Runs a network on a batch in spinecensus layout: (B, 3, SI, AP) -> (B, C, SI, AP)."""

    #: where the runner wants its input (and leaves its logits)
    device_type: str = "cpu"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TorchRunner(Runner):
    """A torch network on ``device``, BatchNorm folded, channels-last, optionally under
    autocast (``amp``: ``"bf16"`` / ``"fp16"``; None or ``"fp32"`` = fp32).

    Channels-last pays off everywhere measured: tensor cores and AMX need it, and on an AVX2
    CPU in fp32 it cut the shipped U-Net's CPU time per slice by ~15 % (benchmarks/README.md).
    ``net`` itself is left untouched (training evaluates its network in the middle of a run).
    """

    def __init__(self, net: torch.nn.Module, spec: ModelSpec, device: str, amp: str | None):
        import torch

        self.device = torch.device(device)
        self.device_type = self.device.type
        self.layout = spec.layout
        self.amp = None if amp in (None, "fp32") else amp
        self.net = fold_batch_norm(net).to(self.device).eval()
        self.net = self.net.to(memory_format=torch.channels_last)

    @property
    def precision(self) -> str:
        return self.amp or "fp32"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if x.device != self.device:
            # pinned host memory makes this copy asynchronous on CUDA
            x = x.to(self.device, non_blocking=x.is_pinned())
        if self.layout == "thesis":
            x = x.flip(2, 3).transpose(2, 3)
        x = x.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp or "")
        with torch.inference_mode():
            if dtype is not None:
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    y = self.net(x)
            else:
                y = self.net(x)
        y = y.float()  # probabilities and arg-max in fp32 whatever the autocast dtype
        if self.layout == "thesis":
            y = y.transpose(2, 3).flip(2, 3)
        return y


class OnnxRunner(Runner):
    """An ONNX Runtime session (CUDA provider when asked for and available, else CPU)."""

    def __init__(self, path: Path, spec: ModelSpec, device: str, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self.input_name = self.session.get_inputs()[0].name
        self.layout = spec.layout
        self.precision = "fp32"
        shape = self.session.get_inputs()[0].shape
        # a fixed batch dimension (some exported files) forces batch 1
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.layout == "thesis":
            x = x.flip(2, 3).transpose(2, 3)
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        if self.fixed_batch:
            outs = [
                self.session.run(None, {self.input_name: arr[i : i + self.fixed_batch]})[0]
                for i in range(0, len(arr), self.fixed_batch)
            ]
            y = np.concatenate(outs)
        else:
            y = self.session.run(None, {self.input_name: arr})[0]
        t = torch.from_numpy(np.asarray(y, dtype=np.float32))
        if self.layout == "thesis":
            t = t.transpose(2, 3).flip(2, 3)
        return t


def batch_for_memory(
    free_bytes: int, per_slice_bytes: int, fraction: float = 0.6, cap: int = 512
) -> int:
    """Slices per forward pass that fit ``fraction`` of ``free_bytes`` of device memory when
    one slice needs ``per_slice_bytes`` (activations + logits); 1 <= result <= ``cap``."""
    if per_slice_bytes <= 0:
        return cap
    return int(max(1, min(cap, (free_bytes * fraction) // per_slice_bytes)))


def auto_batch_size(runner: Runner, spec: ModelSpec, default: int = 16) -> int:
    """``batch_size: auto``: on CUDA, from free memory (``torch.cuda.mem_get_info``) and the
    memory one slice takes (peak allocation of a 2-slice minus a 1-slice probe forward on
    the network grid); elsewhere ``default``.  Out of memory later still halves the batch
    (``segment_job.halving_batch_on_gpu_oom``)."""
    if runner.device_type != "cuda":
        return default
    import torch

    dev = runner.device  # type: ignore[attr-defined]
    size = spec.input_size or (512, 160)
    peaks = []
    for b in (1, 2):
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        runner(torch.zeros((b, spec.in_channels, *size), device=dev))
        torch.cuda.synchronize(dev)
        peaks.append(torch.cuda.max_memory_allocated(dev) - base)
    free, _total = torch.cuda.mem_get_info(dev)
    per_slice = max(peaks[1] - peaks[0], peaks[0] // 2, 1)
    return batch_for_memory(int(free), int(per_slice))
