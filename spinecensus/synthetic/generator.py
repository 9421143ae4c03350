"""Seeded synthetic whole-spine sagittal T2-like MRI with exact ground truth.

What is generated
-----------------
One subject is a whole spine from the skull base (clivus, cerebellum, brainstem) down to the
coccyx on a random anisotropic voxel grid, with

* ``image``: float32 array of integer-valued T2-like intensities, stored as int16 (discs
  and CSF bright, marrow intermediate, cortical bone, ligaments, air and lungs dark, fat
  bright-ish, muscle darker), a smooth multiplicative bias field, Rician noise (magnitude of
  complex Gaussian) and mild in-plane partial-volume blur;
* ``semantic``: uint8, 0 background, 1 vertebral *body*, 2 intervertebral disc;
* ``instances``: uint16, ids ``1..N`` cranio-caudal, bodies and discs interleaved, named by
  :func:`spinecensus.anatomy.labels.structures` of the subject's anomaly (``id_to_name``).

All arrays are in the package's canonical order (``spinecensus.io``): axis 0 sagittal slice
(left -> right), axis 1 superior -> inferior, axis 2 anterior -> posterior; ``spacing_mm`` in
the same order.  Masks are rasterised from analytic shapes at voxel centres on the final
grid (never resampled), so they are exact for that grid.

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

Posterior elements (pedicles, laminae, articular pillars, spinous processes, lumbar
transverse processes, ribs) are imaged with bone intensities but are *not* vertebra class.
Landmarks are cheap ellipsoids placed in the local frame of a *named* level, so they move
with the anomaly (see ``_paint_landmarks``):

* above C2: skull with brain, cerebellum, cisterna magna, medulla/pons, clivus, sphenoid
  sinus, nasopharynx, tongue; C1 anterior and posterior arches; the dens (part of C2);
* neck/thorax: air column pharynx -> trachea (C2-T3), sternum (T3-T9), lungs (lateral,
  around T6), heart (T8), aortic arch (T4) and descending aorta (T5-L3), ribs at every
  thoracic level (the cue that tells T12 from L1 in a small field of view), a diaphragm
  dome (T9 anteriorly to T12 posteriorly) separating mediastinum from abdominal viscera;
* abdomen/pelvis: liver (right, T12), spleen (left, T11), kidneys (L1), psoas, bowel
  loops and mesenteric fat (L2-sacrum), lumbar transverse processes (L3 longest), the
  iliac wings and the bladder attached to the sacrum; the coccyx below it;
* canal: CSF, cord with cervical enlargement ending at the conus near L1, cauda equina
  roots below it, thecal sac ending at ~S2, epidural fat; paraspinal fat planes.

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
and posterior arches) but not labelled; the dens belongs to the C2 instance.

Speed
-----
The default in-plane spacing is 1.0-1.5 mm (slices 2.5-5 mm, 9-25 of them): about 2.5 M
voxels and ~0.17 CPU-s per subject on one core (``benchmarks/synthetic_speed.py``).  The
issue's full 0.5-1.5 mm range is ``SyntheticConfig(inplane_spacing_mm=(0.5, 1.5))``
(~2x the voxels on average, up to ~4x; ~0.33 CPU-s mean, ~1 s worst case).
:meth:`SyntheticConfig.tiny` gives coarse (2.5-3 mm) small subjects for unit tests
(~0.025 CPU-s).
Work is done on a 2-D sagittal map (spine frame coordinates) and on per-row bands around
the column, never per structure on the full volume.

Storage
-------
:meth:`SyntheticSubject.to_nifti` / :func:`write_subject` store the arrays in a realistic
non-canonical order, by default axis codes ``"ASL"`` (axis 0 toward anterior, axis 1 toward
superior, axis 2 toward left), so readers must reorient; ``spinecensus.io.load_scan`` of the
written image returns exactly ``subject.image``.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

from spinecensus.anatomy import labels
from spinecensus.io import CANONICAL_AXCODES, atomic_path, write_json

ANOMALIES: tuple[str, ...] = ("normal", "lumbarization", "sacralization")
DEFAULT_AXCODES = "ASL"

# ---------------------------------------------------------------------------------------
# Adult vertebral body dimensions, (height, AP depth, lateral width) in mm, approximate.
# Heights are mid-body heights, depth/width those of the endplates.  The values are
# rounded from memory of the classic morphometry series -- Panjabi MM et al., "Cervical
# human vertebrae. Quantitative three-dimensional anatomy of the middle and lower regions",
# Spine 16:861-869 (1991); Panjabi MM et al., "Thoracic human vertebrae. Quantitative
# three-dimensional anatomy", Spine 16:888-901 (1991); Panjabi MM et al., "Human lumbar
# vertebrae. Quantitative three-dimensional anatomy", Spine 17:299-306 (1992) -- and are
# meant as plausible adult averages (e.g. C3 ~14/16 mm, T6 ~20/28 mm, L3 ~28/35 mm), not
# as exact literature values.  Sacral segments (height tapering 28 -> 12 mm) are likewise
# approximate; their "width" includes part of the alae (the vertebra class for the sacrum
# is the whole fused bone in the public masks).
# ---------------------------------------------------------------------------------------
_BODY_DIMS: dict[str, tuple[float, float, float]] = {
    "C2": (15.0, 15.0, 17.0),
    "C3": (14.0, 16.0, 17.0),
    "C4": (14.0, 16.0, 18.0),
    "C5": (14.0, 16.0, 19.0),
    "C6": (14.0, 17.0, 21.0),
    "C7": (15.0, 17.0, 24.0),
    "T1": (16.0, 18.0, 27.0),
    "T2": (17.0, 20.0, 27.0),
    "T3": (17.5, 22.0, 27.0),
    "T4": (18.0, 24.0, 28.0),
    "T5": (19.0, 26.0, 30.0),
    "T6": (20.0, 28.0, 31.0),
    "T7": (20.5, 28.0, 32.0),
    "T8": (21.0, 29.0, 34.0),
    "T9": (21.5, 30.0, 36.0),
    "T10": (22.0, 31.0, 38.0),
    "T11": (23.0, 32.0, 40.0),
    "T12": (24.0, 32.0, 42.0),
    "L1": (26.0, 33.0, 44.0),
    "L2": (27.0, 34.0, 46.0),
    "L3": (28.0, 35.0, 48.0),
    "L4": (28.0, 35.0, 50.0),
    "L5": (27.0, 35.0, 51.0),
    "L6": (26.0, 34.0, 51.0),
}
# sacral segments S1..S5 (height, depth, width incl. part of the alae), approximate
_SACRAL_SEGMENTS: tuple[tuple[float, float, float], ...] = (
    (28.0, 34.0, 70.0),
    (24.0, 27.0, 60.0),
    (20.0, 21.0, 46.0),
    (16.0, 16.0, 32.0),
    (12.0, 12.0, 22.0),
)
_SACRAL_RUDIMENT_MM = 2.5  # remnant disc between fused sacral segments (imaged, not labelled)


def _disc_height(upper: str, lower: str) -> float:
    """Adult disc height (mm) between ``upper`` and ``lower``, approximate.

    Cervical ~5 mm, thoracic ~4 mm (upper) to ~6.5 mm (lower), lumbar ~9-12 mm increasing
    caudally (e.g. Pooni JS et al., Spine 11:459 (1986); Koeller W et al., Spine 11:1133
    (1986); approximate values from memory).
    """
    if upper[0] == "C":
        return 4.5 if upper == "C2" else 5.0
    if upper[0] == "T":
        i = int(upper[1:])
        return 8.0 if i == 12 else 4.0 + 2.5 * (i - 1) / 10.0
    i = int(upper[1:])
    if lower == "S1":
        return 11.0
    return {1: 9.0, 2: 10.0, 3: 11.0, 4: 12.0, 5: 12.0}.get(i, 11.5)


# Tissue classes of the intensity model (index into the per-subject intensity table).
AIR, FAT, MUSCLE, MARROW, CORTEX, NUCLEUS, ANNULUS, CSF, CORD, BRAIN, CEREBELLUM = range(11)
LIVER, KIDNEY, LUNG, FLOWVOID, HEART, BOWEL, FLUID, LIGAMENT, POSTBONE, RUDIMENT = range(11, 21)
SPLEEN, EPIFAT, VISCERA, N_TISSUES = 21, 22, 23, 24

# Nominal T2 (fast spin echo) intensities on an arbitrary 0..1000 scale, chosen so that a
# mid-sagittal slice resembles the public T2 lumbar scans in ../shared/data/real (VB2, IVD):
# CSF and healthy nuclei brightest, fat bright, marrow intermediate, muscle darker, cortical
# bone / ligaments / air / lungs / fast-flowing blood dark.
_T2: dict[int, float] = {
    AIR: 0.0,
    FAT: 620.0,
    MUSCLE: 170.0,
    MARROW: 330.0,
    CORTEX: 45.0,
    NUCLEUS: 680.0,
    ANNULUS: 150.0,
    CSF: 930.0,
    CORD: 380.0,
    BRAIN: 470.0,
    CEREBELLUM: 400.0,
    LIVER: 150.0,
    KIDNEY: 430.0,
    LUNG: 25.0,
    FLOWVOID: 35.0,
    HEART: 210.0,
    BOWEL: 360.0,
    FLUID: 950.0,
    LIGAMENT: 60.0,
    POSTBONE: 270.0,
    RUDIMENT: 560.0,
    SPLEEN: 380.0,
    EPIFAT: 600.0,
    VISCERA: 330.0,
}


# Nominal spin-echo T1 intensities (same scale): fat and fatty marrow bright, CSF and fluid
# dark, discs darker than the bodies (the VB1 scans of ../shared/data/real).
_T1: dict[int, float] = {
    **_T2,
    FAT: 900.0,
    MUSCLE: 280.0,
    MARROW: 560.0,
    CORTEX: 40.0,
    NUCLEUS: 260.0,
    ANNULUS: 200.0,
    CSF: 90.0,
    CORD: 380.0,
    BRAIN: 420.0,
    CEREBELLUM: 380.0,
    LIVER: 430.0,
    KIDNEY: 300.0,
    HEART: 250.0,
    BOWEL: 300.0,
    FLUID: 80.0,
    POSTBONE: 480.0,
    RUDIMENT: 250.0,
    SPLEEN: 300.0,
    EPIFAT: 880.0,
    VISCERA: 350.0,
}
# Fat image of a chemical-shift (Dixon) water-fat acquisition: only fat is bright, so fat and
# fatty marrow dominate and every water-rich tissue (discs, CSF, muscle, organs) is dark
# (the VB3 scans: bodies brighter than discs, bright subcutaneous fat).
_FAT_BRIGHT: dict[int, float] = {
    **_T2,
    FAT: 950.0,
    MUSCLE: 120.0,
    MARROW: 650.0,
    CORTEX: 30.0,
    NUCLEUS: 150.0,
    ANNULUS: 120.0,
    CSF: 60.0,
    CORD: 150.0,
    BRAIN: 200.0,
    CEREBELLUM: 180.0,
    LIVER: 200.0,
    KIDNEY: 120.0,
    LUNG: 10.0,
    FLOWVOID: 20.0,
    HEART: 100.0,
    BOWEL: 300.0,
    FLUID: 40.0,
    LIGAMENT: 40.0,
    POSTBONE: 550.0,
    RUDIMENT: 300.0,
    SPLEEN: 120.0,
    EPIFAT: 900.0,
    VISCERA: 500.0,
}
#: intensity tables by ``SyntheticConfig.contrast``
CONTRASTS: dict[str, dict[int, float]] = {"t2": _T2, "t1": _T1, "fat_bright": _FAT_BRIGHT}


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator.  Lengths in mm, angles in degrees.

    Ranges ``(lo, hi)`` are sampled uniformly per subject.  The defaults keep a subject at a
    few tenths of a second on one core; the issue's full in-plane range 0.5-1.5 mm is
    ``inplane_spacing_mm=(0.5, 1.5)`` (slower, up to ~4x more voxels).
    """

    #: in-plane spacing (SI and AP axes, drawn independently), mm
    inplane_spacing_mm: tuple[float, float] = (1.0, 1.5)
    #: sagittal slice spacing (lateral axis), mm
    slice_spacing_mm: tuple[float, float] = (2.5, 5.0)
    #: lateral field of view, mm; the slice count is fov / slice spacing, clipped below
    lateral_fov_mm: tuple[float, float] = (40.0, 70.0)
    min_slices: int = 9
    max_slices: int = 25
    #: anterior-posterior field of view, mm (the anterior abdominal wall may be cut off)
    ap_fov_mm: tuple[float, float] = (220.0, 300.0)
    #: field of view above the top of the C2 body (skull base, cerebellum), mm
    top_margin_mm: tuple[float, float] = (45.0, 80.0)
    #: field of view below the sacral tip (coccyx, pelvic floor), mm
    bottom_margin_mm: tuple[float, float] = (25.0, 60.0)
    #: air behind the posterior skin, mm
    posterior_margin_mm: tuple[float, float] = (5.0, 25.0)
    #: per-subject scaling of the curvature amplitudes (lordoses, kyphosis)
    curvature_scale: tuple[float, float] = (0.6, 1.4)
    #: whole-spine rotation in the sagittal plane, uniform in +-rotation_deg
    rotation_deg: float = 3.0
    #: lateral offset (+-mm) and lateral tilt (+-deg) of the midsagittal plane of the spine
    lateral_offset_mm: float = 3.0
    lateral_tilt_deg: float = 1.0
    #: per-subject body size: SD of a normal scale factor (sex adds +-4 %)
    size_sd: float = 0.05
    #: per-level SD of size jitter
    level_jitter_sd: float = 0.03
    #: subcutaneous fat thickness, mm
    fat_mm: tuple[float, float] = (6.0, 30.0)
    #: Rician noise SD relative to the fat intensity
    noise: tuple[float, float] = (0.01, 0.04)
    #: peak-to-peak-ish strength of the smooth multiplicative bias (log scale)
    bias: tuple[float, float] = (0.1, 0.35)
    #: whole-spine scans are stitched from 2-3 stations: SD of each station's gain (log)
    station_gain_sd: float = 0.08
    #: SD of per-subject tissue intensity jitter (relative)
    contrast_jitter: float = 0.12
    #: in-plane Gaussian blur (voxels) emulating partial volume; 0 disables
    blur_vox: float = 0.6
    #: intensity table: ``"t2"`` (T2 fast spin echo, the default), ``"t1"``, ``"fat_bright"``
    #: (water-fat fat image), or ``"random"`` (one of the three per subject, uniformly)
    contrast: str = "t2"
    #: SD (log scale) of a low-frequency multiplicative texture inside the marrow (real
    #: marrow is speckled: fatty foci, Modic-like bands); 0 = flat marrow (the default)
    marrow_texture: float = 0.0
    #: stored axis codes of written NIfTI files (realistic, non-canonical by default)
    storage_axcodes: str = DEFAULT_AXCODES

    @classmethod
    def tiny(cls) -> SyntheticConfig:
        """Coarse (2.5-3 mm in-plane), few-slice subjects for fast unit tests (< 0.1 s).

        Still a whole spine with every structure and landmark, just sampled coarsely.
        """
        return cls(
            inplane_spacing_mm=(2.5, 3.0),
            slice_spacing_mm=(4.0, 5.0),
            lateral_fov_mm=(24.0, 32.0),
            min_slices=5,
            max_slices=8,
            ap_fov_mm=(200.0, 220.0),
            top_margin_mm=(40.0, 50.0),
            bottom_margin_mm=(20.0, 30.0),
            blur_vox=0.0,
        )

    @classmethod
    def varied(cls) -> SyntheticConfig:
        """The default anatomy with the contrasts and marrow texture real cohorts show
        (T2, T1 or water-fat per subject; speckled marrow; blurrier).  For training models
        meant for real scans (``docs/real_mri.md``, "How real images differ")."""
        return cls(contrast="random", marrow_texture=0.15, blur_vox=0.9)

    @classmethod
    def preset(cls, name: str) -> SyntheticConfig:
        """``"default"``, ``"tiny"`` or ``"varied"``."""
        if name == "default":
            return cls()
        if name == "tiny":
            return cls.tiny()
        if name == "varied":
            return cls.varied()
        raise ValueError(f"unknown synthetic preset {name!r} (default, tiny, varied)")


