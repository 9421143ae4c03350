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

``s`` is in mm and starts at the top of the C2 body (``s = 0``), increasing caudally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.config import SyntheticConfig
from spinecensus.synthetic.morphometry import (
    BODY_DIMS_MM,
    COCCYX_SEGMENT_DIMS_MM,
    SACRAL_RUDIMENT_MM,
    SACRAL_SEGMENT_DIMS_MM,
    disc_height_mm,
)

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


def plan_levels(
    anomaly: str, rng: np.random.Generator, scale: float, cfg: SyntheticConfig
) -> ColumnPlan:
    """Lay out C2 .. coccyx along s for ``anomaly``; sizes x ``scale`` x per-level jitter."""
    names = labels.structures(anomaly)  # type: ignore[arg-type]
    plan = ColumnPlan(names, [], {}, {}, {}, {}, 0.0, 0.0)
    s = _plan_free_vertebrae(plan, anomaly, rng, scale, cfg)
    s = _plan_sacrum(plan, anomaly, rng, scale, cfg, s)
    plan.s_bottom = _plan_coccyx(plan, scale, s)
    return plan


def _plan_free_vertebrae(
    plan: ColumnPlan, anomaly: str, rng: np.random.Generator, scale: float, cfg: SyntheticConfig
) -> float:
    """C2 .. the last free lumbar vertebra, each with the disc below; returns the s (mm) of
    the top of the sacrum."""
    verts = labels.vertebrae(anomaly)  # type: ignore[arg-type]
    sid = {n: i + 1 for i, n in enumerate(plan.names)}
    segs, centre, extent = plan.segments, plan.centre_s, plan.extent_s
    depth, width = plan.depth, plan.width
    s = 0.0
    for k, v in enumerate(verts):
        if v == "S1":
            break
        h, d, w = BODY_DIMS_MM[v]
        if v == "L6":  # lumbarization: the extra free vertebra, L5-like
            h, d, w = (x * f for x, f in zip(BODY_DIMS_MM["L5"], (0.96, 0.98, 1.0), strict=True))
        j = _level_jitter(rng, cfg)
        h, d, w = h * scale * j, d * scale * j, w * scale * j
        segs.append(Segment(s, s + h, sid[v], 1, d, w, v))
        centre[v], extent[v], depth[v], width[v] = s + h / 2, (s, s + h), d, w
        s += h
        lower = verts[k + 1]
        dh = disc_height_mm(v, lower) * scale * _level_jitter(rng, cfg)
        dn = f"{v}-{lower}"
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
) -> float:
    """The sacrum from ``s`` (mm): one instance of fused segments with rudimentary discs
    between them; returns the s (mm) of the sacral tip."""
    sac_id = plan.names.index("S1") + 1
    seg_dims = list(SACRAL_SEGMENT_DIMS_MM)
    if anomaly == "sacralization":
        h, d, w = BODY_DIMS_MM["L5"]
        # the fused L5: slightly shorter body with broad (alar-like) transverse fusion
        seg_dims = [(h * 0.92, d, w * 1.2), *seg_dims]
    elif anomaly == "lumbarization":
        seg_dims = [(h * 0.93, d, w) for h, d, w in seg_dims]
    s_sac0 = s
    for i, (h, d, w) in enumerate(seg_dims):
        j = _level_jitter(rng, cfg)
        h, d, w = h * scale * j, d * scale * j, w * scale * j
        plan.segments.append(Segment(s, s + h, sac_id, 1, d, w, "S1"))
        s += h
        if i < len(seg_dims) - 1:
            r = (4.0 if (anomaly == "sacralization" and i == 0) else SACRAL_RUDIMENT_MM) * scale
            plan.segments.append(Segment(s, s + r, sac_id, 3, 0.0, 0.0, "S1"))
            s += r
    plan.centre_s["S1"], plan.extent_s["S1"] = (s_sac0 + s) / 2, (s_sac0, s)
    plan.depth["S1"] = seg_dims[0][1] * scale
    plan.width["S1"] = seg_dims[0][2] * scale
    return s


def _plan_coccyx(plan: ColumnPlan, scale: float, s: float) -> float:
    """The coccyx below the sacral tip at ``s`` (mm): imaged bone, not labelled; returns the
    s (mm) of its end."""
    s += 3.0 * scale
    for h, d, w in COCCYX_SEGMENT_DIMS_MM:
        plan.segments.append(Segment(s, s + h * scale, 0, 4, d * scale, w * scale, "Co"))
        s += (h + 2.0) * scale
    return s
