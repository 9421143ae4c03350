"""The spine frame: the curved posterior wall line of the bodies and its sagittal curvature.

Geometry (why it is built this way)
-----------------------------------
The column is described in a curved "spine frame": ``s`` = arc length (mm) along the
*posterior wall line* of the vertebral bodies (the line the spinal canal runs along; it is
smooth even though body depths change from level to level), ``v`` = signed distance from it
along the in-plane normal (negative = anterior, so a body occupies ``-depth <= v <= 0``) and
``w`` = lateral distance from the (slightly offset / tilted) midsagittal plane.  The
centreline is the integral of a sagittal tangent angle that is interpolated through
per-region knots: cervical lordosis, thoracic kyphosis, lumbar lordosis, sacral kyphosis
(each with a random per-subject amplitude) plus a small random rotation of the whole spine.
Because bodies and discs partition ``s``, endplates follow the local spine direction, bodies
become wedged on the curve, and neighbouring bodies and discs always touch (the column is
one connected object, as in real masks).  Disc/body boundaries are slightly concave (the
disc bulges into the endplate centre); discs bulge anteriorly and posteriorly.

World coordinates of the sagittal plane are ``y`` (mm, toward inferior) and ``z`` (mm,
toward posterior), as axes 1 and 2 of the canonical voxel order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spinecensus.synthetic.column_plan import ColumnPlan, lumbar_vertebrae
from spinecensus.synthetic.config import SyntheticConfig


@dataclass
class Centreline:
    """The posterior wall line of the bodies, sampled every ``ds`` mm of arc length."""

    s: np.ndarray  # arc length samples (mm)
    y: np.ndarray  # inferior coordinate (mm)
    z: np.ndarray  # posterior coordinate (mm)
    theta: np.ndarray  # tangent angle from the inferior axis toward posterior (rad)
    ds: float
    #: local bends (fracture wedges) make the curvature large: :meth:`project` then takes
    #: Newton steps (see there); False keeps the plain steps of every other subject
    bent: bool = False

    def at(self, s: np.ndarray | float):
        """(y, z, theta) at arc length ``s`` (linear interpolation, clamped)."""
        return (
            np.interp(s, self.s, self.y),
            np.interp(s, self.s, self.z),
            np.interp(s, self.s, self.theta),
        )

    def point(self, s: float, dv: float = 0.0, du: float = 0.0) -> tuple[float, float]:
        """World (y, z) of the spine-frame point (s + du, v = dv)."""
        y, z, th = self.at(s + du)
        return float(y - dv * math.sin(th)), float(z + dv * math.cos(th))

    def points(self, s: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (y, z) of spine-frame points (s, v) (arrays, mm)."""
        y, z, th = self.at(s)
        return y - v * np.sin(th), z + v * np.cos(th)

    def project(self, yy: np.ndarray, zz: np.ndarray, iters: int = 3):
        """Spine-frame (s, v) of world points, by steps along the tangent from the same-row
        guess.  A plain step converges by a factor ``|v dtheta/ds|`` per step: ample on the
        smooth curve, too slow near a fracture's bend (``bent``: 0.5 at the anterior wall
        of a severe wedge), where Newton steps (the step divided by ``1 - v dtheta/ds``)
        are taken instead, twice as many."""
        if self.bent:
            return self._project_newton(yy, zz, 2 * iters)
        s = np.interp(yy, self.y, self.s)
        for _ in range(iters):
            cy, cz, th = self.at(s)
            s = s + (yy - cy) * np.cos(th) + (zz - cz) * np.sin(th)
            s = np.clip(s, self.s[0], self.s[-1])
        cy, cz, th = self.at(s)
        v = -(yy - cy) * np.sin(th) + (zz - cz) * np.cos(th)
        return s, v

    def _project_newton(self, yy: np.ndarray, zz: np.ndarray, iters: int):
        kappa = np.gradient(self.theta, self.s)  # dtheta/ds (1/mm)
        s = np.interp(yy, self.y, self.s)
        for _ in range(iters):
            cy, cz, th = self.at(s)
            dy, dz = yy - cy, zz - cz
            v = -dy * np.sin(th) + dz * np.cos(th)
            # beyond a bend's centre of curvature the foot is not unique: keep the step sane
            denom = np.maximum(1.0 - v * np.interp(s, self.s, kappa), 0.25)
            s = np.clip(s + (dy * np.cos(th) + dz * np.sin(th)) / denom, self.s[0], self.s[-1])
        cy, cz, th = self.at(s)
        v = -(yy - cy) * np.sin(th) + (zz - cz) * np.cos(th)
        return s, v


@dataclass(frozen=True)
class CurveDraw:
    """A subject's random curve parameters: curvature scales (cervical, thoracic, lumbar,
    sacral), whole-spine rotation (degrees) and sagittal balance (mm)."""

    kc: float
    kt: float
    kl: float
    ks: float
    rot: float
    balance: float


