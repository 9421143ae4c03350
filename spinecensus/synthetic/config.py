"""Every knob of the synthetic generator (``SyntheticConfig``) and its presets."""

from __future__ import annotations

from dataclasses import dataclass

#: stored axis codes of written NIfTI files: axis 0 toward anterior, 1 superior, 2 left
DEFAULT_AXCODES = "ASL"


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
    #: image appearance (``spinecensus.synthetic.appearance.APPEARANCES``): ``"default"`` is
    #: the fixed realistic rendering set by the knobs above (the demo's); ``"t2"``, ``"t1"``,
    #: ``"water"``, ``"fat"``, ``"inverted"`` (named contrasts) and ``"randomised"`` (a random
    #: appearance per subject) are rendered from the tissue label map alone, and the knobs
    #: ``contrast``, ``contrast_jitter``, ``marrow_texture``, ``blur_vox``, ``noise``, ``bias``
    #: and ``station_gain_sd`` are then unused
    appearance: str = "default"
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
