"""What a network is: :class:`ModelSpec` (architecture, classes, input grid, layout,
normalisation; stored as the weights' JSON sidecar) and the class lists of both tasks.

Two tasks share one code path:

* ``"segmentation"`` — 3 classes (0 background, 1 vertebral body, 2 disc);
* ``"labeling"`` — the multiclass small-FOV labeler: 50 output channels, channel 0 =
  background and channel ``i`` = ``labels.all_names()[i - 1]`` (the 49-name union schema of
  all three variants).  The thesis trained variant-specific 45/47/49-class models; one union
  model is simpler and lets the consistent-sequence DP (``sequence.consistent_sequence``)
  choose the variant.

Layouts: ``"spinecensus"`` networks take ``N x 3 x SI x AP`` with row 0 the most cranial;
``"thesis"`` networks (the published ONNX files) take ``N x 3 x AP x SI`` with the top of the
spine at the *end* of the SI axis and the front at the end of the AP axis (nibabel's RAS voxel
order, P->A and I->S, which the thesis's ``pixel_array.T[::-1, ::-1]`` of a sagittal DICOM
slice also gives); the adapter (:func:`spinecensus.segment.network.thesis_adapter`) and the
runners (:mod:`spinecensus.segment.runners`) transpose and flip on the way in and out.

Crops (``ModelSpec.crop``, see :mod:`spinecensus.segment.grid`): ``"centre"`` (every
spinecensus model) crops / pads the slice centred on both axes; ``"thesis"`` does what the
published package's inference does (``_crop_and_pad_to_shape`` of
``spine_segmentation/inference/instance_segmentation.py``, 0.3.2): centred on AP, and on SI
it keeps the *first* ``input_size[0]`` rows counted from the inferior end and pads cranially.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from spinecensus.anatomy import labels

Task = Literal["segmentation", "labeling"]
Layout = Literal["spinecensus", "thesis"]
#: how a slice is cropped / padded to ``input_size`` (module docstring)
CROPS = ("centre", "thesis")

SEMANTIC_CLASSES: tuple[str, ...] = ("background", "vertebra", "disc")


def labeling_classes() -> tuple[str, ...]:
    """Output channels of the union labeler: background + the 49 names of ``all_names()``."""
    return ("background", *labels.all_names())


@dataclass
class ModelSpec:
    """Everything needed to rebuild a network and feed it; stored as the JSON sidecar.

    Attributes:
        task: ``"segmentation"`` or ``"labeling"``.
        classes: output channel names (channel 0 = background).
        encoder: smp encoder name (``resnet18``, ``resnet34``, ``resnet152``, ``mit_b5``, ...).
        encoder_depth: number of encoder stages (3-5); fewer = smaller, coarser.
        decoder_channels: one entry per encoder stage.
        target_spacing_mm: in-plane (SI, AP) spacing in mm the network sees; None = native.
        input_size: (SI, AP) voxels after resampling (centre crop / zero pad); None = pad
            only to a multiple of the stride.
        layout: axis layout of the network input (see module docstring).
        normalisation: intensity normalisation, one of ``NORMALISATIONS`` (see
            :func:`spinecensus.segment.preprocess.normalise_volume`); ``robust_zscore`` =
            clip p1..p99, (x - mean) / std.
        crop: one of ``CROPS``: ``"centre"`` or ``"thesis"`` (module docstring).
        weights_dtype: dtype of the stored state dict (``float16`` halves the file).
    """

    task: Task = "segmentation"
    classes: tuple[str, ...] = SEMANTIC_CLASSES
    architecture: str = "smp.Unet"
    encoder: str = "resnet18"
    encoder_depth: int = 4
    decoder_channels: tuple[int, ...] = (64, 32, 16, 8)
    in_channels: int = 3
    target_spacing_mm: tuple[float, float] | None = (2.0, 2.0)
    input_size: tuple[int, int] | None = (384, 160)
    layout: Layout = "spinecensus"
    normalisation: str = "robust_zscore"
    weights_dtype: str = "float32"
    crop: str = "centre"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.target_spacing_mm is not None:
            ts = self.target_spacing_mm
            if isinstance(ts, int | float):
                ts = (float(ts), float(ts))
            self.target_spacing_mm = (float(ts[0]), float(ts[1]))
        if self.input_size is not None:
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r} (one of {', '.join(CROPS)})")
        if len(self.decoder_channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels {self.decoder_channels} must have encoder_depth="
                f"{self.encoder_depth} entries"
            )

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def stride(self) -> int:
        """Input sizes must be multiples of this (2 ** encoder_depth)."""
        return 2**self.encoder_depth

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_config(cls, cfg: dict[str, Any], task: Task) -> ModelSpec:
        """Build from a config section (``segmentation:`` / ``labeling:``); unknown keys
        (weights path, device, ...) are ignored."""
        d = {k: v for k, v in cfg.items() if k in {f.name for f in fields(cls)}}
        d["task"] = task
        d.setdefault("classes", SEMANTIC_CLASSES if task == "segmentation" else labeling_classes())
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def thesis_onnx_spec(n_classes: int) -> ModelSpec:
    """Defaults for an ONNX file laid out like the published thesis models (no sidecar).

    Native spacing, 896 x 320 (SI x AP), the thesis crop, and per-volume min-max
    normalisation to [0, 1] over what the network sees: the thesis trained on
    ``(x - min) / max(x - min)`` of each volume after its crop / pad
    (``_normalize_image`` in ``spine_segmentation/datasets/sample.py``, 0.3.2, also
    LiquidFun/Spine ``spine/datasets/sample.py``), while the package's own inference passes
    the volume through unnormalised.
    """
    classes: tuple[str, ...]
    if n_classes == 3:
        classes, task = SEMANTIC_CLASSES, "segmentation"
    else:
        task = "labeling"
        variant = {45: "sacralization", 47: "normal", 49: "lumbarization"}.get(n_classes - 1)
        if variant is None:
            classes = tuple(f"class{i}" for i in range(n_classes))
        else:
            classes = ("background", *labels.structures(variant))
    return ModelSpec(
        task=task,  # type: ignore[arg-type]
        classes=classes,
        architecture="onnx",
        encoder="unknown",
        encoder_depth=5,
        decoder_channels=(256, 128, 64, 32, 16),
        target_spacing_mm=None,
        input_size=(896, 320),
        layout="thesis",
        normalisation="minmax",
        crop="thesis",
    )
