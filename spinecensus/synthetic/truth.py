"""The planted truth of a synthetic subject (``truth.json``): each body's and disc's drawn
heights (:mod:`spinecensus.synthetic.drawn_geometry`), each body's Genant grade read from
them, the lumbar lordosis and thoracic kyphosis, and what was planted.

The Genant grade is read from the drawn heights by Genant's rule (:func:`genant_grades`,
thresholds 20 / 25 / 40 % of the largest reduction of Ha/Hp, Hm/Hp and Hp against the mean
Hp of the adjacent bodies in view).  Lordosis is the angle from the superior endplate line
of L1 to that of S1 (the inferior line of the disc above the sacrum), kyphosis from the
superior endplate of T4 to the inferior of T12, in the sagittal plane of the image
(degrees; the sign conventions of :mod:`spinecensus.measure.alignment`).  Only
structures wholly in view count (:func:`truth_json`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.centreline import Centreline
from spinecensus.synthetic.column_plan import ColumnPlan
from spinecensus.synthetic.column_profile import ColumnProfile
from spinecensus.synthetic.drawn_geometry import Geometry, column_geometry, gradable

#: Genant's reduction thresholds of grades 1, 2, 3 (Genant et al., J Bone Miner Res 1993)
GRADE_THRESHOLDS = (0.20, 0.25, 0.40)
DEFORMITIES = ("wedge", "biconcave", "crush")


def genant_grades(
    names: Sequence[str], geo: Mapping[str, Geometry]
) -> dict[str, tuple[float, int, str | None]]:
    """Per gradable body of ``names`` (instance names in view, cranio-caudal) with a
    geometry: (height reduction, Genant grade, deformity or None) by Genant's rule
    (module doc); the crush ratio against the adjacent gradable bodies of ``names``."""
    verts = [n for n in names if labels.is_vertebra(n)]
    out = {}
    for j, n in enumerate(verts):
        if n not in geo or not gradable(n):
            continue
        g = geo[n]
        near = [verts[k] for k in (j - 1, j + 1) if 0 <= k < len(verts)]
        ref = [geo[m].height_posterior for m in near if m in geo and gradable(m)]
        losses = [1 - g.height_anterior / g.height_posterior,
                  1 - g.height_middle / g.height_posterior,
                  1 - g.height_posterior / float(np.mean(ref)) if ref else -math.inf]  # fmt: skip
        worst = int(np.argmax(losses))
        red = max(losses[worst], 0.0)
        grade = int(np.searchsorted(GRADE_THRESHOLDS, red, side="right"))
        out[n] = (red, grade, DEFORMITIES[worst] if grade > 0 else None)
    return out


@dataclass(frozen=True)
class PlantedTruth:
    """A subject's drawn geometry (every free body and labelled disc, whether in view or
    not) and what was planted: ``fractures`` (level, deformity, grade, reduction) and
    ``narrowed`` (disc -> fraction of its height removed)."""

    geometry: dict[str, Geometry]
    fractures: tuple[dict[str, object], ...] = ()
    narrowed: dict[str, float] | None = None


def planted_truth(
    plan: ColumnPlan, cl: Centreline, prof: ColumnProfile, fracture=None, narrowing=None
) -> PlantedTruth:
    """The :class:`PlantedTruth` of a drawn column (``fracture`` /
    ``narrowing``: :mod:`spinecensus.synthetic.fracture`'s, or None)."""
    planted: tuple[dict[str, object], ...] = ()
    if fracture is not None:
        f = fracture
        planted = ({"level": f.level, "deformity": f.deformity, "grade": f.grade,
                    "reduction": round(f.reduction, 4)},)  # fmt: skip
    narrowed = {narrowing.disc: round(narrowing.fraction, 4)} if narrowing is not None else {}
    return PlantedTruth(column_geometry(plan, cl, prof), planted, narrowed)


@dataclass(frozen=True)
class DrawnColumn:
    """What a subject's truth is read from: the final plan, centreline and profiles and the
    planted fracture and narrowing (``SyntheticSubject.drawn``).  Kept instead of the
    truth itself because tracing every structure costs ~0.1 s, twice a tiny subject's
    generation: :meth:`truth` is computed when asked (``truth.json``, tests)."""

    plan: ColumnPlan
    cl: Centreline
    prof: ColumnProfile
    fracture: object = None
    narrowing: object = None

    def truth(self) -> PlantedTruth:
        return planted_truth(self.plan, self.cl, self.prof, self.fracture, self.narrowing)


def in_view(instances: np.ndarray, id_to_name: Mapping[int, str]) -> list[str]:
    """Names of the instances wholly in view: present, and their bounding box touches
    neither the superior/inferior nor the anterior/posterior border of the volume (as
    ``spinecensus.measure`` calls a structure truncated)."""
    from scipy import ndimage

    boxes = ndimage.find_objects(instances)
    shape = instances.shape
    out = []
    for i in sorted(id_to_name):
        box = boxes[i - 1] if 0 < i <= len(boxes) else None
        if box is None:
            continue
        if all(0 < box[ax].start and box[ax].stop < shape[ax] for ax in (1, 2)):
            out.append(id_to_name[i])
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


def _heights(g: Geometry) -> dict[str, float | None]:
    return {
        "height_anterior_mm": _round(g.height_anterior),
        "height_middle_mm": _round(g.height_middle),
        "height_posterior_mm": _round(g.height_posterior),
    }


def _angles(geo: Mapping[str, Geometry], names: Sequence[str]) -> dict[str, float | None]:
    """Lordosis (L1 superior to S1 superior: the inferior line of the disc above the
    sacrum) and kyphosis (T4 superior to T12 inferior), degrees, None where not in view."""
    sacral_disc = next((n for n in names if labels.is_disc(n) and n.endswith("-S1")), None)
    lordosis = kyphosis = None
    if "L1" in geo and sacral_disc in geo and "S1" in names:
        lordosis = geo["L1"].tilts_deg[0] - geo[sacral_disc].tilts_deg[1]  # type: ignore[index]
    if "T4" in geo and "T12" in geo:
        kyphosis = geo["T12"].tilts_deg[1] - geo["T4"].tilts_deg[0]
    return {"lordosis_deg": _round(lordosis), "kyphosis_deg": _round(kyphosis)}


def truth_json(
    instances: np.ndarray, id_to_name: Mapping[int, str], truth: PlantedTruth
) -> dict[str, object]:
    """``truth.json`` of a subject: the structures wholly in view (:func:`in_view`) of its
    instance volume (canonical order) with their drawn heights (mm), each body's Genant
    grade (read from those heights, module doc) and rule deformity, each disc's planted
    narrowing, lordosis and kyphosis (degrees), the planted fractures, and the definitions."""
    names = [id_to_name[i] for i in sorted(id_to_name)]
    seen = set(in_view(instances, id_to_name))
    geo = {n: g for n, g in truth.geometry.items() if n in seen}
    grades = genant_grades(names, geo)
    narrowed = truth.narrowed or {}
    vertebrae = {
        n: {**_heights(geo[n]), "genant_grade": grades[n][1], "deformity": grades[n][2],
            "height_reduction": _round(grades[n][0])}
        for n in names if n in geo and gradable(n)
    }  # fmt: skip
    discs = {
        n: {**_heights(geo[n]), "narrowing": narrowed.get(n, 0.0)}
        for n in names
        if n in geo and labels.is_disc(n)
    }
    return {
        "vertebrae": vertebrae,
        **_angles(geo, names),
        "discs": discs,
        "fractures": [dict(f) for f in truth.fractures if f["level"] in seen],
        "definitions": DEFINITIONS,
    }


#: the ``definitions`` entry of ``truth.json``
DEFINITIONS = {
    "heights": "six-point morphometry of the drawn outline in its mid-sagittal plane "
    "(docs/morphometrics.md): corners where the rim-band endplate lines (5-15 % inside "
    "each corner) meet the wall lines; middle = mean over the central 10 % of the depth; mm",
    "genant_grade": "Genant's rule on these heights: largest of 1 - Ha/Hp, 1 - Hm/Hp and "
    "1 - Hp / mean Hp of the adjacent free bodies in view; < 20 % -> 0, 20-25 % -> 1, "
    "25-40 % -> 2, >= 40 % -> 3",
    "lordosis_deg": "L1 superior to S1 superior endplate line (the inferior line of the disc "
    "above the sacrum), image sagittal plane, positive = lordotic",
    "kyphosis_deg": "T4 superior to T12 inferior endplate line, positive = kyphotic",
    "in_view": "structures whose bounding box touches no superior/inferior or "
    "anterior/posterior border of the volume",
    "source": "synthetic: spinecensus.synthetic.truth",
}