@dataclass
class SyntheticSubject:
    """One synthetic subject, arrays in canonical order (slice L->R, S->I, A->P).

    ``spacing_mm`` is in the same axis order.  ``id_to_name`` maps instance ids (1..N,
    cranio-caudal) to anatomical names of :mod:`spinecensus.anatomy.labels`.
    """

    subject: str
    image: np.ndarray
    semantic: np.ndarray
    instances: np.ndarray
    id_to_name: dict[int, str]
    spacing_mm: tuple[float, float, float]
    anomaly: str
    sex: str
    age: int
    #: world (RAS, mm) position of voxel (0, 0, 0) of the canonical grid
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: free-form generation details (curvature, rotation, ...) for QC
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]

    def canonical_affine(self) -> np.ndarray:
        """4x4 voxel -> RAS mm affine of the canonical array (axis codes R, I, P)."""
        sx, sy, sz = self.spacing_mm
        aff = np.zeros((4, 4))
        aff[0, 0] = sx  # axis 0 -> +R
        aff[2, 1] = -sy  # axis 1 -> -S (inferior)
        aff[1, 2] = -sz  # axis 2 -> -A (posterior)
        aff[:3, 3] = self.origin_mm
        aff[3, 3] = 1.0
        return aff

    def _transform(self, axcodes: str) -> np.ndarray:
        return ornt.ornt_transform(
            ornt.axcodes2ornt(CANONICAL_AXCODES), ornt.axcodes2ornt(tuple(axcodes))
        )

    def affine(self, axcodes: str = DEFAULT_AXCODES) -> np.ndarray:
        """4x4 affine of the arrays stored with ``axcodes`` (spacing included, no rotation:
        the small rotation is applied to the anatomy, so masks stay exact)."""
        t = self._transform(axcodes)
        return self.canonical_affine() @ ornt.inv_ornt_aff(t, self.shape)

    def stored(self, canonical: np.ndarray, axcodes: str = DEFAULT_AXCODES) -> np.ndarray:
        """A canonical-order array reoriented to ``axcodes`` storage order."""
        return np.ascontiguousarray(ornt.apply_orientation(canonical, self._transform(axcodes)))

    def to_nifti(
        self, axcodes: str = DEFAULT_AXCODES
    ) -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:
        """(image int16, semantic uint8, instances uint16) NIfTI images on the stored grid."""
        aff = self.affine(axcodes)
        out = []
        for arr, dtype in (
            (self.image, np.int16),
            (self.semantic, np.uint8),
            (self.instances, np.uint16),
        ):
            img = nib.Nifti1Image(self.stored(arr.astype(dtype, copy=False), axcodes), aff)
            img.set_data_dtype(dtype)
            img.header.set_xyzt_units("mm")
            img.set_qform(aff, code=1)
            img.set_sform(aff, code=1)
            out.append(img)
        return out[0], out[1], out[2]


