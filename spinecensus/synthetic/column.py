"""The labelled column, spinal canal and posterior elements, painted band by band.

Bodies, discs (labelled, with concave endplates, annulus and nucleus), the sacrum with its
rudimentary discs, the coccyx (imaged, unlabelled), the canal (epidural fat, thecal sac,
cord, cauda equina), the posterior arch ring and the spinous processes.  Shapes are defined
in the spine frame ``(s, v, w)`` of :mod:`spinecensus.synthetic.centreline` (mm) by the
profiles of :mod:`spinecensus.synthetic.column_profile`; voxels are (slice, row, col) of
the canonical grid.  Posterior elements are imaged with bone intensities but are *not*
vertebra class.
"""

from __future__ import annotations

import math

import numpy as np

from spinecensus.synthetic.centreline import Centreline
from spinecensus.synthetic.column_plan import ColumnPlan
from spinecensus.synthetic.column_profile import ColumnProfile, endplate_offset
from spinecensus.synthetic.grid import Grid
from spinecensus.synthetic.tissues import (
    ANNULUS,
    CORD,
    CORTEX,
    CSF,
    EPIFAT,
    MARROW,
    NUCLEUS,
    POSTBONE,
    RUDIMENT,
)

#: cauda equina root bundles: (AP, lateral) offsets in units of the sac's half sizes
_ROOTS = ((0.35, -0.4), (0.5, -0.1), (0.45, 0.2), (0.3, 0.45), (0.1, -0.6), (0.05, 0.6))


def spinous_specs(plan: ColumnPlan, prof: ColumnProfile, scale: float) -> list[tuple[float, ...]]:
    """Spinous processes as ellipses in the (s, v) plane: (s_c, v_c, half_len, half_thick,
    angle_rad (from posterior toward caudal), lateral half width)."""
    out = []
    for g in plan.segments:
        if g.kind != 1 or g.sid == 0 or g.name[0] == "S":  # no spinous process on the sacrum
            continue
        reg = g.name[0]
        n = int(g.name[1:])
        if reg == "C":
            length = {2: 28.0, 7: 34.0}.get(n, 20.0)
            ang, thick, hw = 25.0, 7.0, 4.5
        elif reg == "T":
            length, thick, hw = 34.0, 8.0, 5.0
            ang = 35.0 + 25.0 * math.sin(math.pi * min(n, 11) / 12.0)
        else:
            length, ang, thick, hw = 28.0, 12.0, 17.0, 7.0
        length, thick, hw = length * scale, thick * scale, hw * scale
        s_root = g.s0 + 0.55 * (g.s1 - g.s0)
        i = prof.idx(np.array([s_root]))[0]
        v_root = prof.can_ap[i] + 1.5 * scale + prof.lam[i] * 0.3
        a = math.radians(ang)
        out.append(
            (
                s_root + 0.5 * length * math.sin(a),
                v_root + 0.5 * length * math.cos(a),
                0.5 * length,
                0.5 * thick,
                a,
                hw,
            )
        )
    return out


def paint_column(
    tissue: np.ndarray,
    grid: Grid,
    cl: Centreline,
    plan: ColumnPlan,
    prof: ColumnProfile,
    x_mid: float,
    tilt: float,
    scale: float,
    cleft: bool,
) -> np.ndarray:
    """Paint the column, canal and posterior elements into ``tissue`` (in place), per band of
    rows; return the uint16 instance volume (ids of ``plan.names``, 0 elsewhere).

    ``x_mid`` (mm) and ``tilt`` (tan) place the spine's midsagittal plane; ``cleft`` adds
    intranuclear clefts (adults).
    """
    x, y, z = grid.x, grid.y, grid.z
    ny = y.size
    inst = np.zeros(tissue.shape, np.uint16)
    spinous = spinous_specs(plan, prof, scale)
    band_rows = max(16, int(120.0 / grid.spacing[1]))  # bands of ~120 mm: few, but narrow AP
    s_rows, _ = cl.project(y, np.interp(y, cl.y, cl.z))
    for j0 in range(0, ny, band_rows):
        j1 = min(ny, j0 + band_rows)
        ys = y[j0:j1]
        # columns near the centreline for these rows: -60 mm anterior .. +75 mm posterior
        zc = np.interp(ys, cl.y, cl.z)
        k0 = int(np.searchsorted(z, zc.min() - 75.0))
        k1 = int(np.searchsorted(z, zc.max() + 85.0))
        if k1 <= k0 or s_rows[j0:j1].max() < -45.0 or s_rows[j0:j1].min() > plan.s_bottom + 5:
            continue
        yy = ys[:, None]
        zz = z[None, k0:k1]
        sb, vb = cl.project(np.broadcast_to(yy, (j1 - j0, k1 - k0)),
                            np.broadcast_to(zz, (j1 - j0, k1 - k0)))  # fmt: skip
        ok = np.abs(vb) < 90.0
        _paint_column_band(
            tissue[:, j0:j1, k0:k1], inst[:, j0:j1, k0:k1], sb, vb, ok, x - x_mid,
            tilt, prof, spinous, scale, plan.s_bottom / 2, cleft,
        )  # fmt: skip
    return inst


