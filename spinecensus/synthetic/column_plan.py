"""The plan of the column: every body, disc, sacral segment and coccyx along arc length ``s``.

Anomalies
---------
* ``"normal"``: C2..C7, T1..T12, L1..L5, sacrum (one instance named ``S1``).
* ``"lumbarization"``: an extra free lumbar vertebra L6 with discs L5-L6 and L6-S1; the
  sacrum below is slightly shorter.
* ``"sacralization"``: L5 fused into the sacrum (no L5-S1 disc; a rudimentary bony-bridged
  remnant instead), names L1..L4, L4-S1, S1; the sacrum instance then contains the fused L5.

The sacrum (S1..S5 plus the rudimentary discs between the fused segments) is one vertebra
instance; rudimentary sacral discs are imaged (thin bright lines) but are not disc class.
The coccyx is imaged as bone but is not labelled.  C1 has no body: it is imaged (anterior
and posterior arches, :mod:`spinecensus.synthetic.landmarks`) but not labelled; the dens
belongs to the C2 instance.

Variants (:mod:`spinecensus.synthetic.variants`) change the plan: 11 or 13 thoracic
vertebrae (``t11``, ``t13``; a T13 is sized between T12 and L1), a labelled S1-S2 remnant
disc splitting the sacrum into instances ``S1`` and ``S2`` (``sacral_disc``), and a C2-C3
block vertebra (``fused_block``: one instance ``C2``, a thin rudiment with an anterior waist
instead of the disc, the disc below named ``C3-C4``).  ``ColumnPlan.names`` are the
instances' names, ``ColumnPlan.vertebrae`` the anatomical levels the painting refers to.

``s`` is in mm and starts at the top of the C2 body (``s = 0``), increasing caudally.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.config import SyntheticConfig
from spinecensus.synthetic.morphometry import (
    BLOCK_RUDIMENT_MM,
    BLOCK_WAIST,
    BODY_DIMS_MM,
    COCCYX_SEGMENT_DIMS_MM,
    REMNANT_DISC_MM,
    SACRAL_RUDIMENT_MM,
    SACRAL_SEGMENT_DIMS_MM,
    disc_height_mm,
)
from spinecensus.synthetic.variants import BLOCK, thoracic_count

ANOMALIES: tuple[str, ...] = ("normal", "lumbarization", "sacralization")


@dataclass
class Segment:
    """A span of the column along s (mm): a labelled body/disc, or an unlabelled piece."""

    s0: float
    s1: float
    sid: int  # instance id, 0 = not labelled (coccyx)
    kind: int  # 1 body, 2 disc, 3 sacral rudiment (labelled as sacrum), 4 coccyx
    depth: float
    width: float
    name: str
    #: anterior narrowing of a rudiment (fraction of the AP depth): a block vertebra's waist
    waist: float = 0.0


@dataclass
class ColumnPlan:
    """The column of one subject along s (mm); sizes already scaled to the subject."""

    names: tuple[str, ...]
    segments: list[Segment]
    centre_s: dict[str, float]  # vertebra / disc name -> s of its middle
    extent_s: dict[str, tuple[float, float]]
    depth: dict[str, float]
    width: dict[str, float]
    s_top: float
    s_bottom: float  # end of the coccyx
    #: anatomical vertebrae C2..S1 (C3 of a block included, the sacrum as ``S1``); keys of
    #: ``centre_s`` / ``extent_s`` / ``depth`` / ``width``, where ``"S1"`` is always the
    #: whole sacrum and a spine of 11 thoracic also has ``"T12"`` (= T11, the last thoracic
    #: level) so that landmarks placed at the thoracolumbar junction find it
    vertebrae: tuple[str, ...] = ()


def level_s(plan: ColumnPlan, name: str, frac: float = 0.5) -> float:
    """Arc length (mm) at fraction ``frac`` of the extent of the named level (0 = top)."""
    a, b = plan.extent_s[name]
    return a + frac * (b - a)


def lumbar_vertebrae(plan: ColumnPlan) -> list[str]:
    """The free lumbar vertebrae of the plan, cranio-caudal (L1..L4, L5 or L6)."""
    return [n for n in plan.names if labels.is_vertebra(n) and n.startswith("L")]


def _level_jitter(rng: np.random.Generator, cfg: SyntheticConfig) -> float:
    """Per-level size factor, normal around 1 with SD ``cfg.level_jitter_sd``, in 0.9..1.1."""
    return float(np.clip(rng.normal(1.0, cfg.level_jitter_sd), 0.9, 1.1))


def column_vertebrae(anomaly: str, n_thoracic: int = 12) -> tuple[str, ...]:
    """Anatomical vertebrae C2 .. S1 of ``anomaly`` with ``n_thoracic`` thoracic levels."""
    verts = labels.vertebrae(anomaly)  # type: ignore[arg-type]
    if n_thoracic == 12:
        return verts
    thoracic = tuple(f"T{i}" for i in range(1, n_thoracic + 1))
    return labels.CERVICAL + thoracic + tuple(v for v in verts if v[0] in "LS")


def instance_names(anomaly: str, variants: Sequence[str] = ()) -> tuple[str, ...]:
    """Instance names C2 .. sacrum, vertebrae and discs interleaved, for ``anomaly`` with
    ``variants``; without variants exactly ``labels.structures(anomaly)``."""
    if not variants:
        return labels.structures(anomaly)  # type: ignore[arg-type]
    verts = list(column_vertebrae(anomaly, thoracic_count(variants)))
    block = "fused_block" in variants
    if block:
        verts.remove(BLOCK[1])
    if "sacral_disc" in variants:
        verts.append("S2")
    out: list[str] = []
    for upper, lower in zip(verts[:-1], verts[1:], strict=True):
        # the disc below a block is named after the block's lowest vertebra (C3-C4)
        disc_upper = BLOCK[1] if block and upper == BLOCK[0] else upper
        out += [upper, f"{disc_upper}-{lower}"]
    out.append(verts[-1])
    return tuple(out)


def plan_levels(
    anomaly: str,
    rng: np.random.Generator,
    scale: float,
    cfg: SyntheticConfig,
    variants: Sequence[str] = (),
    r_var: np.random.Generator | None = None,
) -> ColumnPlan:
    """Lay out C2 .. coccyx along s for ``anomaly`` and ``variants``; sizes x ``scale`` x
    per-level jitter.  ``r_var`` (the variant stream) draws the remnant disc's height."""
    names = instance_names(anomaly, variants)
    verts = column_vertebrae(anomaly, thoracic_count(variants))
    plan = ColumnPlan(names, [], {}, {}, {}, {}, 0.0, 0.0, verts)
    s = _plan_free_vertebrae(plan, anomaly, rng, scale, cfg, variants)
    s = _plan_sacrum(plan, anomaly, rng, scale, cfg, s, variants, r_var)
    plan.s_bottom = _plan_coccyx(plan, scale, s)
    if "T12" not in plan.centre_s:  # 11 thoracic: the junction's landmarks go to T11
        last = [v for v in verts if v[0] == "T"][-1]
        for table in (plan.centre_s, plan.extent_s, plan.depth, plan.width):
            table["T12"] = table[last]  # type: ignore[index]
    return plan


