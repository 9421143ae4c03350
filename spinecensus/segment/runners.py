"""Runners: one network (torch or ONNX Runtime) applied to a batch in spinecensus layout,
``(B, 3, SI, AP) -> (B, C, SI, AP)``; a ``"thesis"``-layout network's input is transposed
and flipped on the way in and its logits back on the way out (see
:mod:`spinecensus.segment.spec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinecensus.segment.spec import ModelSpec

if TYPE_CHECKING:  # torch is imported lazily so that the light CLI commands stay fast
    import torch


class Runner:
    """Runs a network on a batch in spinecensus layout: (B, 3, SI, AP) -> (B, C, SI, AP)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TorchRunner(Runner):
    """A torch network on ``device``, optionally under autocast (``amp``: bf16 / fp16)."""

    def __init__(self, net: torch.nn.Module, spec: ModelSpec, device: str, amp: str | None):
        import torch

        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.layout = spec.layout
        self.amp = amp
        # channels_last pays off with tensor cores / AMX (CUDA, or CPU bf16 autocast)
        self.channels_last = self.device.type == "cuda" or amp is not None
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        x = x.to(self.device, non_blocking=True)
        if self.layout == "thesis":
            x = x.flip(2).transpose(2, 3)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp or "")
        with torch.inference_mode():
            if dtype is not None:
                with torch.autocast(device_type=self.device.type, dtype=dtype):
                    y = self.net(x)
            else:
                y = self.net(x)
        y = y.float()
        if self.layout == "thesis":
            y = y.transpose(2, 3).flip(2)
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
        shape = self.session.get_inputs()[0].shape
        # a fixed batch dimension (some exported files) forces batch 1
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.layout == "thesis":
            x = x.flip(2).transpose(2, 3)
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
            t = t.transpose(2, 3).flip(2)
        return t
