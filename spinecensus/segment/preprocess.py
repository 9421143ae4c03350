"""What a network sees of a volume: per-volume intensity normalisation and the three-slice
neighbourhood fed as channels.

* The volume is in the package's canonical order ``[slice, SI, AP]`` (``spinecensus.io``).
* **Intensity normalisation** (per volume, robust z-score, every spinecensus model): clip to
  the volume's 1st-99th percentile, then subtract the mean and divide by the standard
  deviation of the clipped volume.  No other intensity assumption is made (MRI has no
  absolute units).
* **Min-max** (the published thesis models, ``thesis_onnx_spec``): ``(x - min) / (max - min)``
  to [0, 1], with min and max taken over what the network sees, i.e. after the crop / zero
  pad (:func:`normalise_for_grid`).  This is how the thesis trained: ``_normalize_image`` in
  ``spine_segmentation/datasets/sample.py`` (PyPI ``spine-segmentation`` 0.3.2; also
  ``spine/datasets/sample.py`` of LiquidFun/Spine) pads the volume with zeros and crops it to
  ``(slices, 320, 896)``, then does ``img -= img.min(); img /= img.max()``, while the
  package's inference (``SegmentationInference.segment``) passes the volume on unnormalised.
* Each slice ``k`` is fed with its neighbours as three channels ``(k-1, k, k+1)``; the edge
  slices replicate themselves for the missing neighbour.  The output is for slice ``k``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from spinecensus.segment.grid import Geometry

NORMALISATIONS = ("robust_zscore", "minmax", "none")


def normalise_volume(
    volume: np.ndarray,
    method: str = "robust_zscore",
    window: tuple[slice, slice] | None = None,
    padded: bool = False,
) -> np.ndarray:
    """Per-volume intensity normalisation (float32, the whole volume's shape).

    ``robust_zscore`` (default, all spinecensus models): clip to the volume's 1st-99th
    percentile, then (x - mean) / std of the clipped volume.  ``minmax``: (x - min) / (max -
    min), 0..1 where the network looks; min and max are those of ``volume[:, *window]`` (the
    (SI, AP) crop; None = all of it) and of the zero padding when ``padded``, as if the
    zero-padded crop were normalised.  ``none``: unchanged (for external models that
    normalise themselves).
    """
    v = np.asarray(volume, dtype=np.float32)
    if method == "none":
        return v
    if method == "minmax":
        seen = v if window is None else v[:, window[0], window[1]]
        lo, hi = float(seen.min()), float(seen.max())
        if padded:  # the padding's zeros are part of the normalised volume
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        return ((v - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if method != "robust_zscore":
        raise ValueError(f"unknown normalisation {method!r} (one of {NORMALISATIONS})")
    lo, hi = np.percentile(v, [1.0, 99.0])
    c = np.clip(v, lo, hi)
    std = float(c.std())
    return ((c - float(c.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def normalise_for_grid(volume: np.ndarray, method: str, geo: Geometry) -> np.ndarray:
    """:func:`normalise_volume` with the statistics of what the network sees on the grid
    ``geo`` (its crop and padding; only ``minmax`` depends on them).

    The network grid is padded with 0 after normalisation, which is the raw value 0 of the
    thesis's zero padding whenever the volume's minimum is >= 0 (MRI magnitudes).
    """
    return normalise_volume(volume, method, geo.native_window(), geo.pads)


def neighbour_index(n_slices: int) -> np.ndarray:
    """(n_slices, 3) indices of slices (k-1, k, k+1), edges replicating themselves."""
    k = np.arange(n_slices)[:, None] + np.array([-1, 0, 1])[None, :]
    return np.clip(k, 0, n_slices - 1)
