"""Planted vertebral fractures and disc narrowing (variants ``fracture``, ``disc_narrowing``).

A ``fracture`` subject has one fractured free body, drawn from
:data:`FRACTURE_LEVEL_WEIGHTS` (levels T4-L5 present in the plan, renormalised), with a
deformity from :data:`DEFORMITY_RATES`, a Genant grade from :data:`GRADE_RATES` and a height
reduction drawn uniformly inside that grade's band (:data:`GRADE_BANDS`), kept
:data:`GRADE_MARGIN` away from the band's thresholds: on a voxel mask a reduction within
about half a voxel of a threshold has no definite grade.  How each deformity is drawn (the
shape the painter sees; :func:`deformed_column`):

* ``wedge``: the tangent of the column turns kyphotically, linearly across the body's arc
  length (a bend of the spine frame): the anterior wall is shortened, the posterior wall and
  both endplates (still normal to the column) keep their shape, the discs are unchanged and
  the spine above angulates forward, as a real wedge fracture does;
* ``biconcave``: both endplates of the body get a central depression (the disc fills it),
  covering the middle 57 % of the depth
  (:data:`spinecensus.synthetic.column_profile.DISH_Q`), the rims untouched;
* ``crush``: the body is shortened along the column (every level below moves up), its
  shape kept.

The amount (bend angle, depression depth, shortening) is solved for so that the Genant
reduction read off the drawn body (:func:`spinecensus.synthetic.truth.genant_grades`: the
largest of the wedge, biconcavity and crush reductions, the last against the adjacent
bodies) equals the drawn reduction to within :data:`TOLERANCE`: the planted grade is then
the grade of the heights in ``truth.json`` by construction (where the field of view cuts a
crushed body's neighbour, ``truth.json`` grades against the other one, as the measurement
does, and may differ).  (For a mild wedge of a deeply
concave lumbar body the biconcavity reduction can be the largest: the grade is planted, the
deformity the rule names can then be ``biconcave``.)

A ``disc_narrowing`` subject has one lumbar disc shortened along the column by a fraction
drawn uniformly in :data:`NARROWING_RANGE` (the levels below move up; its nucleus is drawn
dark, degenerated), from the lumbosacral disc upward with :data:`NARROWING_WEIGHTS`.

Rates and sources (see also ``docs/architecture.md``, "Synthetic variants"):

* levels: acute osteoporotic fractures cluster at the thoracolumbar junction, "L1, T12, and
  L2 were the three most frequently fractured vertebra" (1530 fractured vertebrae of 1182
  patients; 79.9 % of them had one fractured level): Wang F, Sun R, Zhang S-D, Wu X-T,
  J Orthop Surg Res 2023;18:387, doi:10.1186/s13018-023-03874-7 (abstract); prevalent
  deformities also have a smaller mid-thoracic peak at T7-T8 (Kitahara H et al.,
  Osteoporos Int 2013, doi:10.1007/s00198-012-2038-2, results as quoted).  The weights
  themselves are ours, shaped by those statements; one fractured level per subject.
* deformities: among women with one type of deformity, wedge 36.8 %, endplate (biconcave)
  21.8 %, crush 9.2 % (Kitahara 2013), normalised to 0.55 / 0.30 / 0.15.  We read the
  abstract and a copy of the results, not the full paper.
* grades and narrowing: our choice (no source).
* disc narrowing: degeneration is most frequent at L4-L5 and L5-S1 (e.g. Cheung KMC et al.,
  Spine 2009;34:934-940, from memory of the abstract); the weights are ours.

Draws come from a stream of their own, child :data:`FRACTURE_STREAM` of the subject's seed
(six uniforms, always all drawn), so neither variant changes another variant's geometry,
and a subject without them is bit-identical to one from a generator without them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.centreline import Centreline, CurveDraw, centreline_from
from spinecensus.synthetic.column_plan import ColumnPlan, lumbar_vertebrae
from spinecensus.synthetic.column_profile import ColumnProfile, profile_from
from spinecensus.synthetic.drawn_geometry import column_geometry, gradable
from spinecensus.synthetic.truth import genant_grades

#: spawn-key index of the fracture / narrowing stream (0-3 the generator's, 4 the variants')
FRACTURE_STREAM = 5
#: relative weights of the fractured level (normalised over the levels present)
FRACTURE_LEVEL_WEIGHTS: dict[str, float] = {
    "T4": 0.02, "T5": 0.02, "T6": 0.03, "T7": 0.05, "T8": 0.05, "T9": 0.03, "T10": 0.03,
    "T11": 0.06, "T12": 0.18, "L1": 0.22, "L2": 0.12, "L3": 0.08, "L4": 0.07, "L5": 0.04,
}  # fmt: skip
DEFORMITY_RATES: dict[str, float] = {"wedge": 0.55, "biconcave": 0.30, "crush": 0.15}
GRADE_RATES: dict[int, float] = {1: 0.4, 2: 0.4, 3: 0.2}
#: Genant bands of the height reduction (fractions): 20-25 %, 25-40 %, > 40 % (drawn <= 55 %)
GRADE_BANDS: dict[int, tuple[float, float]] = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.55)}
GRADE_MARGIN = 0.015
#: narrowed fraction of a disc's height, and the weights of the lumbar discs from the
#: lumbosacral one upward (L5-S1, L4-L5, L3-L4, L2-L3, L1-L2 in a spine of five lumbar)
NARROWING_RANGE = (0.25, 0.5)
NARROWING_WEIGHTS = (0.40, 0.35, 0.15, 0.07, 0.03)
#: a narrowed disc's nucleus brightness factor at most this (degenerated, dark on T2)
NARROWED_NUCLEUS = 0.4
#: the planted reduction is reached to this (fraction), in at most MAX_STEPS corrections
TOLERANCE = 0.001
MAX_STEPS = 8


@dataclass(frozen=True)
class Fracture:
    """A planted fracture: level, deformity, Genant grade, height reduction (fraction)."""

    level: str
    deformity: str
    grade: int
    reduction: float


@dataclass(frozen=True)
class Narrowing:
    """A planted disc narrowing: the disc and the fraction of its height removed."""

    disc: str
    fraction: float


def _pick(u: float, options: Sequence, weights: Sequence[float]):
    """The option a uniform ``u`` falls on, ``weights`` normalised (None without any)."""
    w = np.asarray(weights, dtype=float)
    if not len(options) or w.sum() <= 0:
        return None
    k = int(np.searchsorted(np.cumsum(w) / w.sum(), u, side="right"))
    return options[min(k, len(options) - 1)]


def draw_deformities(
    seed: int, variants: Sequence[str], plan: ColumnPlan
) -> tuple[Fracture | None, Narrowing | None]:
    """The subject's planted fracture and disc narrowing (None without the variant)."""
    if "fracture" not in variants and "disc_narrowing" not in variants:
        return None, None
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(FRACTURE_STREAM,)))
    u = rng.random(6)  # level, deformity, grade, reduction, disc, fraction
    fracture = narrowing = None
    if "fracture" in variants:
        levels = [n for n in FRACTURE_LEVEL_WEIGHTS if n in plan.names]
        level = _pick(u[0], levels, [FRACTURE_LEVEL_WEIGHTS[n] for n in levels])
        deformity = _pick(u[1], list(DEFORMITY_RATES), list(DEFORMITY_RATES.values()))
        grade = _pick(u[2], list(GRADE_RATES), list(GRADE_RATES.values()))
        lo, hi = GRADE_BANDS[grade]
        reduction = lo + GRADE_MARGIN + float(u[3]) * (hi - lo - 2 * GRADE_MARGIN)
        if level is not None and deformity is not None:
            fracture = Fracture(level, deformity, grade, reduction)
    if "disc_narrowing" in variants:
        lumbar = lumbar_vertebrae(plan)
        below = [*lumbar[1:], "S1"]
        discs = [f"{u_}-{l_}" for u_, l_ in zip(lumbar, below, strict=True)][::-1]
        discs = [d for d in discs if d in plan.names][: len(NARROWING_WEIGHTS)]
        disc = _pick(u[4], discs, NARROWING_WEIGHTS[: len(discs)])
        lo, hi = NARROWING_RANGE
        if disc is not None:
            narrowing = Narrowing(disc, lo + float(u[5]) * (hi - lo))
    return fracture, narrowing