def draw_curve(rng: np.random.Generator, cfg: SyntheticConfig) -> CurveDraw:
    """Draw the curve parameters (the anatomy stream's draws of :func:`build_centreline`)."""
    lo, hi = cfg.curvature_scale
    kc, kt, kl, ks = rng.uniform(lo, hi, size=4)
    rot = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    balance = rng.uniform(-10.0, 25.0)
    return CurveDraw(kc, kt, kl, ks, rot, balance)


def build_centreline(
    plan: ColumnPlan, rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[Centreline, dict[str, object]]:
    """The subject's centreline (random curvatures, sagittal balance, rotation) and its
    generation details for ``SyntheticSubject.meta``."""
    return centreline_from(plan, draw_curve(rng, cfg))


def centreline_from(
    plan: ColumnPlan, draw: CurveDraw, bends: Sequence[tuple[float, float, float]] = ()
) -> tuple[Centreline, dict[str, object]]:
    """The centreline of ``plan`` with the curve ``draw``, and its generation details.

    ``bends``: ``(s0, s1, dtheta_deg)`` each (mm, mm, degrees): the tangent angle turns by
    ``dtheta_deg`` linearly between arc lengths ``s0`` and ``s1`` (a fracture's wedge:
    negative = kyphotic, the anterior side shortened), on top of the smooth curve and
    before the sagittal balance is solved.
    """
    from scipy.interpolate import PchipInterpolator

    kc, kt, kl, ks, rot, balance = (
        draw.kc, draw.kt, draw.kl, draw.ks, draw.rot, draw.balance,
    )  # fmt: skip
    knots_s, knots_t = _tangent_knots(plan, kc, kt, kl, ks)
    ds = 0.5
    s = np.arange(-300.0, plan.s_bottom + 200.0 + ds, ds)
    shape = PchipInterpolator(knots_s, knots_t)(s)
    for s0, s1, dtheta in bends:
        shape = shape + dtheta * np.clip((s - s0) / (s1 - s0), 0.0, 1.0)
    i0 = int(np.searchsorted(s, 0.0))
    i1 = int(np.searchsorted(s, plan.extent_s["S1"][0]))

    def integrate(offset_deg: float):
        th = np.deg2rad(shape + offset_deg)
        # integrate the unit tangent (dy, dz) = (cos, sin) with the trapezoid rule
        dy, dz = np.cos(th), np.sin(th)
        yy = np.concatenate([[0.0], np.cumsum((dy[1:] + dy[:-1]) * ds / 2)])
        zz = np.concatenate([[0.0], np.cumsum((dz[1:] + dz[:-1]) * ds / 2)])
        return th, yy - yy[i0], zz - zz[i0]

    # the drift z(S1) - z(C2) is almost linear in the offset: two secant steps solve it
    o0, o1 = -5.0, 5.0
    d0, d1 = integrate(o0)[2][i1], integrate(o1)[2][i1]
    for _ in range(2):
        o2 = o1 + (balance - d1) * (o1 - o0) / (d1 - d0)
        o0, d0, o1, d1 = o1, d1, o2, integrate(o2)[2][i1]
    theta, y, z = integrate(o1 + rot)
    meta = {
        "curvature_scale": {
            "cervical": float(kc),
            "thoracic": float(kt),
            "lumbar": float(kl),
            "sacral": float(ks),
        },
        "rotation_deg": float(rot),
        "balance_mm": float(balance),
    }
    return Centreline(s, y, z, theta, ds, bent=bool(bends)), meta


def _tangent_knots(
    plan: ColumnPlan, kc: float, kt: float, kl: float, ks: float
) -> tuple[list[float], list[float]]:
    """Knots (s in mm, tangent angle in deg) of the sagittal curvature, before the offset.

    ``kc``, ``kt``, ``kl``, ``ks`` scale the cervical, thoracic, lumbar and sacral curves.
    """
    c = plan.centre_s
    lumbar = lumbar_vertebrae(plan)
    s_sac0, s_sac1 = plan.extent_s["S1"]
    # tangent angle knots (deg; 0 = straight down, + = heading posteriorly):
    # cervical lordosis C2->C7 (+25), thoracic kyphosis T1->T12 (-40), lumbar lordosis
    # L1->S1 (+50), sacral kyphosis (-30); an offset angle is solved in build_centreline so
    # that the top of S1 lies ``balance`` mm posterior of the top of C2 (sagittal balance:
    # the C7 plumb line falls near the posterior-superior corner of S1), before the random
    # rotation.
    th0 = 0.0
    t_c7 = th0 + 25.0 * kc
    t_t12 = t_c7 - 40.0 * kt
    t_s1 = t_t12 + 50.0 * kl
    knots_s = [
        -300.0,
        c["C2"],
        c["C7"],
        c["T6"],
        c["T12"],
        c[lumbar[len(lumbar) // 2]],
        s_sac0,
        s_sac1,
        plan.s_bottom + 200.0,
    ]
    knots_t = [
        th0,
        th0,
        t_c7,
        (t_c7 + t_t12) / 2,
        t_t12,
        (t_t12 + t_s1) / 2 - 3.0,
        t_s1,
        t_s1 - 30.0 * ks,
        t_s1 - 45.0 * ks,
    ]
    return knots_s, knots_t