# ---------------------------------------------------------------------------------------
# anatomy plan: levels along the arc length s
# ---------------------------------------------------------------------------------------


@dataclass
class _Segment:
    """A span of the column along s (mm): a labelled body/disc, or an unlabelled piece."""

    s0: float
    s1: float
    sid: int  # instance id, 0 = not labelled (coccyx)
    kind: int  # 1 body, 2 disc, 3 sacral rudiment (labelled as sacrum), 4 coccyx
    depth: float
    width: float
    name: str


@dataclass
class _Plan:
    names: tuple[str, ...]
    segments: list[_Segment]
    centre_s: dict[str, float]  # vertebra / disc name -> s of its middle
    extent_s: dict[str, tuple[float, float]]
    depth: dict[str, float]
    width: dict[str, float]
    s_top: float
    s_bottom: float  # end of the coccyx


def _plan_levels(anomaly: str, rng: np.random.Generator, scale: float, cfg: SyntheticConfig):
    names = labels.structures(anomaly)  # type: ignore[arg-type]
    verts = labels.vertebrae(anomaly)  # type: ignore[arg-type]
    sid = {n: i + 1 for i, n in enumerate(names)}
    jit = lambda: float(np.clip(rng.normal(1.0, cfg.level_jitter_sd), 0.9, 1.1))  # noqa: E731
    segs: list[_Segment] = []
    centre: dict[str, float] = {}
    extent: dict[str, tuple[float, float]] = {}
    depth: dict[str, float] = {}
    width: dict[str, float] = {}
    s = 0.0
    for k, v in enumerate(verts):
        if v == "S1":
            break
        h, d, w = _BODY_DIMS[v]
        if v == "L6":  # lumbarization: the extra free vertebra, L5-like
            h, d, w = (x * f for x, f in zip(_BODY_DIMS["L5"], (0.96, 0.98, 1.0), strict=True))
        j = jit()
        h, d, w = h * scale * j, d * scale * j, w * scale * j
        segs.append(_Segment(s, s + h, sid[v], 1, d, w, v))
        centre[v], extent[v], depth[v], width[v] = s + h / 2, (s, s + h), d, w
        s += h
        lower = verts[k + 1]
        dh = _disc_height(v, lower) * scale * jit()
        dn = f"{v}-{lower}"
        segs.append(_Segment(s, s + dh, sid[dn], 2, 0.0, 0.0, dn))
        centre[dn], extent[dn] = s + dh / 2, (s, s + dh)
        s += dh
    # the sacrum: one instance of fused segments
    sac_id = sid["S1"]
    seg_dims = list(_SACRAL_SEGMENTS)
    if anomaly == "sacralization":
        h, d, w = _BODY_DIMS["L5"]
        # the fused L5: slightly shorter body with broad (alar-like) transverse fusion
        seg_dims = [(h * 0.92, d, w * 1.2), *seg_dims]
    elif anomaly == "lumbarization":
        seg_dims = [(h * 0.93, d, w) for h, d, w in seg_dims]
    s_sac0 = s
    for i, (h, d, w) in enumerate(seg_dims):
        j = jit()
        h, d, w = h * scale * j, d * scale * j, w * scale * j
        segs.append(_Segment(s, s + h, sac_id, 1, d, w, "S1"))
        s += h
        if i < len(seg_dims) - 1:
            r = (4.0 if (anomaly == "sacralization" and i == 0) else _SACRAL_RUDIMENT_MM) * scale
            segs.append(_Segment(s, s + r, sac_id, 3, 0.0, 0.0, "S1"))
            s += r
    centre["S1"], extent["S1"], depth["S1"] = (s_sac0 + s) / 2, (s_sac0, s), seg_dims[0][1] * scale
    # coccyx: imaged bone, not labelled
    s += 3.0 * scale
    for h, d, w in ((9.0, 10.0, 14.0), (8.0, 8.0, 11.0), (7.0, 6.0, 8.0)):
        segs.append(_Segment(s, s + h * scale, 0, 4, d * scale, w * scale, "Co"))
        s += (h + 2.0) * scale
    width["S1"] = seg_dims[0][2] * scale
    return _Plan(names, segs, centre, extent, depth, width, 0.0, s)


