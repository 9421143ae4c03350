"""The ``train:`` config of the generated-label training: presets, network defaults,
:class:`TrainConfig` and reading it from YAML (see ``workflow/rules/train.smk``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: presets for ``train.size``; explicit config keys override them
PRESETS: dict[str, dict[str, Any]] = {
    "ci": {
        "n_expert": 6,
        "n_cohort": 24,
        "crops_per_subject": 6,
        "n_eval_per_v": 12,
        "seg_steps": 150,
        "lab_steps": 150,
        "batch_size": 8,
        "synthetic_preset": "tiny",
    },
    # what produced the shipped weights: segmentation 1200 steps (~15 min, 1 thread); the
    # labelers auto-labelled 300 subjects with the shipped segmentation weights
    # (segmentation_weights: shipped) and trained 25 min each (two at once, 1 thread each,
    # bf16 on this AMX CPU: ~4,840 steps for the generated-label labeler)
    "demo": {
        "n_expert": 16,
        "n_cohort": 300,
        "crops_per_subject": 8,
        "anomaly_crop_factor": 4,
        "n_eval_per_v": 20,
        "seg_steps": 1200,
        "lab_steps": 6000,
        "lab_max_seconds": 1500,
        "batch_size": 8,
        "lab_batch_size": 12,
        "synthetic_preset": "default",
    },
    # thesis proportions: 162 expert of 10,833 (1.5 %); GPU-sized
    "gpu": {
        "n_expert": 162,
        "n_cohort": 10_833,
        "crops_per_subject": 10,
        "n_eval_per_v": 500,
        "seg_steps": 20_000,
        "lab_steps": 50_000,
        "batch_size": 32,
        "synthetic_preset": "default",
    },
}

SEGMENTATION_DEFAULTS: dict[str, Any] = {
    "encoder": "resnet18",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 16, 8],
    "target_spacing_mm": [2.0, 2.0],
    # 1024 x 320 mm: a whole synthetic spine (skull base to coccyx, <= ~1000 mm) fits
    "input_size": [512, 160],
    "weights_dtype": "float16",
}
LABELING_DEFAULTS: dict[str, Any] = {
    "encoder": "resnet18",
    "encoder_depth": 4,
    "decoder_channels": [64, 32, 16, 16],
    # coarse: level recognition needs context (landmarks several levels away), not detail
    "target_spacing_mm": [4.0, 4.0],
    "input_size": None,
    "weights_dtype": "float16",
}


@dataclass
class TrainConfig:
    """Resolved ``train:`` config (see ``workflow/rules/train.smk`` for the YAML)."""

    size: str = "ci"
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    n_expert: int = 6
    n_cohort: int = 24
    crops_per_subject: int = 6
    #: crops_per_subject x this for subjects whose labels say lumbarization / sacralization
    anomaly_crop_factor: int = 1
    n_eval_per_v: int = 12
    seg_steps: int = 150
    lab_steps: int = 150
    batch_size: int = 8
    #: labelers' batch size (None = batch_size)
    lab_batch_size: int | None = None
    lr: float = 2e-3
    seg_crop: tuple[int, int] = (192, 96)
    lab_crop: tuple[int, int] = (128, 72)
    v_min: int = 5
    v_max: int = 15
    lumbarization: float = 0.066
    sacralization: float = 0.036
    synthetic_preset: str = "tiny"
    log_every: int = 25
    #: wall-clock budgets (s) per network; None = exactly seg_steps / lab_steps steps
    seg_max_seconds: float | None = None
    lab_max_seconds: float | None = None
    segmentation: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(SEGMENTATION_DEFAULTS)
    )
    labeling: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(LABELING_DEFAULTS))

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        d = dict(d or {})
        merged = {**PRESETS.get(str(d.get("size", "ci")), PRESETS["ci"]), **d}
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in merged.items() if k in known})
        cfg.segmentation = {**SEGMENTATION_DEFAULTS, **(d.get("segmentation") or {})}
        cfg.labeling = {**LABELING_DEFAULTS, **(d.get("labeling") or {})}
        cfg.seg_crop = tuple(cfg.seg_crop)  # type: ignore[assignment]
        cfg.lab_crop = tuple(cfg.lab_crop)  # type: ignore[assignment]
        return cfg


def load_config(path: str | None) -> dict[str, Any]:
    """The ``train:`` section of a YAML file (or the whole file when it has none); ``{}``
    without a path."""
    if not path:
        return {}
    import yaml

    data = yaml.safe_load(Path(path).read_text()) or {}
    return dict(data.get("train", data))


def dump_config(cfg: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(cfg), indent=2)
