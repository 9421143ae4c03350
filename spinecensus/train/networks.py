"""The two networks of a generated-label run: their :class:`ModelSpec` from the config, the
inference precision used to judge them, and saving them with their training record."""

from __future__ import annotations

import os
from typing import Any

from spinecensus.segment.spec import ModelSpec
from spinecensus.segment.weights import save_weights
from spinecensus.train.config import TrainConfig
from spinecensus.train.loop import bf16_is_fast


def inference_amp(cfg: TrainConfig) -> str | None:
    """Autocast dtype for predictions during a run: bf16 where it is fast, else fp32."""
    return "bf16" if bf16_is_fast(cfg.device) else None


def model_spec(cfg: TrainConfig, task: str) -> ModelSpec:
    """The network of ``task`` (``"segmentation"`` or ``"labeling"``) as configured."""
    section = cfg.segmentation if task == "segmentation" else cfg.labeling
    return ModelSpec.from_config(section, task)  # type: ignore[arg-type]


def save_trained(net: Any, spec: ModelSpec, out: str | os.PathLike[str], training: dict) -> None:
    """Write ``net`` to ``out`` (``.pt`` + JSON sidecar) with ``training`` (what data and
    settings trained it) in the sidecar."""
    spec.training = training
    save_weights(net, spec, out)