def _body_dims(v: str) -> tuple[float, float, float]:
    """(height, depth, width) in mm of vertebra ``v`` before scaling."""
    if v == "L6":  # lumbarization: the extra free vertebra, L5-like
        h, d, w = BODY_DIMS_MM["L5"]
        return h * 0.96, d * 0.98, w * 1.0
    if v == "T13":  # 13 thoracic: between T12 and L1
        (h0, d0, w0), (h1, d1, w1) = BODY_DIMS_MM["T12"], BODY_DIMS_MM["L1"]
        return (h0 + h1) / 2, (d0 + d1) / 2, (w0 + w1) / 2
    return BODY_DIMS_MM[v]


def _plan_free_vertebrae(
    plan: ColumnPlan,
    anomaly: str,
    rng: np.random.Generator,
    scale: float,
    cfg: SyntheticConfig,
    variants: Sequence[str] = (),
) -> float:
    """C2 .. the last free lumbar vertebra, each with the disc below (a rudiment inside a
    block vertebra); returns the s (mm) of the top of the sacrum."""
    verts = plan.vertebrae
    sid = {n: i + 1 for i, n in enumerate(plan.names)}
    block = "fused_block" in variants
    if block:
        sid[BLOCK[1]] = sid[BLOCK[0]]
    segs, centre, extent = plan.segments, plan.centre_s, plan.extent_s
    depth, width = plan.depth, plan.width
    s = 0.0
    for k, v in enumerate(verts):
        if v == "S1":
            break
        h, d, w = _body_dims(v)
        j = _level_jitter(rng, cfg)
        h, d, w = h * scale * j, d * scale * j, w * scale * j
        segs.append(Segment(s, s + h, sid[v], 1, d, w, v))
        centre[v], extent[v], depth[v], width[v] = s + h / 2, (s, s + h), d, w
        s += h
        lower = verts[k + 1]
        dh = disc_height_mm(v, lower) * scale * _level_jitter(rng, cfg)
        dn = f"{v}-{lower}"
        if block and v == BLOCK[0]:
            # congenital block: no disc, a thin rudiment of the block with a waist
            dh = BLOCK_RUDIMENT_MM * scale
            segs.append(Segment(s, s + dh, sid[v], 3, 0.0, 0.0, dn, waist=BLOCK_WAIST))
        else:
            segs.append(Segment(s, s + dh, sid[dn], 2, 0.0, 0.0, dn))
        centre[dn], extent[dn] = s + dh / 2, (s, s + dh)
        s += dh
    return s


