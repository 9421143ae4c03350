"""The resolved ``train_real:`` config of ``workflow/rules/train_real.smk``, its size presets
and the study's variants, and what a run reads from it: the patient-level split of the real
scans, the network architecture, the seeded synthetic subjects mixed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spinecensus.segment.spec import ModelSpec
from spinecensus.train.real_codes import DISC_FILL_MARGIN_MM, END_BODY_MM, END_FACE_MM
from spinecensus.train.real_data import DEFAULT_ROOT, LoadedSample, load_manifest
from spinecensus.train.real_splits import check_split, split_subjects

#: presets for ``train_real.size``; explicit keys override them
REAL_PRESETS: dict[str, dict[str, Any]] = {
    # CPU, a few minutes per variant with 2 threads
    "ci": {"steps": 250, "n_synthetic": 8, "n_synthetic_eval": 3, "synthetic_preset": "default"},
    "gpu": {
        "steps": 20_000,
        "n_synthetic": 200,
        "n_synthetic_eval": 20,
        "synthetic_preset": "default",
        "batch": {"batch_size": 32, "volumes_per_step": 8, "crop_si": None, "crop_ap": None},
    },
}
#: synthetic subject seeds for mixing / evaluation (disjoint from spinecensus.train.subjects')
SYNTH_TRAIN_OFFSET = 700_000
SYNTH_EVAL_OFFSET = 800_000


@dataclass
class RealRunConfig:
    """Resolved ``train_real:`` config (see ``workflow/rules/train_real.smk``)."""

    size: str = "ci"
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    root: str = str(DEFAULT_ROOT)
    val_fraction: float = 0.34
    #: cross-validation fold whose subjects are the validation side (0 .. n_folds - 1,
    #: ``real_splits.n_folds(val_fraction)``; 0 = the split the shipped real weights used)
    fold: int = 0
    steps: int = 300
    lr: float = 1e-3
    finetune_lr: float = 5e-4
    n_synthetic: int = 8
    n_synthetic_eval: int = 3
    synthetic_preset: str = "default"
    #: appearances of the mixed-in synthetic subjects, cycled over their seeds
    #: (``spinecensus.synthetic.appearance.APPEARANCES``): ``["default"]`` = the demo's fixed
    #: T2 rendering (every run before issue 20); ``["default", "randomised"]`` = every second
    #: subject rendered with a random contrast from its tissue label map (SynthSeg's idea),
    #: so the model learns shape, not one contrast, and still sees the demo's rendering
    synthetic_appearances: list[str] = field(default_factory=lambda: ["default"])
    #: weights a "pretrained" variant starts from ("" = the shipped default weights)
    pretrained: str = ""
    #: share of real volumes in the mixed variants' batches (None = the variant's own, 0.75)
    real_fraction: float | None = None
    #: wall-clock budget per variant (s); None = exactly ``steps`` steps
    max_seconds: float | None = None
    batch: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] = field(default_factory=dict)
    log_every: int = 25
    #: label the gap between consecutive annotated bodies as disc and between consecutive
    #: annotated discs as body (``real_codes.target_codes(fill_between=...)``)
    fill_between_levels: bool = True
    #: mm next to each annotated body left out of that disc fill (the endplates, which the
    #: disc masks exclude; ``real_codes.DISC_FILL_MARGIN_MM``).  0 = the whole gap, the
    #: recipe of sessions 2-5, which taught discs about 1.5x too high.
    disc_fill_margin_mm: float = DISC_FILL_MARGIN_MM
    #: mm beyond the end structures' outer faces taught as "not that class"
    #: (``real_codes.END_FACE_MM``); 0 = no loss there
    end_face_mm: float = END_FACE_MM
    #: mm above the first / below the last annotated disc taught as body (L1, S1;
    #: ``real_codes.END_BODY_MM``); 0 = off
    end_body_mm: float = END_BODY_MM
    #: in-plane (SI, AP) spacing in mm of the network grid; None = that of the pretrained
    #: weights (2 mm).  An expert disc mask is 5-8 mm high, so a 2 mm grid alone caps disc
    #: Dice at about 0.92 on the IVD scans (the expert masks area-averaged to 2 mm and back);
    #: 1 mm is the real scans' own in-plane spacing.  The input size keeps its extent in
    #: mm.  (A 1 mm fine-tune did not raise disc Dice: docs/real_mri.md, fifth run.)
    target_spacing_mm: list[float] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RealRunConfig:
        d = dict(d or {})
        preset = REAL_PRESETS.get(str(d.get("size", "ci")), REAL_PRESETS["ci"])
        merged = {**preset, **d}
        merged["batch"] = {**preset.get("batch", {}), **(d.get("batch") or {})}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in merged.items() if k in known})

    def pretrained_path(self) -> Path:
        from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS

        return Path(self.pretrained) if self.pretrained else DEFAULT_SEGMENTATION_WEIGHTS


#: the study's variants: how the network starts and which data it sees (same budget)
VARIANTS: dict[str, dict[str, Any]] = {
    # random init, real scans only
    "real_only": {"init": "scratch", "real_fraction": 1.0},
    # random init, real scans mixed with synthetic ones (no pretraining)
    "scratch_mixed": {"init": "scratch", "real_fraction": 0.75},
    # shipped synthetic weights, then the same mixed training (the generator study)
    "pretrained_mixed": {"init": "pretrained", "real_fraction": 0.75},
}


def synthetic_subject(cfg: RealRunConfig, seed: int, appearance: str = "default") -> Any:
    """The seeded synthetic subject ``seed`` of the run's ``synthetic_preset`` rendered in
    ``appearance`` (canonical order, exact semantic ground truth)."""
    from dataclasses import replace

    from spinecensus import synthetic

    config = replace(synthetic.SyntheticConfig.preset(cfg.synthetic_preset), appearance=appearance)
    return synthetic.generate_subject(seed, config=config)


def synthetic_appearance(cfg: RealRunConfig, i: int) -> str:
    """The appearance of the run's ``i``-th mixed-in synthetic subject (cycled)."""
    names = list(cfg.synthetic_appearances) or ["default"]
    return str(names[i % len(names)])


