"""1-D profiles along the arc length ``s``: the column's cross-section, canal, cord and arch.

Every profile is sampled every ``PROFILE_STEP_MM`` of ``s`` (mm, spine frame of
:mod:`spinecensus.synthetic.centreline`); distances ``v`` (mm) are from the posterior wall
line, negative = anterior; widths are lateral (mm).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from spinecensus.synthetic.column_plan import ColumnPlan, Segment, lumbar_vertebrae

PROFILE_STEP_MM = 0.2  # profile sampling step along s (mm)


@dataclass
class ColumnProfile:
    """Per-``s`` sample of the column's cross-section (mm), starting at ``s0``."""

    s0: float
    n: int
    sid: np.ndarray  # base instance id (no concavity), 0 outside the labelled column
    kind: np.ndarray  # 0 none, 1 body, 2 disc, 3 rudiment (sacrum), 4 coccyx, 5 dens
    front: np.ndarray  # v of the anterior surface (negative)
    back: np.ndarray  # v of the posterior surface (~0)
    halfw: np.ndarray  # lateral half width
    # nearest labelled disc: id, centre s, half height, endplate concavity, ids above/below
    d_id: np.ndarray
    d_m: np.ndarray
    d_h: np.ndarray
    d_c: np.ndarray
    up_id: np.ndarray
    dn_id: np.ndarray
    # spinal canal (bony canal and thecal sac) and cord; 0 where absent
    can_ap: np.ndarray
    can_w: np.ndarray
    sac_ap: np.ndarray
    sac_w: np.ndarray
    cord_ap: np.ndarray
    cord_w: np.ndarray
    arch: np.ndarray  # bool: posterior arch (pedicles + laminae) present
    lam: np.ndarray  # lamina thickness
    roots: np.ndarray  # bool: cauda equina (nerve roots in the sac below the conus)
    #: extra central endplate depression (mm) of a biconcave fracture, on the fractured
    #: body's samples only (:func:`endplate_offset`); None: none anywhere
    dish: np.ndarray | None = None

    def idx(self, s: np.ndarray) -> np.ndarray:
        return np.clip(((s - self.s0) / PROFILE_STEP_MM + 0.5).astype(np.intp), 0, self.n - 1)


#: a biconcave fracture's depression covers the endplate where ``q < DISH_Q`` (q = 0 at
#: the centre, 1 at the rim): in the mid-sagittal plane the central 2 * 0.25**0.4 = 57 % of
#: the depth, so the flat ring the rim lines are fitted on (5-15 % inside the corners,
#: docs/morphometrics.md) keeps its place and the posterior and anterior heights theirs
DISH_Q = 0.25


def endplate_offset(p: ColumnProfile, i: np.ndarray, q: np.ndarray) -> np.ndarray:
    """How far (mm, along s) the disc reaches into the body beyond its half height at the
    profile samples ``i`` and cross-section positions ``q`` (0 at the centre, 1 at the
    rim; ``i`` broadcast against ``q``'s last axis): the normal endplate concavity
    ``d_c (1 - q)`` plus a biconcave fracture's central depression ``dish (1 - q/DISH_Q)``
    where ``q < DISH_Q``."""
    off = p.d_c[i] * (1.0 - q)
    if p.dish is not None:
        off = off + p.dish[i] * np.maximum(1.0 - q / DISH_Q, 0.0)
    return off


def draw_conus(rng: np.random.Generator) -> float:
    """Offset (mm) of the conus from the middle of L1 (the anatomy stream's draw of
    :func:`build_profile`)."""
    return float(rng.uniform(-8.0, 12.0))


def build_profile(plan: ColumnPlan, rng: np.random.Generator, scale: float) -> ColumnProfile:
    """The profiles of the planned column; ``rng`` draws the level of the conus."""
    return profile_from(plan, draw_conus(rng), scale)