def _plan_sacrum(
    plan: ColumnPlan,
    anomaly: str,
    rng: np.random.Generator,
    scale: float,
    cfg: SyntheticConfig,
    s: float,
    variants: Sequence[str] = (),
    r_var: np.random.Generator | None = None,
) -> float:
    """The sacrum from ``s`` (mm): fused segments with rudimentary discs between them, one
    instance, or (``sacral_disc``) instances S1 and S2 split by a labelled remnant disc;
    returns the s (mm) of the sacral tip."""
    sac_id = plan.names.index("S1") + 1
    seg_dims = list(SACRAL_SEGMENT_DIMS_MM)
    if anomaly == "sacralization":
        h, d, w = BODY_DIMS_MM["L5"]
        # the fused L5: slightly shorter body with broad (alar-like) transverse fusion
        seg_dims = [(h * 0.92, d, w * 1.2), *seg_dims]
    elif anomaly == "lumbarization":
        seg_dims = [(h * 0.93, d, w) for h, d, w in seg_dims]
    # the remnant disc lies below S1 (below the fused L5 and S1 in sacralization)
    split = (1 if anomaly == "sacralization" else 0) if "sacral_disc" in variants else -1
    piece_id, piece = sac_id, "S1"
    s_sac0 = s
    for i, (h, d, w) in enumerate(seg_dims):
        j = _level_jitter(rng, cfg)
        h, d, w = h * scale * j, d * scale * j, w * scale * j
        plan.segments.append(Segment(s, s + h, piece_id, 1, d, w, piece))
        s += h
        if i == split:
            s = _plan_remnant_disc(plan, s, scale, r_var)
            piece_id, piece = plan.names.index("S2") + 1, "S2"
            plan.extent_s["S2"] = (s, np.nan)
        elif i < len(seg_dims) - 1:
            r = (4.0 if (anomaly == "sacralization" and i == 0) else SACRAL_RUDIMENT_MM) * scale
            plan.segments.append(Segment(s, s + r, piece_id, 3, 0.0, 0.0, piece))
            s += r
    plan.centre_s["S1"], plan.extent_s["S1"] = (s_sac0 + s) / 2, (s_sac0, s)
    plan.depth["S1"] = seg_dims[0][1] * scale
    plan.width["S1"] = seg_dims[0][2] * scale
    if "S2" in plan.extent_s:
        s2_top = plan.extent_s["S2"][0]
        plan.centre_s["S2"], plan.extent_s["S2"] = (s2_top + s) / 2, (s2_top, s)
    return s


def _plan_remnant_disc(
    plan: ColumnPlan, s: float, scale: float, r_var: np.random.Generator | None
) -> float:
    """The labelled S1-S2 remnant disc from ``s`` (mm), REMNANT_DISC_MM high (drawn from
    ``r_var``); returns the s (mm) of its lower end."""
    lo, hi = REMNANT_DISC_MM
    r = (float(r_var.uniform(lo, hi)) if r_var is not None else (lo + hi) / 2) * scale
    plan.segments.append(Segment(s, s + r, plan.names.index("S1-S2") + 1, 2, 0.0, 0.0, "S1-S2"))
    plan.centre_s["S1-S2"], plan.extent_s["S1-S2"] = s + r / 2, (s, s + r)
    return s + r


def _plan_coccyx(plan: ColumnPlan, scale: float, s: float) -> float:
    """The coccyx below the sacral tip at ``s`` (mm): imaged bone, not labelled; returns the
    s (mm) of its end."""
    s += 3.0 * scale
    for h, d, w in COCCYX_SEGMENT_DIMS_MM:
        plan.segments.append(Segment(s, s + h * scale, 0, 4, d * scale, w * scale, "Co"))
        s += (h + 2.0) * scale
    return s