def shorten(plan: ColumnPlan, name: str, delta: float) -> None:
    """Shorten the body or disc ``name`` by ``delta`` mm along the column (negative:
    lengthen), moving everything below it up; in place."""
    k = next(i for i, g in enumerate(plan.segments) if g.name == name and g.kind in (1, 2))
    g = plan.segments[k]
    cut = g.s1
    for h in plan.segments[k + 1 :]:
        h.s0 -= delta
        h.s1 -= delta
    g.s1 -= delta
    for key, (a, b) in list(plan.extent_s.items()):
        a2 = a - delta if a >= cut - 1e-9 else a
        b2 = b - delta if b >= cut - 1e-9 else b
        plan.extent_s[key] = (a2, b2)
        plan.centre_s[key] = (a2 + b2) / 2
    plan.s_bottom -= delta


def _neighbours(plan: ColumnPlan, level: str) -> list[str]:
    verts = [n for n in plan.names if labels.is_vertebra(n)]
    j = verts.index(level)
    return [verts[k] for k in (j - 1, j + 1) if 0 <= k < len(verts) and gradable(verts[k])]


@dataclass
class _Build:
    """What :func:`deformed_column` rebuilds: plan, curve, conus, scale and the amounts."""

    plan: ColumnPlan
    curve: CurveDraw
    conus: float
    scale: float
    bend_rad: float = 0.0
    dish_mm: float = 0.0
    level: str | None = None

    def column(self) -> tuple[Centreline, dict[str, object], ColumnProfile]:
        bends = []
        dish = None
        if self.level is not None:
            g = next(s for s in self.plan.segments if s.name == self.level and s.kind == 1)
            if self.bend_rad:
                bends.append((g.s0, g.s1, -math.degrees(self.bend_rad)))
            if self.dish_mm:
                lo, hi, depth = g.s0, g.s1, self.dish_mm

                def dish(s: np.ndarray) -> np.ndarray:
                    return np.where((s >= lo) & (s < hi), depth, 0.0)

        cl, meta = centreline_from(self.plan, self.curve, bends)
        return cl, meta, profile_from(self.plan, self.conus, self.scale, dish)


