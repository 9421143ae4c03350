"""Training volumes: a canonical scan and its loss codes on the segmentation network's grid.

Resampled in-plane exactly as ``spinecensus.segment.grid.plan_geometry`` does at inference
(bilinear image, nearest codes); the codes are those of ``spinecensus.train.real_codes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spinecensus.segment.grid import plan_geometry
from spinecensus.segment.spec import ModelSpec
from spinecensus.train.real_codes import CODE_BODY, CODE_DISC


@dataclass
class TrainVolume:
    """One training volume resampled in-plane to the model's spacing.

    Attributes:
        image: float32 ``[slice, SI, AP]`` raw intensities on the resampled grid.
        codes: uint8 loss codes (``real_codes.CODE_*``) on the same grid.
        key: subject id; kind: ``"real"`` or ``"synthetic"``.
        dataset: the real scan's dataset (manifest column; what
            ``BatchConfig.dataset_weights`` names), "" for synthetic volumes.
        fg_slices: slice indices holding annotated foreground (sampled preferentially).
    """

    image: np.ndarray
    codes: np.ndarray
    key: str
    kind: str = "real"
    fg_slices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: mean AP column of the annotated structures (centre of AP training windows)
    ap_centre: int = 0
    dataset: str = ""


def prepare_volume(
    image: np.ndarray,
    codes: np.ndarray,
    spacing_mm: tuple[float, float, float],
    spec: ModelSpec,
    key: str,
    kind: str = "real",
    dataset: str = "",
) -> TrainVolume:
    """Resample a canonical volume and its codes in-plane to ``spec.target_spacing_mm``
    (bilinear image, nearest codes), exactly as ``grid.plan_geometry`` does at inference."""
    import torch
    import torch.nn.functional as F

    geo = plan_geometry(image.shape[1:], (spacing_mm[1], spacing_mm[2]), spec)
    img = torch.from_numpy(np.asarray(image, dtype=np.float32))[:, None]
    cod = torch.from_numpy(np.asarray(codes, dtype=np.uint8).astype(np.float32))[:, None]
    if geo.resampled != geo.native:
        img = F.interpolate(img, size=geo.resampled, mode="bilinear", align_corners=False)
        cod = F.interpolate(cod, size=geo.resampled, mode="nearest-exact")
    c = cod[:, 0].numpy().astype(np.uint8)
    fg = (c == CODE_BODY) | (c == CODE_DISC)
    return TrainVolume(
        image=img[:, 0].numpy(),
        codes=c,
        key=key,
        kind=kind,
        fg_slices=np.nonzero(fg.reshape(len(c), -1).any(1))[0],
        ap_centre=int(np.nonzero(fg)[2].mean()) if fg.any() else c.shape[2] // 2,
        dataset=dataset,
    )


__all__ = ["TrainVolume", "prepare_volume"]
