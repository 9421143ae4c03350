"""Vertebral height ratios and the Genant semi-quantitative fracture grade.

Genant's semi-quantitative method (Genant HK, Wu CY, van Kuijk C, Nevitt MC. "Vertebral
fracture assessment using a semiquantitative technique." J Bone Miner Res 1993;
8(9):1137-1148) grades a vertebral body by its largest reduction in anterior, middle or
posterior height: grade 0 below 20 %, grade 1 (mild) 20-25 %, grade 2 (moderate) 25-40 %,
grade 3 (severe) above 40 %.  The reduction is read here from three ratios of the heights
measured by :mod:`spinecensus.measure.heights` (mm):

* wedge ratio ``Ha / Hp`` (anterior against posterior height of the same body);
* biconcavity ratio ``Hm / Hp`` (middle against posterior);
* crush ratio ``Hp / mean(Hp of the adjacent measured vertebrae)``: a crush deformity
  lowers the whole body, so it is seen only against the neighbours.

``reduction = max(1 - ratio)`` over the three (0 when none is below 1), the deformity is
the ratio that gives it.  Genant assessed the bodies T4-L4 on radiographs; the grade is
computed for every free vertebra C3-L6 here (C2 with its dens and the sacrum are not
graded) and analysts restrict it to the levels their protocol reads; the caller withholds
it where the height the reduction is measured against (the body's posterior height; the
neighbours' for a crush) is too few voxels for a 5 % step to be measured
(:data:`spinecensus.measure.morphometrics.MIN_HEIGHT_VOXELS`).  The threshold
applies to the measured reduction; a normal endplate concavity (``Hm / Hp`` of about 0.9)
and the physiological thoracic wedge stay below 20 %.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from spinecensus.anatomy import labels

#: reduction thresholds of grades 1, 2, 3 (fractions): 20 %, 25 %, 40 % (Genant 1993)
GRADE_THRESHOLDS = (0.20, 0.25, 0.40)
#: deformity names, in the order of the ratios in :func:`height_ratios`
DEFORMITIES = ("wedge", "biconcave", "crush")


def is_gradable(name: str) -> bool:
    """A free vertebral body: not C2 (its dens is part of the instance) and not sacral
    (``S1`` is the fused sacrum; ``S2`` the rest of it below a remnant disc)."""
    return labels.is_vertebra(name) and name != "C2" and not name.startswith("S")


def genant_grade(reduction: np.ndarray) -> np.ndarray:
    """Genant grade 0-3 of each height reduction (fraction 0-1); -1 where it is NaN.

    ``reduction < 0.20`` -> 0, ``0.20 <= r < 0.25`` -> 1, ``0.25 <= r < 0.40`` -> 2,
    ``r >= 0.40`` -> 3.
    """
    r = np.asarray(reduction, dtype=float)
    grade = np.searchsorted(np.asarray(GRADE_THRESHOLDS), r, side="right")
    return np.where(np.isfinite(r), grade, -1).astype(np.int8)


def neighbour_posterior_mean(
    names: Sequence[str], hp: np.ndarray, neighbours: Mapping[str, Sequence[str]]
) -> np.ndarray:
    """Per vertebra of ``names``: mean posterior height (mm) of its adjacent vertebrae
    ``neighbours[name]`` that have a finite height and are gradable (not C2 nor sacral);
    NaN without any."""
    height = {
        n: h
        for n, h in zip(names, np.asarray(hp, dtype=float).tolist(), strict=True)
        if math.isfinite(h) and is_gradable(n)
    }
    out = np.full(len(names), np.nan)
    for j, n in enumerate(names):
        near = [height[m] for m in neighbours.get(n, ()) if m in height]
        if near:
            out[j] = float(np.mean(near))
    return out


def height_ratios(
    ha: np.ndarray, hm: np.ndarray, hp: np.ndarray, hp_neighbours: np.ndarray
) -> dict[str, np.ndarray]:
    """Wedge, biconcavity and crush ratios, the largest reduction, its deformity and the
    Genant grade, for arrays of anterior, middle and posterior heights (mm) and the
    neighbours' mean posterior height (mm).

    Returns arrays ``wedge_ratio``, ``biconcavity_ratio``, ``crush_ratio``,
    ``height_reduction`` (fraction, NaN where a height is missing), ``deformity`` (object:
    ``"wedge"``, ``"biconcave"``, ``"crush"`` or None when the grade is 0 or unknown) and
    ``genant_grade`` (int8, -1 where unknown).  The reduction needs all three heights; the
    crush ratio joins it where the neighbours are known.
    """
    ha, hm, hp, ref = (np.asarray(x, dtype=float) for x in (ha, hm, hp, hp_neighbours))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.stack([ha / hp, hm / hp, hp / ref])
    loss = 1.0 - ratios
    known = np.isfinite(loss[0]) & np.isfinite(loss[1])
    filled = np.where(np.isfinite(loss), loss, -np.inf)
    which = np.argmax(filled, axis=0)
    reduction = np.where(known, np.maximum(filled.max(axis=0), 0.0), np.nan)
    grade = genant_grade(reduction)
    names = np.array(DEFORMITIES, dtype=object)[which]
    deformity = np.where(grade > 0, names, None)
    return {
        "wedge_ratio": ratios[0],
        "biconcavity_ratio": ratios[1],
        "crush_ratio": ratios[2],
        "height_reduction": reduction,
        "deformity": deformity,
        "genant_grade": grade,
    }