def deformed_column(
    plan: ColumnPlan,
    curve: CurveDraw,
    conus_mm: float,
    scale: float,
    fracture: Fracture | None = None,
    narrowing: Narrowing | None = None,
) -> tuple[Centreline, dict[str, object], ColumnProfile]:
    """The centreline, its details and the profiles of ``plan`` (changed in place by a
    narrowing or a crush) with the planted deformities (module doc); without any, exactly
    ``centreline_from(plan, curve)`` and ``profile_from(plan, conus_mm, scale)``."""
    if narrowing is not None:
        g = next(s for s in plan.segments if s.name == narrowing.disc)
        shorten(plan, narrowing.disc, narrowing.fraction * (g.s1 - g.s0))
    b = _Build(plan, curve, conus_mm, scale)
    cl, meta, prof = b.column()
    if fracture is None:
        return cl, meta, prof
    b.level = fracture.level
    names = [fracture.level, *_neighbours(plan, fracture.level)]
    crushed = 0.0
    for _step in range(MAX_STEPS + 1):  # Newton-like steps on the amount, slopes below
        geo = column_geometry(plan, cl, prof, names)
        got = genant_grades(plan.names, geo)[fracture.level][0]
        miss = got - fracture.reduction
        if abs(miss) <= TOLERANCE or _step == MAX_STEPS:
            break
        g = geo[fracture.level]
        if fracture.deformity == "wedge":  # d(1 - Ha/Hp) / d bend = depth / Hp
            b.bend_rad = max(b.bend_rad - miss * g.height_posterior / g.depth, 0.0)
        elif fracture.deformity == "biconcave":  # d(1 - Hm/Hp) / d dish = 2 / Hp
            b.dish_mm = max(b.dish_mm - miss * g.height_posterior / 2, 0.0)
        else:  # d(1 - Hp/ref) / d shortening = 1 / ref
            ref = float(np.mean([geo[n].height_posterior for n in names[1:]]))
            step = max(-miss * ref, -crushed)
            shorten(plan, fracture.level, step)
            crushed += step
        cl, meta, prof = b.column()
    meta = {**meta, "fracture": {"level": fracture.level, "deformity": fracture.deformity,
                                 "bend_deg": math.degrees(b.bend_rad), "dish_mm": b.dish_mm,
                                 "shortened_mm": crushed}}  # fmt: skip
    return cl, meta, prof