# ---------------------------------------------------------------------------------------
# centreline (posterior wall line of the bodies)
# ---------------------------------------------------------------------------------------


@dataclass
class _Centreline:
    s: np.ndarray  # arc length samples (mm)
    y: np.ndarray  # inferior coordinate (mm)
    z: np.ndarray  # posterior coordinate (mm)
    theta: np.ndarray  # tangent angle from the inferior axis toward posterior (rad)
    ds: float

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

    def project(self, yy: np.ndarray, zz: np.ndarray, iters: int = 3):
        """Spine-frame (s, v) of world points, by Newton steps from the same-row guess."""
        s = np.interp(yy, self.y, self.s)
        for _ in range(iters):
            cy, cz, th = self.at(s)
            s = s + (yy - cy) * np.cos(th) + (zz - cz) * np.sin(th)
            s = np.clip(s, self.s[0], self.s[-1])
        cy, cz, th = self.at(s)
        v = -(yy - cy) * np.sin(th) + (zz - cz) * np.cos(th)
        return s, v


def _build_centreline(plan: _Plan, rng: np.random.Generator, cfg: SyntheticConfig):
    from scipy.interpolate import PchipInterpolator

    lo, hi = cfg.curvature_scale
    kc, kt, kl, ks = rng.uniform(lo, hi, size=4)
    rot = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    c = plan.centre_s
    lumbar = [n for n in plan.names if labels.is_vertebra(n) and n.startswith("L")]
    s_sac0, s_sac1 = plan.extent_s["S1"]
    balance = rng.uniform(-10.0, 25.0)
    # tangent angle knots (deg; 0 = straight down, + = heading posteriorly):
    # cervical lordosis C2->C7 (+25), thoracic kyphosis T1->T12 (-40), lumbar lordosis
    # L1->S1 (+50), sacral kyphosis (-30); an offset angle is solved below so that the top
    # of S1 lies ``balance`` mm posterior of the top of C2 (sagittal balance: the C7 plumb
    # line falls near the posterior-superior corner of S1), before the random rotation.
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
    ds = 0.5
    s = np.arange(-300.0, plan.s_bottom + 200.0 + ds, ds)
    shape = PchipInterpolator(knots_s, knots_t)(s)
    i0 = int(np.searchsorted(s, 0.0))
    i1 = int(np.searchsorted(s, s_sac0))

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
    return _Centreline(s, y, z, theta, ds), meta


# ---------------------------------------------------------------------------------------
# 1-D profiles along s
# ---------------------------------------------------------------------------------------

_PDS = 0.2  # profile sampling step along s (mm)


@dataclass
class _Profile:
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

    def idx(self, s: np.ndarray) -> np.ndarray:
        return np.clip(((s - self.s0) / _PDS + 0.5).astype(np.intp), 0, self.n - 1)


