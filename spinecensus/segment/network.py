"""The torch network a :class:`~spinecensus.segment.spec.ModelSpec` describes: the smp U-Net
(random init, nothing downloaded) and the thesis-layout adapter used for ONNX export.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from spinecensus.segment.spec import ModelSpec

if TYPE_CHECKING:  # torch is imported lazily so that the light CLI commands stay fast
    import torch


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """The smp ``Unet`` described by ``spec`` (random init; nothing is downloaded)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import segmentation_models_pytorch as smp

    if spec.architecture != "smp.Unet":
        raise ValueError(f"unsupported architecture {spec.architecture!r} (only smp.Unet)")
    net = smp.Unet(
        encoder_name=spec.encoder,
        encoder_depth=spec.encoder_depth,
        encoder_weights=None,
        decoder_channels=list(spec.decoder_channels),
        in_channels=spec.in_channels,
        classes=spec.n_classes,
    )
    # smp keeps every ResNet stage even when encoder_depth < 5 although forward() never
    # reaches them; drop them so the state dict (the shipped file) only holds used weights
    for stage in range(max(spec.encoder_depth, 1), 5):
        if hasattr(net.encoder, f"layer{stage}") and spec.encoder.startswith("resnet"):
            delattr(net.encoder, f"layer{stage}")
    return net


def thesis_adapter(net: torch.nn.Module) -> torch.nn.Module:
    """Wrap a spinecensus-layout network so it takes/returns thesis layout (for export)."""
    import torch

    class ThesisLayout(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # (N, C, AP forwards, SI upwards) -> (N, C, SI downwards, AP backwards), and back
            y = self.inner(x.transpose(2, 3).flip(2, 3))
            return y.flip(2, 3).transpose(2, 3)

    return ThesisLayout(net)
