"""What a network sees of a volume: per-volume intensity normalisation and the three-slice
neighbourhood fed as channels.

* The volume is in the package's canonical order ``[slice, SI, AP]`` (``spinecensus.io``).
* **Intensity normalisation** (per volume, robust z-score): clip to the volume's 1st-99th
  percentile, then subtract the mean and divide by the standard deviation of the clipped
  volume.  No other intensity assumption is made (MRI has no absolute units).
* Each slice ``k`` is fed with its neighbours as three channels ``(k-1, k, k+1)``; the edge
  slices replicate themselves for the missing neighbour.  The output is for slice ``k``.
"""

from __future__ import annotations

import numpy as np

NORMALISATIONS = ("robust_zscore", "minmax", "none")


def normalise_volume(volume: np.ndarray, method: str = "robust_zscore") -> np.ndarray:
    """Per-volume intensity normalisation (float32).

    ``robust_zscore`` (default, all spinecensus models): clip to the volume's 1st-99th
    percentile, then (x - mean) / std of the clipped volume.  ``minmax``: (x - min) / (max -
    min), 0..1.  ``none``: unchanged (for external models that normalise themselves).
    """
    v = np.asarray(volume, dtype=np.float32)
    if method == "none":
        return v
    if method == "minmax":
        lo, hi = float(v.min()), float(v.max())
        return ((v - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)
    if method != "robust_zscore":
        raise ValueError(f"unknown normalisation {method!r} (one of {NORMALISATIONS})")
    lo, hi = np.percentile(v, [1.0, 99.0])
    c = np.clip(v, lo, hi)
    std = float(c.std())
    return ((c - float(c.mean())) / (std if std > 0 else 1.0)).astype(np.float32)


def neighbour_index(n_slices: int) -> np.ndarray:
    """(n_slices, 3) indices of slices (k-1, k, k+1), edges replicating themselves."""
    k = np.arange(n_slices)[:, None] + np.array([-1, 0, 1])[None, :]
    return np.clip(k, 0, n_slices - 1)