def _paint_column_band(
    tis: np.ndarray,
    inst: np.ndarray,
    s2: np.ndarray,
    v2: np.ndarray,
    ok: np.ndarray,
    xrel: np.ndarray,
    tilt: float,
    p: ColumnProfile,
    spinous: list[tuple[float, ...]],
    scale: float,
    s_mid: float,
    cleft: bool,
) -> None:
    """Paint canal, posterior elements and the labelled column into a band of rows.

    ``tis``/``inst`` are (slices, rows, cols) views of the band, ``s2``/``v2`` the spine-frame
    coordinates of its (rows, cols) pixels.  Only pixels whose spine-frame position can
    hold a structure are processed, gathered into (slices, P) arrays, so the cost scales
    with the column's area, not the band's.
    """
    i2 = p.idx(s2)
    sp2 = _spinous_map(s2, v2, ok, spinous, scale)
    # pixels that can hold a structure: inside the column's AP extent, or the canal + arch
    col_rel = (p.kind[i2] > 0) & (v2 >= p.front[i2] - 0.5) & (v2 <= p.back[i2] + 0.5)
    can_rel = (p.can_ap[i2] > 0) & (v2 >= 0.0) & (v2 <= p.can_ap[i2] + p.lam[i2] + 2.0 * scale)
    relevant = (ok & (col_rel | can_rel)) | (sp2 != 0)
    pj, pk = np.nonzero(relevant)
    if pj.size == 0:
        return
    s, v, i, sp = s2[pj, pk], v2[pj, pk], i2[pj, pk], sp2[pj, pk]
    T = tis[:, pj, pk]  # gathered copies (slices, P), written back at the end
    L = inst[:, pj, pk]
    # lateral distance from the spine's (slightly tilted) midsagittal plane
    w = xrel[:, None] - (tilt * (s - s_mid))[None]
    w2 = w * w
    _paint_canal(T, v, i, w, w2, p, scale)
    # spinous processes: cortical rim, marrow core
    asp = np.abs(sp)[None]
    aw = np.abs(w)
    T[(sp != 0)[None] & (aw <= asp)] = CORTEX
    T[(sp < 0)[None] & (aw <= asp - 1.2 * scale)] = POSTBONE
    _paint_bodies_and_discs(T, L, s, v, i, w2, p, scale, cleft)
    tis[:, pj, pk] = T
    inst[:, pj, pk] = L


def _spinous_map(
    s2: np.ndarray,
    v2: np.ndarray,
    ok: np.ndarray,
    spinous: list[tuple[float, ...]],
    scale: float,
) -> np.ndarray:
    """Spinous processes as 2-D ellipses in the (s, v) plane: (rows, cols) map whose value is
    the lateral half width (mm), negative inside the cortical rim (marrow core), 0 outside."""
    sp2 = np.zeros(s2.shape)
    s_lo, s_hi = float(s2.min()), float(s2.max())
    for sc, vcen, hl, ht, ang, hw in spinous:
        if sc + hl < s_lo or sc - hl > s_hi:
            continue
        ds_, dv_ = s2 - sc, v2 - vcen
        along = dv_ * math.cos(ang) + ds_ * math.sin(ang)
        perp = -dv_ * math.sin(ang) + ds_ * math.cos(ang)
        qq = (along / hl) ** 2 + (perp / ht) ** 2
        sp2[ok & (qq <= 1.0)] = hw
        rim = 1.5 * scale
        core = (along / max(hl - rim, 1.0)) ** 2 + (perp / max(ht - rim, 1.0)) ** 2
        sp2[ok & (core <= 1.0)] = -hw
    return sp2