def profile_from(
    plan: ColumnPlan,
    conus_mm: float,
    scale: float,
    dish: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ColumnProfile:
    """The profiles of the planned column with the conus ``conus_mm`` below the middle of
    L1; ``dish`` (a function of the sample positions ``s``, mm -> mm, or None) gives the
    biconcave depressions."""
    s0 = -60.0
    s = np.arange(s0, plan.s_bottom + 5.0, PROFILE_STEP_MM)
    sid, kind, front, back, halfw = _body_and_disc_outline(s, plan.segments, scale)
    _add_dens(s, plan.segments[0], scale, sid, kind, front, back, halfw)
    d_id, d_m, d_h, d_c = _nearest_disc(s, plan.segments, scale)
    can_ap, can_w, sac_ap, sac_w = _canal(s, plan, scale)
    s_conus, cord_ap, cord_w = _cord(s, plan, conus_mm, scale)
    arch, lam = _posterior_arch(s, plan, scale)
    return ColumnProfile(
        s0, s.size, sid, kind, front, back, halfw, d_id, d_m, d_h, d_c, d_id - 1, d_id + 1,
        can_ap, can_w, sac_ap, sac_w, cord_ap, cord_w, arch, lam,
        (s > s_conus - 5.0) & (sac_ap > 0), None if dish is None else dish(s),
    )  # fmt: skip


def _body_and_disc_outline(s: np.ndarray, segs: list[Segment], scale: float):
    """(sid, kind, front, back, halfw) of bodies, coccyx, discs and sacral rudiments."""
    n = s.size
    sid = np.zeros(n, np.int32)
    kind = np.zeros(n, np.int8)
    front = np.zeros(n)
    back = np.zeros(n)
    halfw = np.zeros(n)
    # bodies (and coccyx) first, then discs interpolate between their neighbours
    for g in segs:
        sel = (s >= g.s0) & (s < g.s1)
        if g.kind in (1, 4):
            u = (s[sel] - g.s0) / (g.s1 - g.s0)
            waist = 1.0 - 0.05 * (1.0 - (2.0 * u - 1.0) ** 2)  # bodies are waisted
            front[sel] = -g.depth * waist
            back[sel] = 0.0 if g.kind == 1 else -0.1 * g.depth
            if g.kind == 4:  # coccyx curves forward and is centred in front of the canal line
                front[sel] = -g.depth - 2.0
            halfw[sel] = g.width / 2 * waist
        sid[sel] = g.sid
        kind[sel] = g.kind
    for i, g in enumerate(segs):
        if g.kind not in (2, 3):
            continue
        up, dn = segs[i - 1], segs[i + 1]
        sel = (s >= g.s0) & (s < g.s1)
        t = (s[sel] - g.s0) / (g.s1 - g.s0)
        bulge = 4.0 * t * (1.0 - t)
        d = (1 - t) * up.depth + t * dn.depth
        w = (1 - t) * up.width + t * dn.width
        if g.kind == 2:
            front[sel] = -d * (1.0 + 0.05 * bulge)
            back[sel] = 1.2 * scale * bulge  # posterior bulge into the canal
            halfw[sel] = w / 2 * (1.0 + 0.04 * bulge)
        else:  # rudiment: flush with its neighbours, or a block vertebra's waist
            front[sel], back[sel], halfw[sel] = -d * (1.0 - g.waist * bulge), 0.0, w / 2
    return sid, kind, front, back, halfw


def _add_dens(
    s: np.ndarray,
    c2: Segment,
    scale: float,
    sid: np.ndarray,
    kind: np.ndarray,
    front: np.ndarray,
    back: np.ndarray,
    halfw: np.ndarray,
) -> None:
    """The dens of C2 above the body (part of the C2 instance), in place."""
    dens_len = 15.0 * scale
    sel = (s >= -dens_len) & (s < 0.0)
    t = (s[sel] + dens_len) / dens_len  # 0 at the tip, 1 at the body
    dd = (6.0 + 4.0 * np.sqrt(t)) * scale
    centre_v = -0.45 * c2.depth
    front[sel], back[sel] = centre_v - dd / 2, centre_v + dd / 2
    halfw[sel] = dd / 2
    sid[sel] = c2.sid
    kind[sel] = 5


def _nearest_disc(s: np.ndarray, segs: list[Segment], scale: float):
    """(id, centre s, half height, endplate concavity) of the nearest labelled disc."""
    discs = [g for g in segs if g.kind == 2]
    mids = np.array([(g.s0 + g.s1) / 2 for g in discs])
    cut = (mids[1:] + mids[:-1]) / 2
    k = np.searchsorted(cut, s)
    d_id = np.array([g.sid for g in discs], np.int32)[k]
    d_m = mids[k]
    d_h = np.array([(g.s1 - g.s0) / 2 for g in discs])[k]
    # endplate concavity (mm): the disc bulges into the body centre, more in the lumbar spine
    conc = np.array(
        [(0.5 if g.name[0] == "C" else 0.8 if g.name[0] == "T" else 1.5) * scale for g in discs]
    )
    return d_id, d_m, d_h, conc[k]


def _canal(s: np.ndarray, plan: ColumnPlan, scale: float):
    """(bony canal AP, width, thecal sac AP, width): AP / width knots (mm) by level; the
    thecal sac ends at S2, the bony canal continues (tapering) to the sacral tip."""
    c = plan.centre_s
    lumbar = lumbar_vertebrae(plan)
    sac0, sac1 = plan.extent_s["S1"]
    ks = [-60.0, c["C2"], c["C5"], c["T1"], c["T6"], c["T12"], c[lumbar[-1]], sac0]
    ap = np.interp(s, ks, [18, 16, 14, 14, 13, 15, 16, 13]) * scale
    wd = np.interp(s, ks, [30, 23, 25, 18, 17, 21, 24, 20]) * scale
    s_s2 = sac0 + 0.33 * (sac1 - sac0)
    sac_ap = np.where(s < s_s2, ap, 0.0)
    sac_w = np.where(s < s_s2, wd, 0.0)
    taper = np.clip((sac1 - s) / (sac1 - s_s2), 0.0, 1.0)
    can_ap = np.where(s < s_s2, ap + 3.0 * scale, (ap * 0.5 + 1.0) * (0.4 + 0.6 * taper))
    can_w = np.where(s < s_s2, wd + 4.0 * scale, (wd * 0.7) * (0.4 + 0.6 * taper))
    can_ap = np.where(s < sac1, can_ap, 0.0)
    can_w = np.where(s < sac1, can_w, 0.0)
    return can_ap, can_w, sac_ap, sac_w


def _cord(s: np.ndarray, plan: ColumnPlan, conus_mm: float, scale: float):
    """(s of the conus, cord AP, cord width): the cord runs to the conus near L1
    (``conus_mm`` below its middle, tapering over its last 20 mm), with the cervical
    enlargement."""
    c = plan.centre_s
    s_conus = c["L1"] + conus_mm
    cap = np.interp(s, [-60.0, c["C5"], c["T6"], c["T12"]], [11.0, 8.5, 7.0, 8.0]) * scale
    cw = np.interp(s, [-60.0, c["C5"], c["T6"], c["T12"]], [13.0, 13.0, 9.0, 9.0]) * scale
    cone = np.clip((s_conus - s) / 20.0, 0.0, 1.0)
    return s_conus, cap * np.sqrt(cone), cw * np.sqrt(cone)


def _posterior_arch(s: np.ndarray, plan: ColumnPlan, scale: float):
    """(arch present, lamina thickness): per vertebra from 15 % of the body to half-way
    through the disc below."""
    segs = plan.segments
    arch = np.zeros(s.size, bool)
    lam = np.zeros(s.size)
    for g_i, g in enumerate(segs):
        if g.kind != 1 or g.sid == 0:
            continue
        nxt = segs[g_i + 1] if g_i + 1 < len(segs) else None
        end = g.s1 + (0.6 * (nxt.s1 - nxt.s0) if nxt is not None and nxt.kind == 2 else 0.0)
        sel = (s >= g.s0 + 0.15 * (g.s1 - g.s0)) & (s < end)
        arch[sel] = True
        lam[sel] = (5.0 if g.name[0] == "C" else 6.0 if g.name[0] == "T" else 7.0) * scale
    # C1 posterior arch is painted as a landmark; sacral laminae are thin
    sac0, sac1 = plan.extent_s["S1"]
    sac = (s >= sac0) & (s < sac1)
    arch[sac] = True
    lam[sac] = 4.0 * scale
    return arch, lam
