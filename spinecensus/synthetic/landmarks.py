"""Landmarks around the column: cheap ellipsoids placed in the local frame of named levels,
so they move with the anomaly.

* above C2: skull with brain, cerebellum, cisterna magna, medulla/pons, clivus, sphenoid
  sinus, nasopharynx, tongue; C1 anterior and posterior arches (the dens is part of C2,
  :mod:`spinecensus.synthetic.column_profile`);
* neck/thorax: air column pharynx -> trachea (C2-T3), sternum (T3-T9), lungs (lateral,
  around T6), heart (T8), aortic arch (T4) and descending aorta (T5-L3), ribs at every
  thoracic level (the cue that tells T12 from L1 in a small field of view); the diaphragm
  dome (T9 anteriorly to T12 posteriorly) separating mediastinum from abdominal viscera is
  part of the trunk (:mod:`spinecensus.synthetic.trunk`);
* abdomen/pelvis: liver (right, T12), spleen (left, T11), kidneys (L1), psoas, bowel
  loops and mesenteric fat (L2-sacrum), lumbar transverse processes (L3 longest), the
  iliac wings and the bladder attached to the sacrum;
* paraspinal fat planes.  (The canal -- CSF, cord, cauda equina, thecal sac, epidural fat --
  and the coccyx are painted with the column, :mod:`spinecensus.synthetic.column`.)

Offsets ``dv`` are from the posterior wall line (negative = anterior), in mm; lateral
offsets ``x`` are mm from the spine's midsagittal plane.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.centreline import Centreline
from spinecensus.synthetic.column_plan import ColumnPlan, level_s, lumbar_vertebrae
from spinecensus.synthetic.grid import Grid
from spinecensus.synthetic.tissues import (
    AIR,
    BOWEL,
    BRAIN,
    CEREBELLUM,
    CORD,
    CORTEX,
    CSF,
    FAT,
    FLOWVOID,
    FLUID,
    HEART,
    KIDNEY,
    LIVER,
    LUNG,
    MARROW,
    MUSCLE,
    POSTBONE,
    SPLEEN,
)


class LevelAnchors:
    """World positions attached to named levels (so landmarks follow the anomaly)."""

    def __init__(self, plan: ColumnPlan, cl: Centreline, x_mid: float):
        self.plan, self.cl, self.x_mid = plan, cl, x_mid

    def s(self, name: str, frac: float = 0.5) -> float:
        return level_s(self.plan, name, frac)

    def at(self, s: float, dv: float, x: float = 0.0):
        y, z = self.cl.point(s, dv)
        th = float(np.interp(s, self.cl.s, self.cl.theta))
        return (self.x_mid + x, y, z), th


def paint_ellipsoid(
    tissue: np.ndarray,
    grid: Grid,
    centre: tuple[float, float, float],
    semi: tuple[float, float, float],
    theta: float,
    value: int,
    shell: tuple[float, int] | None = None,
) -> None:
    """Paint an ellipsoid (x, y, z centre; semi-axes along the tangent of angle ``theta``,
    along its normal, and lateral) into ``tissue``, in its bounding box only.

    ``shell=(thickness, value)`` paints the outer ``thickness`` mm with another value.
    """
    cx, cy, cz = centre
    su, sv, sw = semi
    r = max(su, sv)
    i0, i1 = np.searchsorted(grid.x, [cx - sw, cx + sw])
    j0, j1 = np.searchsorted(grid.y, [cy - r, cy + r])
    k0, k1 = np.searchsorted(grid.z, [cz - r, cz + r])
    if i0 >= i1 or j0 >= j1 or k0 >= k1:
        return
    dy = grid.y[j0:j1, None] - cy
    dz = grid.z[None, k0:k1] - cz
    ct, st = math.cos(theta), math.sin(theta)
    q2 = ((dy * ct + dz * st) / su) ** 2 + ((-dy * st + dz * ct) / sv) ** 2
    qx = ((grid.x[i0:i1] - cx) / sw) ** 2
    q = q2[None] + qx[:, None, None]
    box = tissue[i0:i1, j0:j1, k0:k1]
    if shell is None:
        box[q <= 1.0] = value
        return
    th, outer_value = shell
    box[q <= 1.0] = outer_value
    q_in = (
        ((dy * ct + dz * st) / max(su - th, 1.0)) ** 2
        + ((-dy * st + dz * ct) / max(sv - th, 1.0)) ** 2
    )[None] + (((grid.x[i0:i1] - cx) / max(sw - th, 1.0)) ** 2)[:, None, None]
    box[q_in <= 1.0] = value


class _Painter:
    """Ellipsoids at a named level (``put``) or at an arc length (``put_s``), ``dth`` deg
    added to the local spine angle."""

    def __init__(self, tis: np.ndarray, grid: Grid, an: LevelAnchors):
        self.tis, self.grid, self.an = tis, grid, an

    def put(self, name, frac, dv, x, semi, value, dth=0.0, shell=None):
        self.put_s(self.an.s(name, frac), dv, x, semi, value, dth, shell)

    def put_s(self, s, dv, x, semi, value, dth=0.0, shell=None):
        c, th = self.an.at(s, dv, x)
        paint_ellipsoid(self.tis, self.grid, c, semi, th + math.radians(dth), value, shell)


def paint_landmarks(
    tis: np.ndarray,
    grid: Grid,
    an: LevelAnchors,
    plan: ColumnPlan,
    rng: np.random.Generator,
    scale: float,
    girth: float,
) -> None:
    """Level-specific landmarks, cheap ellipsoids attached to named levels, in place.

    Offsets ``dv`` are from the posterior wall line (negative = anterior), in mm.  Later
    landmarks paint over earlier ones.
    """
    p = _Painter(tis, grid, an)
    jit = lambda: float(rng.uniform(0.9, 1.1))  # noqa: E731
    _paint_head_and_atlas(p, plan, scale)
    _paint_airway_and_sternum(p, plan, scale, girth)
    _paint_bowel(p, plan, rng, scale, girth)
    _paint_chest_and_abdominal_organs(p, plan, jit, scale, girth)
    _paint_ribs_and_transverse_processes(p, plan, scale)
    _paint_paraspinal_fat_planes(p, plan, rng, scale)
    _paint_pelvis(p, plan, jit, scale)


def _paint_head_and_atlas(p: _Painter, plan: ColumnPlan, sc: float) -> None:
    """Skull (cortical shell over brain), cerebellum, brainstem, clivus, sinus, C1."""
    put_s = p.put_s
    # skull: the occiput reaches down behind C1, the face/mandible in front of C2-C3
    put_s(-112 * sc, -15 * sc, 0.0, (95 * sc, 100 * sc, 75 * sc), BRAIN,
          shell=(7.0 * sc, CORTEX))  # fmt: skip
    # occipital squama reaching down behind C1, tongue and mandible in front of C2-C3
    put_s(-32 * sc, 55 * sc, 0.0, (22 * sc, 6 * sc, 45 * sc), MARROW, dth=35.0,
          shell=(1.5, CORTEX))  # fmt: skip
    put_s(-25 * sc, -78 * sc, 0.0, (38 * sc, 32 * sc, 40 * sc), MUSCLE)  # tongue / floor
    put_s(5 * sc, -105 * sc, 0.0, (14 * sc, 22 * sc, 45 * sc), MARROW, dth=-30.0,
          shell=(2.0, CORTEX))  # mandible  # fmt: skip
    put_s(-52 * sc, 40 * sc, 0.0, (30 * sc, 32 * sc, 46 * sc), CEREBELLUM)
    put_s(-25 * sc, 30 * sc, 0.0, (9 * sc, 12 * sc, 14 * sc), CSF)  # cisterna magna
    put_s(-60 * sc, 9 * sc, 0.0, (40 * sc, 16 * sc, 16 * sc), CSF)  # prepontine cistern
    put_s(-60 * sc, 8 * sc, 0.0, (40 * sc, 10 * sc, 11 * sc), CORD)  # medulla
    put_s(-90 * sc, 2 * sc, 0.0, (16 * sc, 14 * sc, 15 * sc), CORD)  # pons
    put_s(-45 * sc, -14 * sc, 0.0, (28 * sc, 6 * sc, 12 * sc), MARROW, dth=-25.0,
          shell=(1.5, CORTEX))  # clivus  # fmt: skip
    put_s(-92 * sc, -45 * sc, 0.0, (13 * sc, 14 * sc, 15 * sc), AIR, shell=(2.0, CORTEX))
    put_s(-20 * sc, -58 * sc, 0.0, (25 * sc, 9 * sc, 14 * sc), AIR)  # nasopharynx
    # C1: anterior arch in front of the dens, posterior arch behind the canal
    c2d = plan.depth["C2"]
    put_s(-9 * sc, -c2d - 4 * sc, 0.0, (6 * sc, 4 * sc, 12 * sc), MARROW, shell=(1.5, CORTEX))
    put_s(-7 * sc, 31 * sc, 0.0, (6 * sc, 5 * sc, 20 * sc), MARROW, shell=(1.5, CORTEX))


def _paint_airway_and_sternum(p: _Painter, plan: ColumnPlan, sc: float, g: float) -> None:
    """Airway (pharynx -> trachea, down to the carina at ~T4; dark air column) and sternum
    (manubrium at T2-T3, body to T9) just behind the anterior chest wall."""
    dep = plan.depth
    airway = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3")
    for k, lev in enumerate(airway):
        extra = (16.0 + 1.2 * k) * sc
        p.put(lev, 0.5, -dep[lev] - extra, 0.0, (16 * sc, 7 * sc, 8 * sc), AIR)
    for lev in ("T3", "T5", "T7", "T9"):
        dv = -(135 if lev == "T3" else 160) * g
        p.put(lev, 0.5, dv, 0.0, (28 * sc, 6 * sc, 18 * sc), MARROW, shell=(1.5, CORTEX))


def _paint_bowel(
    p: _Painter, plan: ColumnPlan, rng: np.random.Generator, sc: float, g: float
) -> None:
    """Bowel loops and mesenteric fat packing the abdomen and pelvis in front of the lumbar
    spine and sacrum (mixed fluid, wall, fat and some gas): heterogeneous like real scans."""
    dep = plan.depth
    gut = [*lumbar_vertebrae(plan)[1:], "S1"]
    for _ in range(40):
        lev = gut[int(rng.integers(0, len(gut)))]
        dv = -dep[lev] - rng.uniform(28, 150) * g
        val = (BOWEL, BOWEL, FLUID, FAT, FAT, AIR)[int(rng.integers(0, 6))]
        r = rng.uniform(8, 24) * sc * (0.5 if val == AIR else 1.0)
        semi = (r * rng.uniform(0.7, 1.3), r * rng.uniform(0.7, 1.3), r * rng.uniform(0.8, 1.5))
        frac = rng.uniform(0, 1) if lev != "S1" else rng.uniform(0, 0.5)
        p.put(lev, frac, dv, rng.uniform(-45, 45), semi, val, dth=rng.uniform(-90, 90))


def _paint_chest_and_abdominal_organs(
    p: _Painter, plan: ColumnPlan, jit: Callable[[], float], sc: float, g: float
) -> None:
    """Lungs (lateral, dark), heart (anterior, intermediate), aortic arch and aorta; liver
    (right, below ~T10), spleen (left), kidneys (T12-L2), psoas."""
    put, dep = p.put, plan.depth
    for side in (-1.0, 1.0):
        put("T6", 0.5, -70 * g, side * 68 * jit(), (125 * sc, 75 * g, 58 * sc), LUNG)
    put("T8", 0.5, -100 * g, -10.0, (55 * sc, 50 * g, 55 * sc), HEART)
    put("T4", 0.2, -dep["T4"] - 35 * sc, -12.0, (14 * sc, 40 * sc, 14 * sc), FLOWVOID, dth=-10.0)
    for lev in ("T5", "T7", "T9", "T11", "L1", "L3"):
        put(lev, 0.5, -dep[lev] - 13 * sc, -14.0, (30 * sc, 11 * sc, 11 * sc), FLOWVOID)
    put("T12", 0.0, -75 * g, 55.0, (95 * sc, 80 * g, 75 * sc), LIVER)
    put("T11", 0.5, -45 * g, -70.0, (50 * sc, 40 * g, 30 * sc), SPLEEN)
    for side, lev in ((-1.0, "L1"), (1.0, "L1")):
        frac = 0.2 if side < 0 else 0.9  # the right kidney sits a little lower
        put(lev, frac, -dep[lev] * 0.4, side * 58 * jit(), (55 * sc, 25 * sc, 28 * sc), KIDNEY)
    lum = lumbar_vertebrae(plan)
    for side in (-1.0, 1.0):
        put(lum[len(lum) // 2], 0.5, -dep[lum[2]] * 0.55, side * 30.0,
            (90 * sc, 16 * sc, 14 * sc), MUSCLE)  # fmt: skip


def _paint_ribs_and_transverse_processes(p: _Painter, plan: ColumnPlan, sc: float) -> None:
    """Ribs (T1-T12; the level cue that tells thoracic from lumbar in a small field of view):
    rib head at the body's upper posterolateral corner, neck running to the transverse
    process, shaft leaving the field laterally; lumbar transverse processes (L3 longest)."""
    put, dep, wid = p.put, plan.depth, plan.width
    for lev in [n for n in plan.names if labels.is_vertebra(n) and n[0] in "TL"]:
        hw = wid[lev] / 2
        for side in (-1.0, 1.0):
            if lev[0] == "T":
                put(lev, 0.15, -0.15 * dep[lev], side * (hw + 6 * sc), (6 * sc, 6 * sc, 9 * sc),
                    MARROW, shell=(1.2, CORTEX))  # fmt: skip
                put(lev, 0.1, 10 * sc, side * (hw + 24 * sc), (6 * sc, 7 * sc, 16 * sc), MARROW,
                    dth=-20.0, shell=(1.2, CORTEX))  # fmt: skip
                put(lev, 0.2, 25 * sc, side * (hw + 45 * sc), (7 * sc, 8 * sc, 18 * sc), MARROW,
                    shell=(1.5, CORTEX))  # fmt: skip
            else:
                tp = {"L1": 14.0, "L2": 18.0, "L3": 24.0, "L4": 20.0}.get(lev, 16.0) * sc
                put(lev, 0.5, 8 * sc, side * (hw * 0.4 + tp), (7 * sc, 6 * sc, tp),
                    POSTBONE, shell=(1.2, CORTEX))  # fmt: skip


def _paint_paraspinal_fat_planes(
    p: _Painter, plan: ColumnPlan, rng: np.random.Generator, sc: float
) -> None:
    """Fat planes between the paraspinal muscles (bright streaks running cranio-caudally)."""
    lum = lumbar_vertebrae(plan)
    for side in (-1.0, 1.0):
        for k in range(3):
            lev = ("T6", "T11", lum[2])[k]
            p.put(lev, 0.5, rng.uniform(25, 45) * sc, side * rng.uniform(12, 35) * sc,
                  (rng.uniform(50, 110) * sc, 1.8 * sc, 4.0 * sc), FAT)  # fmt: skip


def _paint_pelvis(p: _Painter, plan: ColumnPlan, jit: Callable[[], float], sc: float) -> None:
    """The pelvis attaches to the sacrum: iliac wings (lateral, crest ~ L4-L5), bladder."""
    for side in (-1.0, 1.0):
        p.put("S1", 0.05, -25 * sc, side * 58 * jit(), (70 * sc, 45 * sc, 20 * sc), MARROW,
              dth=20.0, shell=(2.0, CORTEX))  # fmt: skip
    p.put("S1", 0.85, -plan.depth["S1"] - 55 * sc, 0.0, (35 * sc, 30 * sc, 40 * sc), FLUID)
