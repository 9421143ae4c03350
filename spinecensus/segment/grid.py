"""How a native sagittal slice maps onto the network's input grid and back.

* In-plane resampling: when ``target_spacing_mm`` (SI, AP; mm) is set, every slice is
  resampled bilinearly to that spacing (thesis models: ``None``, native spacing).
* Centred crop / zero-pad to ``input_size`` (SI, AP) voxels (thesis: 896 x 320); with
  ``input_size=None`` the slice is only padded to a multiple of the network's stride.
  ``spec.crop == "thesis"`` follows the published package instead: centred on AP, and on SI
  the first ``input_size[0]`` rows counted from the inferior end are kept and the padding
  goes cranially (see :mod:`spinecensus.segment.spec`).
* Logits are un-padded and interpolated back (bilinear) to the native slice grid, so
  outputs have exactly the input's shape.  Voxels cropped away get background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spinecensus.segment.spec import ModelSpec

if TYPE_CHECKING:  # torch is imported lazily so that the light CLI commands stay fast
    import torch


@dataclass(frozen=True)
class Geometry:
    """How a native slice (SI x AP) maps onto the network grid and back."""

    native: tuple[int, int]
    resampled: tuple[int, int]
    net: tuple[int, int]
    #: (start in resampled grid, start in net grid, length) per axis for the overlap
    overlap: tuple[tuple[int, int, int], tuple[int, int, int]]

    @property
    def pads(self) -> bool:
        """Whether the network grid holds zero padding (the slice is smaller on an axis)."""
        return any(length < n for (_, _, length), n in zip(self.overlap, self.net, strict=True))

    def native_window(self) -> tuple[slice, slice]:
        """(SI, AP) slices of the native slice that the network sees (its crop), mapped
        back from the resampled grid (exact without resampling)."""
        out = []
        for (rs, _, length), n, r in zip(self.overlap, self.native, self.resampled, strict=True):
            lo = int(math.floor(rs * n / r))
            hi = int(math.ceil((rs + length) * n / r))
            out.append(slice(lo, max(hi, lo + 1)))
        return out[0], out[1]


def plan_geometry(
    native: tuple[int, int], spacing_si_ap: tuple[float, float], spec: ModelSpec
) -> Geometry:
    """Compute resampled and network sizes for a native slice shape (SI, AP) and spacing (mm)."""
    if spec.target_spacing_mm is None:
        res = native
    else:
        res = tuple(
            max(1, int(round(n * s / t)))
            for n, s, t in zip(native, spacing_si_ap, spec.target_spacing_mm, strict=True)
        )
    if spec.input_size is None:
        net = tuple(int(math.ceil(r / spec.stride) * spec.stride) for r in res)
    else:
        net = spec.input_size
    if spec.crop == "thesis":
        overlap = [_thesis_overlap(res[0], net[0], centred=False),
                   _thesis_overlap(res[1], net[1], centred=True)]  # fmt: skip
    else:
        overlap = []
        for r, n in zip(res, net, strict=True):
            length = min(r, n)
            # centred: crop the middle of a too-large slice, pad a small one on both sides
            overlap.append(((r - length) // 2, (n - length) // 2, length))
    return Geometry(tuple(native), tuple(res), tuple(net), (overlap[0], overlap[1]))  # type: ignore[arg-type]


def _thesis_overlap(r: int, n: int, centred: bool) -> tuple[int, int, int]:
    """(start in resampled, start in net, length) of the published package's crop / pad of
    ``r`` voxels to ``n`` on one axis, computed in its own axis order (thesis layout: SI
    inferior -> superior, AP posterior -> anterior, i.e. the reverse of ours) and reversed.

    ``centred`` (AP): crop from ``r // 2 - n // 2``, pad ``(n - r) // 2`` before; otherwise
    (SI): keep ``0:n``, pad after.
    """
    length = min(r, n)
    start_r = max(0, r // 2 - n // 2) if centred else 0
    start_n = max(0, (n - r) // 2) if centred else 0
    return r - start_r - length, n - start_n - length, length


def to_network_grid(x: torch.Tensor, geo: Geometry, mode: str = "bilinear") -> torch.Tensor:
    """(B, C, SI, AP) native tensor -> (B, C, *geo.net) (resample, centred crop/pad with 0)."""
    import torch
    import torch.nn.functional as F

    if geo.resampled != geo.native:
        if mode == "nearest":
            x = F.interpolate(x, size=geo.resampled, mode="nearest-exact")
        else:
            x = F.interpolate(x, size=geo.resampled, mode=mode, align_corners=False)
    (rs0, ns0, l0), (rs1, ns1, l1) = geo.overlap
    out = torch.zeros((*x.shape[:2], *geo.net), dtype=x.dtype, device=x.device)
    out[:, :, ns0 : ns0 + l0, ns1 : ns1 + l1] = x[:, :, rs0 : rs0 + l0, rs1 : rs1 + l1]
    return out


def from_network_grid(logits: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """(B, C, *geo.net) logits -> (B, C, *geo.native); cropped-away voxels get background."""
    import torch
    import torch.nn.functional as F

    (rs0, ns0, l0), (rs1, ns1, l1) = geo.overlap
    full = torch.zeros((*logits.shape[:2], *geo.resampled), dtype=logits.dtype)
    full = full.to(logits.device)
    full[:, 0] = 30.0  # a confident background where the network saw nothing
    full[:, :, rs0 : rs0 + l0, rs1 : rs1 + l1] = logits[:, :, ns0 : ns0 + l0, ns1 : ns1 + l1]
    if geo.resampled != geo.native:
        full = F.interpolate(full, size=geo.native, mode="bilinear", align_corners=False)
    return full