def _paint_canal(
    T: np.ndarray,
    v: np.ndarray,
    i: np.ndarray,
    w: np.ndarray,
    w2: np.ndarray,
    p: ColumnProfile,
    scale: float,
) -> None:
    """Bony canal (epidural fat) with its ring of pedicles + laminae, thecal sac (CSF), cord
    and cauda equina, into the gathered tissues ``T`` (slices, P), in place."""
    gap = 1.5 * scale  # posterior longitudinal ligament / epidural space in front of the sac
    can_ap, can_w = p.can_ap[i], p.can_w[i]
    has_can = can_ap > 0
    vc = gap + can_ap / 2
    qv = np.where(has_can, ((v - vc) / np.maximum(can_ap / 2, 1e-3)) ** 2, 9.0)
    q_can = qv[None] + w2 / (np.maximum(can_w / 2, 1e-3) ** 2)[None]
    # ring around the bony canal: pedicles + laminae + articular pillars (wider laterally)
    # where the arch is present; intervertebral foramina (fat) between the arches
    lam = p.lam[i]
    qv_o = np.where(has_can, ((v - vc) / np.maximum(can_ap / 2 + lam, 1e-3)) ** 2, 9.0)
    q_out = qv_o[None] + w2 / (np.maximum(can_w / 2 + lam + 5.0 * scale, 1e-3) ** 2)[None]
    ring = (q_out <= 1.0) & (q_can > 1.0) & (v > 0.0)[None]
    arch = p.arch[i][None]
    T[ring & arch] = POSTBONE
    T[ring & ~arch] = EPIFAT
    T[q_can <= 1.0] = EPIFAT
    sac_ap, sac_w = p.sac_ap[i], p.sac_w[i]
    has_sac = has_can & (sac_ap > 0)
    vs = gap + 1.0 * scale + sac_ap / 2
    qs = np.where(has_sac, ((v - vs) / np.maximum(sac_ap / 2, 1e-3)) ** 2, 9.0)
    T[(qs[None] + w2 / (np.maximum(sac_w / 2, 1e-3) ** 2)[None]) <= 1.0] = CSF
    cord_ap, cord_w = p.cord_ap[i], p.cord_w[i]
    has_cord = has_sac & (cord_ap > 0.5)
    qc = np.where(has_cord, ((v - vs) / np.maximum(cord_ap / 2, 1e-3)) ** 2, 9.0)
    T[(qc[None] + w2 / (np.maximum(cord_w / 2, 1e-3) ** 2)[None]) <= 1.0] = CORD
    # cauda equina: a few root bundles, lying posteriorly (dependent) in the supine sac
    rt = p.roots[i] & has_sac
    if rt.any():
        for fv, fw in _ROOTS:
            on_v = rt & (np.abs(v - vs - fv * sac_ap / 2) < 0.8 * scale)
            T[on_v[None] & (np.abs(w - (fw * sac_w / 2)[None]) < 0.8 * scale)] = CORD


def _paint_bodies_and_discs(
    T: np.ndarray,
    L: np.ndarray,
    s: np.ndarray,
    v: np.ndarray,
    i: np.ndarray,
    w2: np.ndarray,
    p: ColumnProfile,
    scale: float,
    cleft: bool,
) -> None:
    """The column into gathered tissues ``T`` and ids ``L`` (slices, P), in place: coccyx
    (imaged bone, unlabelled), labelled bodies and discs with concave endplates."""
    kind = p.kind[i]
    front, back, halfw = p.front[i], p.back[i], p.halfw[i]
    a = np.maximum((back - front) / 2, 1e-3)
    v0 = (back + front) / 2
    qa = np.where(kind > 0, np.abs((v - v0) / a) ** 2.5, 9.0)
    q = qa[None] + w2 / (np.maximum(halfw, 1e-3) ** 2)[None]
    incol = q <= 1.0
    T[incol & (kind == 4)[None]] = MARROW
    lab = incol & (p.sid[i] > 0)[None]
    # disc vs body with concave endplates: disc where |s - m| <= h + c (1 - q)
    d_m, d_h = p.d_m[i], p.d_h[i]
    dist = (np.abs(s - d_m) - d_h)[None] - endplate_offset(p, i, q)
    is_disc = lab & (dist <= 0.0) & (kind != 5)[None]
    ids = np.where(is_disc, p.d_id[i][None], np.where(s < d_m, p.up_id[i], p.dn_id[i])[None])
    # the dens and sacral rudiments keep their base id (C2 / sacrum)
    ids = np.where(np.isin(kind, (3, 5))[None], p.sid[i][None], ids)
    L[lab] = ids[lab]
    # tissues: cortex (~1.2 mm shell incl. endplates), marrow, annulus, nucleus, rudiments
    body = lab & ~is_disc
    q_cort = (1.0 - 1.2 * scale / np.maximum(np.minimum(a, halfw), 1.5)) ** 2
    cortex = body & ((dist <= 1.2 * scale) | (q > q_cort[None]))
    T[body] = MARROW
    T[cortex] = CORTEX
    T[body & (kind == 3)[None] & (q < 0.7)] = RUDIMENT
    nucleus = is_disc & (q < 0.4) & (dist <= -0.3 * d_h[None])
    T[is_disc] = ANNULUS
    T[nucleus] = NUCLEUS
    if cleft:  # intranuclear cleft: a thin dark band in adult nuclei
        T[nucleus & (np.abs(s - d_m) < 0.6 * scale)[None]] = ANNULUS