def _build_profile(plan: _Plan, rng: np.random.Generator, scale: float) -> _Profile:
    s0 = -60.0
    s = np.arange(s0, plan.s_bottom + 5.0, _PDS)
    n = s.size
    sid = np.zeros(n, np.int32)
    kind = np.zeros(n, np.int8)
    front = np.zeros(n)
    back = np.zeros(n)
    halfw = np.zeros(n)
    segs = plan.segments
    # bodies (and coccyx) first, then discs interpolate between their neighbours
    for i, g in enumerate(segs):
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
        _ = i
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
        else:
            front[sel], back[sel], halfw[sel] = -d, 0.0, w / 2
    # dens of C2 above the body (part of the C2 instance)
    c2 = segs[0]
    dens_len = 15.0 * scale
    sel = (s >= -dens_len) & (s < 0.0)
    t = (s[sel] + dens_len) / dens_len  # 0 at the tip, 1 at the body
    dd = (6.0 + 4.0 * np.sqrt(t)) * scale
    centre_v = -0.45 * c2.depth
    front[sel], back[sel] = centre_v - dd / 2, centre_v + dd / 2
    halfw[sel] = dd / 2
    sid[sel] = c2.sid
    kind[sel] = 5
    # nearest labelled disc for every s
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
    d_c = conc[k]
    up_id = d_id - 1
    dn_id = d_id + 1
    # canal: AP / width knots (mm) by level; thecal sac ends at S2, bony canal continues
    c = plan.centre_s
    lumbar = [nm for nm in plan.names if labels.is_vertebra(nm) and nm.startswith("L")]
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
    # cord: to the conus at L1 (tapering over its last 20 mm); cervical enlargement
    s_conus = c["L1"] + rng.uniform(-8.0, 12.0)
    cap = np.interp(s, [-60.0, c["C5"], c["T6"], c["T12"]], [11.0, 8.5, 7.0, 8.0]) * scale
    cw = np.interp(s, [-60.0, c["C5"], c["T6"], c["T12"]], [13.0, 13.0, 9.0, 9.0]) * scale
    cone = np.clip((s_conus - s) / 20.0, 0.0, 1.0)
    cord_ap = cap * np.sqrt(cone)
    cord_w = cw * np.sqrt(cone)
    # posterior arch: per vertebra from 15 % of the body to half-way through the disc below
    arch = np.zeros(n, bool)
    lam = np.zeros(n)
    for g_i, g in enumerate(segs):
        if g.kind != 1 or g.sid == 0:
            continue
        nxt = segs[g_i + 1] if g_i + 1 < len(segs) else None
        end = g.s1 + (0.6 * (nxt.s1 - nxt.s0) if nxt is not None and nxt.kind == 2 else 0.0)
        sel = (s >= g.s0 + 0.15 * (g.s1 - g.s0)) & (s < end)
        arch[sel] = True
        lam[sel] = (5.0 if g.name[0] == "C" else 6.0 if g.name[0] == "T" else 7.0) * scale
    # C1 posterior arch is painted as a landmark; sacral laminae are thin
    sac = (s >= sac0) & (s < sac1)
    arch[sac] = True
    lam[sac] = 4.0 * scale
    return _Profile(
        s0, n, sid, kind, front, back, halfw, d_id, d_m, d_h, d_c, up_id, dn_id,
        can_ap, can_w, sac_ap, sac_w, cord_ap, cord_w, arch, lam,
        (s > s_conus - 5.0) & (sac_ap > 0),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# painting helpers
# ---------------------------------------------------------------------------------------


@dataclass
class _Grid:
    x: np.ndarray  # lateral (R+) coordinates of slices, mm
    y: np.ndarray  # inferior coordinates of rows, mm
    z: np.ndarray  # posterior coordinates of columns, mm
    spacing: tuple[float, float, float]


def _paint_ellipsoid(
    tissue: np.ndarray,
    grid: _Grid,
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
    sx, sy, sz = grid.spacing
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


class _Anchors:
    """World positions attached to named levels (so landmarks follow the anomaly)."""

    def __init__(self, plan: _Plan, cl: _Centreline, x_mid: float):
        self.plan, self.cl, self.x_mid = plan, cl, x_mid

    def s(self, name: str, frac: float = 0.5) -> float:
        a, b = self.plan.extent_s[name]
        return a + frac * (b - a)

    def at(self, s: float, dv: float, x: float = 0.0):
        y, z = self.cl.point(s, dv)
        th = float(np.interp(s, self.cl.s, self.cl.theta))
        return (self.x_mid + x, y, z), th


# ---------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent random streams: covariates, anatomy, grid, image."""
    return [np.random.default_rng(ss) for ss in np.random.SeedSequence(seed).spawn(4)]


def generate_subject(
    seed: int,
    anomaly: str = "normal",
    config: SyntheticConfig | None = None,
    subject: str | None = None,
) -> SyntheticSubject:
    """Generate one synthetic whole-spine subject (deterministic in seed, anomaly, config).

    Covariates (``sex``, ``age``) come from their own random stream and do not depend on
    ``anomaly`` (nor the anomaly on them).
    """
    if anomaly not in ANOMALIES:
        raise ValueError(f"unknown anomaly {anomaly!r}; expected one of {ANOMALIES}")
    cfg = config or SyntheticConfig()
    r_cov, r_anat, r_grid, r_img = _streams(int(seed))
    sex = "F" if r_cov.random() < 0.5 else "M"
    age = int(r_cov.integers(20, 81))
    scale = float(np.clip(r_anat.normal(1.0, cfg.size_sd), 0.85, 1.15)) * (
        1.04 if sex == "M" else 0.96
    )
    plan = _plan_levels(anomaly, r_anat, scale, cfg)
    cl, meta = _build_centreline(plan, r_anat, cfg)
    prof = _build_profile(plan, r_anat, scale)
    names = plan.names

    # ---- grid ----------------------------------------------------------------------
    sy = float(r_grid.uniform(*cfg.inplane_spacing_mm))
    sz = float(r_grid.uniform(*cfg.inplane_spacing_mm))
    sx = float(r_grid.uniform(*cfg.slice_spacing_mm))
    nx = int(np.clip(round(r_grid.uniform(*cfg.lateral_fov_mm) / sx), cfg.min_slices,
                     cfg.max_slices))  # fmt: skip
    x_off = float(r_grid.uniform(-cfg.lateral_offset_mm, cfg.lateral_offset_mm))
    tilt = math.tan(math.radians(r_grid.uniform(-cfg.lateral_tilt_deg, cfg.lateral_tilt_deg)))
    x = (np.arange(nx) - (nx - 1) / 2) * sx
    # body outline (skin) distances from the posterior wall line, by level (mm)
    fat_p = float(r_anat.uniform(*cfg.fat_mm))
    fat_a = fat_p * float(r_anat.uniform(0.8, 1.5))
    girth = float(r_anat.uniform(0.85, 1.2)) * scale
    a = _Anchors(plan, cl, 0.0)
    lumbar = [n for n in names if labels.is_vertebra(n) and n.startswith("L")]
    sk_s = [
        -160.0, -40.0, a.s("C2"), a.s("C5"), a.s("T1"), a.s("T4"), a.s("T8"), a.s("T12"),
        a.s(lumbar[len(lumbar) // 2]), a.s("S1", 0.0), a.s("S1", 1.0), plan.s_bottom + 40.0,
    ]  # fmt: skip
    post = np.array([95, 70, 70, 60, 55, 55, 52, 60, 72, 60, 45, 45], float) * girth + fat_p - 15
    ant = np.array([110, 95, 85, 70, 90, 150, 175, 185, 195, 190, 150, 140], float) * girth
    ant += fat_a - 15
    # field of view
    y_top = float(cl.at(-15.0)[0]) - float(r_grid.uniform(*cfg.top_margin_mm))
    tip_y = float(cl.point(plan.s_bottom, -5.0)[0])
    y_bot = tip_y + float(r_grid.uniform(*cfg.bottom_margin_mm))
    ny = int(math.ceil((y_bot - y_top) / sy))
    y = y_top + np.arange(ny) * sy
    # skin outline per row, at the given distances in front of / behind the posterior wall
    # line of the same row (single-valued per row even where the sacrum bends)
    s_row = np.interp(y, cl.y, cl.s)
    zc_row, th_row = np.interp(y, cl.y, cl.z), np.interp(y, cl.y, cl.theta)
    zp = zc_row + np.interp(s_row, sk_s, post)
    za = zc_row - np.interp(s_row, sk_s, ant)
    z_back = float(np.max(zp))
    z_back += float(r_grid.uniform(*cfg.posterior_margin_mm))
    ap = float(r_grid.uniform(*cfg.ap_fov_mm))
    # the whole column (bodies' anterior surfaces + 15 mm) must be inside the AP field of view
    s_col = np.arange(-20.0, plan.s_bottom, 2.0)
    _, cz_, cth_ = cl.at(s_col)
    z_front = float(np.min(cz_ - (40.0 * scale + 15.0) * np.cos(cth_)))
    ap = max(ap, z_back - z_front)
    nz = int(math.ceil(ap / sz))
    z = z_back - (nz - 1) * sz + np.arange(nz) * sz
    grid = _Grid(x, y, z, (sx, sy, sz))

    tissue = np.zeros((nx, ny, nz), np.uint8)
    inst = np.zeros((nx, ny, nz), np.uint16)

    # ---- trunk and neck: skin outline per row, subcutaneous fat, muscle --------------
    inside = (z[None, :] >= za[:, None]) & (z[None, :] <= zp[:, None])
    fat2d = inside & ((z[None, :] < za[:, None] + fat_a) | (z[None, :] > zp[:, None] - fat_p))
    # compartment in front of the column (beyond the bodies' anterior surfaces): mediastinum
    # in the thorax, viscera (bowel, mesenteric fat) in the abdomen and pelvis
    dep_row = np.interp(s_row, [plan.centre_s[n] for n in labels.vertebrae(anomaly)],
                        [plan.depth.get(n, 30.0) for n in labels.vertebrae(anomaly)])  # fmt: skip
    front_row = zc_row - (dep_row + 6.0 * scale) / np.maximum(np.cos(th_row), 0.5)
    anterior = inside & ~fat2d & (z[None, :] < front_row[:, None])
    # the diaphragm is a dome: high anteriorly (~T9), low posteriorly (~T12)
    s_t1, s_t9, s_t12 = (plan.centre_s[n] for n in ("T1", "T9", "T12"))
    ahead = np.clip((front_row[:, None] - z[None, :]) / (80.0 * scale), 0.0, 1.0)
    s_dia = s_t12 - (s_t12 - s_t9) * np.sqrt(ahead)
    comp = np.where(s_row[:, None] < s_t1, MUSCLE, np.where(s_row[:, None] < s_dia, HEART, VISCERA))
    soft = np.where(fat2d, FAT, np.where(inside, MUSCLE, AIR)).astype(np.uint8)
    soft = np.where(anterior, comp, soft).astype(np.uint8)
    tissue[:] = soft[None]

    # ---- landmarks (ellipsoids attached to named levels) ------------------------------
    x_mid = x_off
    anchors = _Anchors(plan, cl, x_mid)
    _paint_landmarks(tissue, grid, anchors, plan, r_anat, scale, girth)

    # ---- the column, canal and posterior elements, per band of rows ------------------
    sem = np.zeros((nx, ny, nz), np.uint8)
    vert_ids = np.array([labels.is_vertebra(n) for n in names])
    kind_of_id = np.zeros(len(names) + 1, np.uint8)
    kind_of_id[1:] = np.where(vert_ids, 1, 2)
    disc_age = _disc_degeneration(names, age, r_anat)
    spinous = _spinous_specs(plan, prof, scale)
    band_rows = max(16, int(120.0 / sy))  # bands of ~120 mm: few, but with narrow AP extent
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
            tilt, prof, spinous, scale, plan.s_bottom / 2, age >= 30,
        )  # fmt: skip
    sem = kind_of_id[inst]

    # ---- intensities ------------------------------------------------------------------
    image, contrast = _render(tissue, inst, names, disc_age, grid, cfg, r_img, age)
    # Scanners store integer magnitudes (here 0..~1500, like a 12-bit T2 series); rounding
    # lets the file be int16 (4x smaller, much faster to gzip) and still reload exactly.
    np.clip(np.rint(image, out=image), 0, 32767, out=image)
    sub = SyntheticSubject(
        subject=subject or f"S{int(seed) % 10000:04d}",
        image=image,
        semantic=sem,
        instances=inst,
        id_to_name={i + 1: n for i, n in enumerate(names)},
        spacing_mm=(sx, sy, sz),
        anomaly=anomaly,
        sex=sex,
        age=age,
        origin_mm=(float(x[0]), float(-z[0]), float(-y[0])),
        meta={**meta, "scale": scale, "seed": int(seed), "contrast": contrast},
    )
    return sub


def _disc_degeneration(names: tuple[str, ...], age: int, rng: np.random.Generator) -> np.ndarray:
    """Per-id nucleus brightness factor: lower lumbar discs darken with age (T2 loss)."""
    f = np.ones(len(names) + 1)
    for i, n in enumerate(names):
        if not labels.is_disc(n):
            continue
        risk = 0.6 if n[0] == "L" else 0.25
        p = np.clip((age - 25) / 60.0, 0.0, 1.0) * risk
        if rng.random() < p:
            f[i + 1] = rng.uniform(0.25, 0.6)
        else:
            f[i + 1] = rng.uniform(0.85, 1.05)
    return f


def _spinous_specs(plan: _Plan, prof: _Profile, scale: float) -> list[tuple[float, ...]]:
    """Spinous processes as ellipses in the (s, v) plane: (s_c, v_c, half_len, half_thick,
    angle_rad (from posterior toward caudal), lateral half width)."""
    out = []
    for g in plan.segments:
        if g.kind != 1 or g.sid == 0 or g.name == "S1":
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


#: cauda equina root bundles: (AP, lateral) offsets in units of the sac's half sizes
_ROOTS = ((0.35, -0.4), (0.5, -0.1), (0.45, 0.2), (0.3, 0.45), (0.1, -0.6), (0.05, 0.6))


def _paint_column_band(
    tis: np.ndarray,
    inst: np.ndarray,
    s2: np.ndarray,
    v2: np.ndarray,
    ok: np.ndarray,
    xrel: np.ndarray,
    tilt: float,
    p: _Profile,
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
    # spinous processes: 2-D ellipses in the (s, v) plane; value = lateral half width,
    # negative inside the cortical rim (marrow core)
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
    aw = np.abs(w)
    w2 = w * w
    gap = 1.5 * scale  # posterior longitudinal ligament / epidural space in front of the sac
    # bony canal (epidural fat), thecal sac (CSF), cord
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
    # spinous processes: cortical rim, marrow core
    asp = np.abs(sp)[None]
    T[(sp != 0)[None] & (aw <= asp)] = CORTEX
    T[(sp < 0)[None] & (aw <= asp - 1.2 * scale)] = POSTBONE
    # the column: coccyx (imaged bone, unlabelled), labelled bodies and discs
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
    dist = (np.abs(s - d_m) - d_h)[None] - p.d_c[i][None] * (1.0 - q)
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
    tis[:, pj, pk] = T
    inst[:, pj, pk] = L


def _paint_landmarks(
    tis: np.ndarray,
    grid: _Grid,
    an: _Anchors,
    plan: _Plan,
    rng: np.random.Generator,
    scale: float,
    girth: float,
) -> None:
    """Level-specific landmarks, cheap ellipsoids attached to named levels.

    Offsets ``dv`` are from the posterior wall line (negative = anterior), in mm.
    """
    sc = scale
    g = girth
    dep = plan.depth
    jit = lambda: float(rng.uniform(0.9, 1.1))  # noqa: E731

    def put(name, frac, dv, x, semi, value, dth=0.0, shell=None):
        c, th = an.at(an.s(name, frac), dv, x)
        _paint_ellipsoid(tis, grid, c, semi, th + math.radians(dth), value, shell)

    def put_s(s, dv, x, semi, value, dth=0.0, shell=None):
        c, th = an.at(s, dv, x)
        _paint_ellipsoid(tis, grid, c, semi, th + math.radians(dth), value, shell)

    # head: skull (cortical shell over brain), cerebellum, brainstem, clivus, sinus, C1
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
    c2d = dep["C2"]
    put_s(-9 * sc, -c2d - 4 * sc, 0.0, (6 * sc, 4 * sc, 12 * sc), MARROW, shell=(1.5, CORTEX))
    put_s(-7 * sc, 31 * sc, 0.0, (6 * sc, 5 * sc, 20 * sc), MARROW, shell=(1.5, CORTEX))
    # airway: pharynx -> trachea down to the carina at ~T4 (dark air column)
    airway = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3")
    for k, lev in enumerate(airway):
        extra = (16.0 + 1.2 * k) * sc
        put(lev, 0.5, -dep[lev] - extra, 0.0, (16 * sc, 7 * sc, 8 * sc), AIR)
    # sternum (manubrium at T2-T3, body to T9) just behind the anterior chest wall
    for lev in ("T3", "T5", "T7", "T9"):
        dv = -(135 if lev == "T3" else 160) * g
        put(lev, 0.5, dv, 0.0, (28 * sc, 6 * sc, 18 * sc), MARROW, shell=(1.5, CORTEX))
    lum = [n for n in plan.names if labels.is_vertebra(n) and n.startswith("L")]
    # bowel loops and mesenteric fat packing the abdomen and pelvis in front of the lumbar
    # spine and sacrum (mixed fluid, wall, fat and some gas): heterogeneous like real scans
    gut = [*lum[1:], "S1"]
    for _ in range(40):
        lev = gut[int(rng.integers(0, len(gut)))]
        dv = -dep[lev] - rng.uniform(28, 150) * g
        val = (BOWEL, BOWEL, FLUID, FAT, FAT, AIR)[int(rng.integers(0, 6))]
        r = rng.uniform(8, 24) * sc * (0.5 if val == AIR else 1.0)
        semi = (r * rng.uniform(0.7, 1.3), r * rng.uniform(0.7, 1.3), r * rng.uniform(0.8, 1.5))
        frac = rng.uniform(0, 1) if lev != "S1" else rng.uniform(0, 0.5)
        put(lev, frac, dv, rng.uniform(-45, 45), semi, val, dth=rng.uniform(-90, 90))
    # lungs (lateral, dark), heart (anterior, intermediate), aortic arch and aorta
    for side in (-1.0, 1.0):
        put("T6", 0.5, -70 * g, side * 68 * jit(), (125 * sc, 75 * g, 58 * sc), LUNG)
    put("T8", 0.5, -100 * g, -10.0, (55 * sc, 50 * g, 55 * sc), HEART)
    put("T4", 0.2, -dep["T4"] - 35 * sc, -12.0, (14 * sc, 40 * sc, 14 * sc), FLOWVOID, dth=-10.0)
    for lev in ("T5", "T7", "T9", "T11", "L1", "L3"):
        put(lev, 0.5, -dep[lev] - 13 * sc, -14.0, (30 * sc, 11 * sc, 11 * sc), FLOWVOID)
    # diaphragm/liver (right, below ~T10), spleen (left), kidneys (T12-L2), psoas
    put("T12", 0.0, -75 * g, 55.0, (95 * sc, 80 * g, 75 * sc), LIVER)
    put("T11", 0.5, -45 * g, -70.0, (50 * sc, 40 * g, 30 * sc), SPLEEN)
    for side, lev in ((-1.0, "L1"), (1.0, "L1")):
        frac = 0.2 if side < 0 else 0.9  # the right kidney sits a little lower
        put(lev, frac, -dep[lev] * 0.4, side * 58 * jit(), (55 * sc, 25 * sc, 28 * sc), KIDNEY)
    for side in (-1.0, 1.0):
        put(lum[len(lum) // 2], 0.5, -dep[lum[2]] * 0.55, side * 30.0,
            (90 * sc, 16 * sc, 14 * sc), MUSCLE)  # fmt: skip
    # ribs (T1-T12; the level cue that tells thoracic from lumbar in a small field of view):
    # rib head at the body's upper posterolateral corner, neck running to the transverse
    # process, shaft leaving the field laterally; lumbar transverse processes (L3 longest)
    wid = plan.width
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
    # fat planes between the paraspinal muscles (bright streaks running cranio-caudally)
    for side in (-1.0, 1.0):
        for k in range(3):
            lev = ("T6", "T11", lum[2])[k]
            put(lev, 0.5, rng.uniform(25, 45) * sc, side * rng.uniform(12, 35) * sc,
                (rng.uniform(50, 110) * sc, 1.8 * sc, 4.0 * sc), FAT)  # fmt: skip
    # pelvis attaches to the sacrum: iliac wings (lateral, crest ~ L4-L5), bladder
    for side in (-1.0, 1.0):
        put("S1", 0.05, -25 * sc, side * 58 * jit(), (70 * sc, 45 * sc, 20 * sc), MARROW,
            dth=20.0, shell=(2.0, CORTEX))  # fmt: skip
    put("S1", 0.85, -dep["S1"] - 55 * sc, 0.0, (35 * sc, 30 * sc, 40 * sc), FLUID)


def _render(
    tissue: np.ndarray,
    inst: np.ndarray,
    names: tuple[str, ...],
    disc_f: np.ndarray,
    grid: _Grid,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
    age: int,
) -> tuple[np.ndarray, str]:
    """Intensities: tissue table (``cfg.contrast``) x per-structure factors, marrow texture,
    blur, bias, Rician noise.  Returns the image and the contrast used."""
    from scipy import ndimage

    contrast = cfg.contrast
    if contrast == "random":  # only non-default configs draw here (default streams unchanged)
        contrast = ("t2", "t1", "fat_bright")[int(rng.integers(3))]
    if contrast not in CONTRASTS:
        raise ValueError(f"unknown contrast {cfg.contrast!r} ({', '.join(CONTRASTS)}, random)")
    table = CONTRASTS[contrast]
    base = np.array([table[t] for t in range(N_TISSUES)])
    base = base * np.exp(rng.normal(0.0, cfg.contrast_jitter, N_TISSUES))
    base[AIR] = 0.0
    # marrow turns fattier, hence brighter on T2 fast spin echo, with age
    base[MARROW] *= 1.0 + 0.005 * (age - 45)
    img = base.astype(np.float32)[tissue]
    # per-structure factors (column voxels only, a few % of the volume): marrow brightness
    # varies by level, nuclei darken with degeneration
    f = np.exp(rng.normal(0.0, 0.06, len(names) + 1)).astype(np.float32)
    col = inst > 0
    ids = inst[col]
    img[col] *= f[ids] * np.where(tissue[col] == NUCLEUS, disc_f.astype(np.float32)[ids], 1.0)
    nx, ny, nz = tissue.shape
    if cfg.marrow_texture > 0:
        # speckled marrow: coarse 3-D noise (~4-8 mm blobs) upsampled, marrow voxels only
        cell = max(1, int(round(6.0 / min(grid.spacing[1], grid.spacing[2]))))
        coarse = rng.normal(0.0, cfg.marrow_texture, (nx, max(2, ny // cell), max(2, nz // cell)))
        tex3 = ndimage.zoom(coarse, (1, ny / coarse.shape[1], nz / coarse.shape[2]), order=1)
        tex3 = np.stack([_fit2d(t, ny, nz) for t in tex3])
        marrow = tissue == MARROW
        img[marrow] *= np.exp(tex3[marrow]).astype(np.float32)
    if cfg.blur_vox > 0:
        img = ndimage.gaussian_filter(img, (0.0, cfg.blur_vox, cfg.blur_vox), truncate=2.0)
    # smooth soft-tissue texture (marbling): coarse noise upsampled in 2-D, times a smooth
    # multiplicative bias: low-order cosines in (y, z) and a posterior receive coil whose
    # sensitivity falls off toward anterior; a small lateral ramp
    coarse = rng.normal(0.0, 0.08, (max(2, ny // 12), max(2, nz // 12)))
    tex = ndimage.zoom(coarse, (ny / coarse.shape[0], nz / coarse.shape[1]), order=1)
    tex = _fit2d(tex, ny, nz)
    strength = float(rng.uniform(*cfg.bias))
    yn = np.linspace(0.0, 1.0, ny)[:, None]
    zn = np.linspace(0.0, 1.0, nz)[None, :]
    field = np.zeros((ny, nz))
    for _ in range(4):
        fy, fz = rng.uniform(0.3, 2.0, 2)
        py, pz = rng.uniform(0, 2 * math.pi, 2)
        field += np.cos(math.pi * fy * yn + py) * np.cos(math.pi * fz * zn + pz)
    field = strength * field / 2.0 - float(rng.uniform(0.2, 0.6)) * (1.0 - zn)
    # stitched stations: a gain step between cervico-thoracic / thoraco-lumbar stations,
    # blended over ~10-25 mm at the seams
    n_st = int(rng.integers(2, 4))
    seams = (np.arange(1, n_st) / n_st + rng.uniform(-0.06, 0.06, n_st - 1)) * ny
    gains = rng.normal(0.0, cfg.station_gain_sd, n_st)
    rows = np.arange(ny)[:, None]
    width = float(rng.uniform(10.0, 25.0)) / grid.spacing[1]
    step = np.full((ny, 1), gains[0])
    for k, seam in enumerate(seams):
        step += (gains[k + 1] - gains[k]) / (1.0 + np.exp(-(rows - seam) / (width / 4)))
    field = field + step
    img *= np.exp(field + tex).astype(np.float32)[None]
    # strong, finer texture in the viscera compartment (bowel content, mesenteric fat)
    fine = rng.normal(0.0, 0.22, (max(2, ny // 7), max(2, nz // 7)))
    fine = _fit2d(ndimage.zoom(fine, (ny / fine.shape[0], nz / fine.shape[1]), order=1), ny, nz)
    visc = tissue == VISCERA
    img[visc] *= np.exp(np.broadcast_to(fine.astype(np.float32)[None], img.shape)[visc])
    img *= np.exp(rng.uniform(-0.05, 0.05) * np.linspace(-1, 1, nx)).astype(np.float32)[
        :, None, None
    ]
    # Rician noise: magnitude of (signal + complex Gaussian noise)
    sigma = np.float32(rng.uniform(*cfg.noise) * table[FAT])
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= sigma
    img += n
    img *= img
    rng.standard_normal(img.shape, dtype=np.float32, out=n)
    n *= sigma
    n *= n
    img += n
    np.sqrt(img, out=img)
    return img, contrast


def _fit2d(a: np.ndarray, ny: int, nz: int) -> np.ndarray:
    """Crop or edge-pad a 2-D array to (ny, nz) (zoom can be off by one)."""
    a = a[:ny, :nz]
    return np.pad(a, ((0, ny - a.shape[0]), (0, nz - a.shape[1])), mode="edge")


# ---------------------------------------------------------------------------------------
# cohorts, crops, writing
# ---------------------------------------------------------------------------------------


def sample_anomaly(rng: np.random.Generator, lumbarization: float, sacralization: float) -> str:
    """Draw ``"lumbarization"`` with probability ``lumbarization``, ``"sacralization"`` with
    ``sacralization``, else ``"normal"`` (one uniform draw)."""
    if lumbarization < 0 or sacralization < 0 or lumbarization + sacralization > 1:
        raise ValueError(
            f"anomaly probabilities must be >= 0 and sum to <= 1, got "
            f"lumbarization={lumbarization}, sacralization={sacralization}"
        )
    u = rng.random()
    if u < lumbarization:
        return "lumbarization"
    if u < lumbarization + sacralization:
        return "sacralization"
    return "normal"


def _cohort_draw(seed: int, index: int, lumbarization: float, sacralization: float):
    """(anomaly, subject seed) of subject ``index`` of cohort ``seed``, independent of n."""
    ss = np.random.SeedSequence([int(seed), int(index)])
    a_ss, s_ss = ss.spawn(2)
    anomaly = sample_anomaly(np.random.default_rng(a_ss), lumbarization, sacralization)
    sub_seed = int(s_ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
    return anomaly, sub_seed


def subject_id(index: int) -> str:
    """Cohort subject id: ``S0000``, ``S0001``, ... (wider when index >= 10000)."""
    return f"S{index:04d}"


def generate_cohort(
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    config: SyntheticConfig | None = None,
) -> Iterator[SyntheticSubject]:
    """Yield ``n`` subjects; subject ``i`` depends only on (seed, i, prevalences, config)."""
    for i in range(n):
        anomaly, sub_seed = _cohort_draw(seed, i, lumbarization, sacralization)
        yield generate_subject(sub_seed, anomaly, config, subject=subject_id(i))


def crop_fov(
    subject: SyntheticSubject, n_visible_vertebrae: int, rng: np.random.Generator
) -> SyntheticSubject:
    """A small field of view along SI showing exactly ``n_visible_vertebrae`` whole vertebrae.

    The window keeps the full AP and lateral extent and a random run of consecutive rows
    such that exactly ``V`` vertebral bodies (the sacrum counts as one) lie entirely inside
    it.  Partial neighbours are allowed and kept (as in real small-FOV scans, the vertebra
    above/below and discs may be cut by the window edge): they stay in the masks with their
    true names, each as one connected piece (windows that would cut a structure into
    several pieces are redrawn).  Instance ids are renumbered ``1..M`` in cranio-caudal
    order; ``id_to_name`` keeps the true anatomical names.  ``meta["whole_vertebrae"]``
    lists the whole ones and ``meta["crop_rows"]`` the row range.  The affine origin moves
    with the crop.
    """
    ids = sorted(subject.id_to_name)
    verts = [i for i in ids if labels.is_vertebra(subject.id_to_name[i])]
    V = int(n_visible_vertebrae)
    if not 1 <= V <= len(verts):
        raise ValueError(f"n_visible_vertebrae must be in 1..{len(verts)}, got {V}")
    # SI row extent of every structure (first and last row containing it)
    nz_idx = np.nonzero(subject.instances)
    vals = subject.instances[nz_idx].astype(np.intp)
    n_ids = int(vals.max()) + 1 if vals.size else 1
    lo_arr = np.full(n_ids, np.iinfo(np.intp).max)
    hi_arr = np.full(n_ids, -1)
    np.minimum.at(lo_arr, vals, nz_idx[1])
    np.maximum.at(hi_arr, vals, nz_idx[1])
    lo = {int(i): int(lo_arr[i]) for i in ids if i < n_ids}
    hi = {int(i): int(hi_arr[i]) for i in ids if i < n_ids}
    ny = subject.instances.shape[1]
    k = int(rng.integers(0, len(verts) - V + 1))
    first, last = verts[k], verts[k + V - 1]
    prev_v = verts[k - 1] if k > 0 else None
    next_v = verts[k + V] if k + V < len(verts) else None
    # window [r0, r1): r0 <= lo[first], r0 > lo[prev]; r1 > hi[last], r1 <= hi[next]
    r0_lo = lo[prev_v] + 1 if prev_v is not None else 0
    r0_hi = lo[first]
    r1_lo = hi[last] + 1
    r1_hi = hi[next_v] if next_v is not None else ny
    # a cut through a concave endplate can leave a partial neighbour in two pieces (rims
    # either side of the disc dome, split further by the lateral FOV); such windows are
    # redrawn, so every structure in the crop is one 26-connected piece, as every structure
    # of the whole subject is (after 64 failed draws the last window is kept)
    for _ in range(64):
        r0 = int(rng.integers(r0_lo, r0_hi + 1))
        r1 = int(rng.integers(r1_lo, r1_hi + 1))
        inst = subject.instances[:, r0:r1]
        present = np.unique(inst)
        present = present[present > 0]
        if int(cc3d.connected_components(inst, connectivity=26).max()) == present.size:
            break
    sl = (slice(None), slice(r0, r1), slice(None))
    lut = np.zeros(int(subject.instances.max()) + 1, np.uint16)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    new_inst = lut[inst]
    names = {int(lut[i]): subject.id_to_name[int(i)] for i in present}
    whole = [subject.id_to_name[v] for v in verts if lo[v] >= r0 and hi[v] < r1]
    sx, sy, sz = subject.spacing_mm
    ox, oy, oz = subject.origin_mm
    return replace(
        subject,
        image=np.ascontiguousarray(subject.image[sl]),
        semantic=np.ascontiguousarray(subject.semantic[sl]),
        instances=np.ascontiguousarray(new_inst),
        id_to_name=names,
        origin_mm=(ox, oy, oz - r0 * sy),
        meta={**subject.meta, "whole_vertebrae": whole, "crop_rows": (r0, r1)},
    )


def write_subject(
    subject: SyntheticSubject, out_dir: Path | str, axcodes: str = DEFAULT_AXCODES
) -> dict[str, object]:
    """Write ``<out_dir>/<subject>/{image,semantic,instances}.nii.gz`` and ``labels.json``
    atomically; return a row for the sample sheet (paths absolute)."""
    d = Path(out_dir) / subject.subject
    d.mkdir(parents=True, exist_ok=True)
    imgs = subject.to_nifti(axcodes)
    paths = {}
    for key, img in zip(("image", "semantic", "instances"), imgs, strict=True):
        p = d / f"{key}.nii.gz"
        with atomic_path(p) as tmp:
            nib.save(img, str(tmp))
        paths[key] = p
    write_json({str(k): v for k, v in sorted(subject.id_to_name.items())}, d / "labels.json")
    return {
        "subject": subject.subject,
        "image": paths["image"],
        "semantic": paths["semantic"],
        "instances": paths["instances"],
        "labels": d / "labels.json",
        "anomaly": subject.anomaly,
        "sex": subject.sex,
        "age": subject.age,
    }


SAMPLE_COLUMNS = ("subject", "image", "semantic", "instances", "labels", "anomaly", "sex", "age")


def write_cohort(
    out_dir: Path | str,
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    config: SyntheticConfig | None = None,
) -> Path:
    """Write a cohort and ``out_dir/samples.tsv``; return the sheet's path.

    Sheet columns: subject, image, semantic, instances, labels (paths relative to the
    sheet), anomaly, sex, age.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or SyntheticConfig()
    rows = []
    for sub in generate_cohort(n, seed, lumbarization, sacralization, cfg):
        row = write_subject(sub, out, cfg.storage_axcodes)
        for key in ("image", "semantic", "instances", "labels"):
            row[key] = Path(row[key]).relative_to(out).as_posix()  # type: ignore[arg-type]
        rows.append(row)
    sheet = out / "samples.tsv"
    with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=SAMPLE_COLUMNS, delimiter="\t", lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    return sheet


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------


def _prob(text: str) -> float:
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"probability must be in [0, 1], got {text}")
    return p


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """``spinecensus synth --n N --seed S --out DIR [...]``."""
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic whole-spine cohort (images, masks, labels, samples.tsv)",
        description="Write a seeded synthetic whole-spine T2-like MRI cohort with exact "
        "ground truth: DIR/<subject>/{image,semantic,instances}.nii.gz, labels.json "
        "and DIR/samples.tsv.",
    )
    p.add_argument("--n", type=int, required=True, help="number of subjects")
    p.add_argument("--seed", type=int, required=True, help="cohort seed")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--lumbarization", type=_prob, default=0.066, help="prevalence (0.066)")
    p.add_argument("--sacralization", type=_prob, default=0.036, help="prevalence (0.036)")
    p.add_argument("--preset", choices=("default", "tiny"), default="default",
                   help="generator preset (tiny: coarse, for tests)")  # fmt: skip
    p.set_defaults(func=_cli_synth)


def _cli_synth(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise SystemExit("spinecensus synth: error: --n must be >= 0")
    if args.lumbarization + args.sacralization > 1.0:
        raise SystemExit("spinecensus synth: error: prevalences sum to more than 1")
    sheet = write_cohort(
        args.out, args.n, args.seed, args.lumbarization, args.sacralization,
        SyntheticConfig.preset(args.preset),
    )  # fmt: skip
    print(sheet)
    return 0
