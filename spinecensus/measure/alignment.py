"""Sagittal alignment from endplate lines: lumbar lordosis, thoracic kyphosis, segment angles.

Angles in degrees, in the scanner's sagittal plane (canonical axes I = inferior and
P = posterior of :mod:`spinecensus.io.scan`; an endplate direction is projected onto it by
dropping its left-right component, as a reader measures on the sagittal image).

* **Endplate tilt** ``tau``: angle of the endplate line's posterior-pointing direction
  below the posterior axis, ``atan2(d_I, d_P)``; positive when its posterior end is the
  lower (more inferior).
* **Lumbar lordosis**: Cobb angle from the superior endplate of L1 to the superior endplate
  of S1, ``tau(L1 sup) - tau(S1 sup)``, positive for a lordosis.
* **Thoracic kyphosis**: Cobb angle from the superior endplate of T4 to the inferior
  endplate of T12, ``tau(T12 inf) - tau(T4 sup)``, positive for a kyphosis.
* **Segment angle** of two adjacent vertebrae U, L (keyed by the disc name ``"U-L"``): from
  the superior endplate of U to that of L, ``tau(U sup) - tau(L sup)``, positive when
  lordotic, negative when kyphotic; the segments L1-L2 ... L5-S1 add up to the lordosis.

A measure whose endplates are not both measured (out of view, truncated by the field of
view, or not traced) is None (JSON null).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

#: (vertebra, endplate) pairs of the two curves: upper end, lower end
LORDOSIS_ENDS = (("L1", "superior"), ("S1", "superior"))
KYPHOSIS_ENDS = (("T4", "superior"), ("T12", "inferior"))


def endplate_tilt_deg(direction: np.ndarray) -> float:
    """Tilt ``tau`` (degrees) of an endplate line with 3-D ``direction`` (canonical mm
    axes; either sense): ``atan2(d_I, d_P)`` of its posterior-pointing sense."""
    d = np.asarray(direction, dtype=float)
    if d[2] < 0:
        d = -d
    return math.degrees(math.atan2(d[1], d[2]))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def spine_alignment(
    tilts: Mapping[str, tuple[float, float]], segments: Sequence[tuple[str, str, str]]
) -> dict[str, object]:
    """Lordosis, kyphosis and segment angles (degrees, module docstring) from endplate
    tilts ``{vertebra: (tau superior, tau inferior)}`` (NaN where unmeasured) and the
    adjacent vertebrae ``segments`` = ``[(segment name, upper, lower), ...]``."""

    def tau(name: str, side: str) -> float:
        pair = tilts.get(name, (math.nan, math.nan))
        return pair[0] if side == "superior" else pair[1]

    (lu, lus), (ll, lls) = LORDOSIS_ENDS
    (ku, kus), (kl, kls) = KYPHOSIS_ENDS
    angles = {
        name: _finite(tau(upper, "superior") - tau(lower, "superior"))
        for name, upper, lower in segments
    }
    return {
        "lordosis_deg": _finite(tau(lu, lus) - tau(ll, lls)),
        "kyphosis_deg": _finite(tau(kl, kls) - tau(ku, kus)),
        "segment_angles_deg": angles,
        "definitions": {
            "plane": "scanner sagittal plane (canonical axes I, P)",
            "lordosis_deg": "L1 superior to S1 superior endplate, positive = lordotic",
            "kyphosis_deg": "T4 superior to T12 inferior endplate, positive = kyphotic",
            "segment_angles_deg": (
                "superior endplate of the upper to that of the lower vertebra, positive = lordotic"
            ),
        },
    }