def load_real_split(cfg: RealRunConfig) -> tuple[list[LoadedSample], list[LoadedSample]]:
    """Load the manifest and return (train, validation) loaded samples (patient-level split)."""
    samples = load_manifest(cfg.root)
    train, val = split_subjects(samples, cfg.val_fraction, cfg.seed, cfg.fold)
    check_split(train, val)
    return [s.load() for s in train], [s.load() for s in val]


def base_spec(cfg: RealRunConfig) -> ModelSpec:
    """Architecture of every variant: that of the pretrained weights (so that "scratch" and
    "pretrained" differ only in their initial values), else the training defaults."""
    from spinecensus.segment.weights import read_spec

    spec = read_spec(cfg.pretrained_path()) if cfg.pretrained_path().exists() else None
    if spec is None:
        from spinecensus.train.config import SEGMENTATION_DEFAULTS

        spec = ModelSpec.from_config(dict(SEGMENTATION_DEFAULTS), "segmentation")
    spec = ModelSpec.from_dict(spec.to_dict())
    spec.training, spec.metrics, spec.sha256, spec.git_commit = {}, {}, None, None
    if cfg.target_spacing_mm is not None:
        new = (float(cfg.target_spacing_mm[0]), float(cfg.target_spacing_mm[1]))
        if spec.input_size is not None and spec.target_spacing_mm is not None:
            # same field of view in mm, rounded up to the network stride
            spec.input_size = tuple(  # type: ignore[assignment]
                int(math.ceil(n * old / t / spec.stride) * spec.stride)
                for n, old, t in zip(spec.input_size, spec.target_spacing_mm, new, strict=True)
            )
        spec.target_spacing_mm = new
    return spec


__all__ = [
    "REAL_PRESETS",
    "SYNTH_EVAL_OFFSET",
    "SYNTH_TRAIN_OFFSET",
    "VARIANTS",
    "RealRunConfig",
    "base_spec",
    "load_real_split",
    "synthetic_appearance",
    "synthetic_subject",
]
