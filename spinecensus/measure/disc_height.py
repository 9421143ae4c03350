"""Disc height index: Farfan's ratio.

Definition (Farfan HF. *Mechanical Disorders of the Low Back.* Philadelphia: Lea &
Febiger, 1973): the sum of the anterior and posterior disc heights divided by the
antero-posterior length of the adjacent vertebral endplate,

    ``disc_height_index = (Ha_disc + Hp_disc) / depth of the vertebral body above``

(dimensionless; e.g. about 0.6 for a healthy adult lumbar disc of 11 + 7 mm over a 32 mm
endplate).  Dividing by the body's depth removes the subject's size and the image
magnification.  The disc heights are those of :mod:`spinecensus.measure.heights` (endplate
lines at the disc's anterior and posterior margins, mm); the depth is the upper body's
antero-posterior depth measured at its mid-height (mm), which stands for the length of its
inferior endplate in Farfan's radiographic definition.  A disc whose upper body is not
measured (out of view or truncated, and C2, whose dens makes its depth meaningless,
above C2-C3) has no index.
"""

from __future__ import annotations

import numpy as np


def upper_vertebra(disc: str) -> str:
    """Name of the vertebra above a disc: ``"L4-L5"`` -> ``"L4"``."""
    return disc.split("-")[0]


def farfan_index(
    height_anterior: np.ndarray, height_posterior: np.ndarray, depth_upper_body: np.ndarray
) -> np.ndarray:
    """``(Ha + Hp) / depth`` elementwise (mm / mm); NaN where any input is missing or the
    depth is not positive."""
    ha, hp, d = (
        np.asarray(x, dtype=float) for x in (height_anterior, height_posterior, depth_upper_body)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, (ha + hp) / d, np.nan)
