"""Appearance randomisation from a tissue label map (domain randomisation, SynthSeg-style).

The idea is that of SynthSeg (B. Billot et al., "SynthSeg: Segmentation of brain MRI scans
of any contrast and resolution without retraining", Med. Image Anal. 86:102789, 2023): a
network trained on images whose appearance is drawn at random for every sample, from a label
map whose anatomy is the truth, learns shapes rather than one scanner's contrast.  Here the
label map is the generator's tissue classes (:mod:`spinecensus.synthetic.tissues`, 24 classes
from air to the visceral compartment), so the background anatomy (fat, muscle, organs, CSF)
varies in appearance together with the bodies and discs.

One image is made from one :class:`AppearanceDraw` (every number that defines it) in this
order, all vectorised over the volume:

1. **Gaussian mixture**: each voxel of tissue ``k`` gets ``N(means[k], sds[k])`` (intensity
   scale 0..1000; negative draws clipped to 0);
2. **bias field**: multiplied by a smooth positive field, ``exp`` of a coarse 3-D Gaussian
   grid upsampled with cubic splines (:func:`bias_field`);
3. **resolution**: per axis, a Gaussian blur of the low-resolution voxel's width, a
   down-sampling by the drawn factor and a resampling back to the original shape
   (:func:`degrade_resolution`; axis 0 = sagittal slice thickness, axes 1-2 = in-plane);
4. **Rician noise**: magnitude of the signal plus complex Gaussian noise;
5. **clipping** of the brightest voxels at a drawn percentile (scanner / export windowing).

A partial field of view is a drawn row window (``AppearanceDraw.rows``, superior-inferior):
the caller crops image *and* labels with it, so the label map itself is never changed.

:func:`draw_random` draws an :class:`AppearanceDraw` within :class:`RandomRanges`: the
per-tissue means come either from a jittered anchor table (a named contrast of
:mod:`spinecensus.synthetic.appearance`) or uniformly at random (so T1-like, T2-like, water,
fat, inverted and arbitrary contrasts all occur), and sometimes are pulled together (flat,
low-contrast images).  Arrays are canonical ``(slice, row, col)``: axis 0 L->R, axis 1 S->I,
axis 2 A->P; spacings in mm in the same order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from spinecensus.synthetic.tissues import AIR, N_TISSUES

#: control points of the bias field per axis (slice, SI, AP); a few per axis keep it smooth
BIAS_GRID = (3, 6, 4)


@dataclass(frozen=True)
class RandomRanges:
    """Ranges of the randomised appearance; ``(lo, hi)`` are drawn uniformly per image.

    Intensities are on the generator's 0..1000 scale, lengths in mm, blur in voxels.
    """

    #: probability that the tissue means are a jittered anchor table (else uniform)
    p_anchor: float = 0.4
    #: SD (log scale) of the per-tissue factor applied to an anchor table
    anchor_jitter: float = 0.3
    #: range of uniformly drawn tissue means
    mean: tuple[float, float] = (0.0, 1000.0)
    #: air (and anything outside the body) stays dark: mean drawn in 0..air_max
    air_max: float = 60.0
    #: probability of a flat (low-contrast) image, and how far its means are pulled together
    #: (1 = unchanged, 0 = all tissues equal)
    p_flat: float = 0.15
    flat_factor: tuple[float, float] = (0.15, 0.5)
    #: within-tissue SD (texture before blurring)
    tissue_sd: tuple[float, float] = (0.0, 60.0)
    #: SD of the bias field's log at its control points
    bias_log_sd: tuple[float, float] = (0.0, 0.35)
    #: low-resolution in-plane spacing (SI and AP drawn independently), mm; never finer than
    #: the native grid
    inplane_mm: tuple[float, float] = (1.0, 3.5)
    #: slice thickness relative to the slice spacing
    thickness_factor: tuple[float, float] = (1.0, 2.0)
    #: extra in-plane Gaussian blur, voxels
    blur_vox: tuple[float, float] = (0.0, 0.8)
    #: Rician noise SD
    noise_sd: tuple[float, float] = (0.0, 50.0)
    #: probability of a partial superior-inferior field of view, and its fraction of the rows
    p_fov: float = 0.5
    fov_fraction: tuple[float, float] = (0.3, 1.0)
    #: probability of clipping the brightest voxels, and the percentile clipped at
    p_clip: float = 0.5
    clip_percentile: tuple[float, float] = (95.0, 99.9)


@dataclass(frozen=True)
class AppearanceDraw:
    """Every number that defines one rendered image (see the module docstring's steps).

    ``means`` / ``sds`` are per tissue class (length ``N_TISSUES``, 0..1000 scale);
    ``factors`` the low-resolution voxel size relative to the native one per axis (>= 1);
    ``rows`` the superior-inferior field of view ``(first, stop)``; ``clip_percentile``
    None = no clipping.
    """

    means: tuple[float, ...]
    sds: tuple[float, ...]
    bias_log_sd: float
    factors: tuple[float, float, float]
    blur_vox: float
    noise_sd: float
    rows: tuple[int, int]
    clip_percentile: float | None
    source: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def draw_random(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    anchors: dict[str, np.ndarray],
    ranges: RandomRanges | None = None,
) -> AppearanceDraw:
    """Draw a random appearance for a volume of ``shape`` at ``spacing_mm`` (mm, canonical
    order); ``anchors`` are named per-tissue mean tables (length ``N_TISSUES``)."""
    r = ranges or RandomRanges()
    means, source = _draw_means(rng, anchors, r)
    sds = rng.uniform(*r.tissue_sd, N_TISSUES)
    sds[AIR] = min(float(sds[AIR]), r.air_max / 4)
    inplane = [max(1.0, rng.uniform(*r.inplane_mm) / s) for s in spacing_mm[1:]]
    factors = (float(rng.uniform(*r.thickness_factor)), *inplane)
    n_rows = shape[1]
    rows = (0, n_rows)
    if rng.random() < r.p_fov:
        length = max(8, int(round(n_rows * rng.uniform(*r.fov_fraction))))
        length = min(length, n_rows)
        start = int(rng.integers(0, n_rows - length + 1))
        rows = (start, start + length)
    clip = float(rng.uniform(*r.clip_percentile)) if rng.random() < r.p_clip else None
    return AppearanceDraw(
        means=tuple(float(m) for m in means),
        sds=tuple(float(s) for s in sds),
        bias_log_sd=float(rng.uniform(*r.bias_log_sd)),
        factors=(float(factors[0]), float(factors[1]), float(factors[2])),
        blur_vox=float(rng.uniform(*r.blur_vox)),
        noise_sd=float(rng.uniform(*r.noise_sd)),
        rows=rows,
        clip_percentile=clip,
        source=source,
    )


def _draw_means(
    rng: np.random.Generator, anchors: dict[str, np.ndarray], r: RandomRanges
) -> tuple[np.ndarray, str]:
    """Per-tissue means: a jittered anchor table or uniform draws, sometimes flattened."""
    names = sorted(anchors)
    if names and rng.random() < r.p_anchor:
        name = names[int(rng.integers(len(names)))]
        means = np.asarray(anchors[name], float) * np.exp(
            rng.normal(0.0, r.anchor_jitter, N_TISSUES)
        )
        source = f"anchor:{name}"
    else:
        means = rng.uniform(*r.mean, N_TISSUES)
        source = "uniform"
    if rng.random() < r.p_flat:
        # pull every tissue toward the body's average: a low-contrast image
        body = np.arange(N_TISSUES) != AIR
        centre = float(means[body].mean())
        means[body] = centre + float(rng.uniform(*r.flat_factor)) * (means[body] - centre)
        source += "+flat"
    means[AIR] = rng.uniform(0.0, r.air_max)
    return np.clip(means, 0.0, None), source


def synthesise(tissue: np.ndarray, draw: AppearanceDraw, rng: np.random.Generator) -> np.ndarray:
    """The float32 image (same shape as ``tissue``, >= 0) of one :class:`AppearanceDraw`.

    The whole volume is rendered; ``draw.rows`` is left to the caller to crop."""
    from scipy import ndimage

    means = np.asarray(draw.means, np.float32)
    sds = np.asarray(draw.sds, np.float32)
    img = rng.standard_normal(tissue.shape, dtype=np.float32)
    img *= sds[tissue]
    img += means[tissue]
    np.maximum(img, 0.0, out=img)
    if draw.bias_log_sd > 0:
        img *= bias_field(tissue.shape, draw.bias_log_sd, rng)
    img = degrade_resolution(img, draw.factors)
    if draw.blur_vox > 0:
        img = ndimage.gaussian_filter(img, (0.0, draw.blur_vox, draw.blur_vox), truncate=2.0)
    if draw.noise_sd > 0:
        img = rician_noise(img, draw.noise_sd, rng)
    if draw.clip_percentile is not None:
        np.minimum(img, np.float32(np.percentile(img, draw.clip_percentile)), out=img)
    return img


def bias_field(shape: tuple[int, ...], log_sd: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth positive multiplicative field of ``shape`` (float32): ``exp`` of Gaussian
    control points (``BIAS_GRID``, SD ``log_sd``) upsampled with cubic splines, so it varies
    over a fifth to a third of each axis and never changes sign."""
    coarse = rng.normal(0.0, log_sd, BIAS_GRID)
    # the spline upsampling is separable: one (n, c) weight matrix per axis, applied as a
    # tensor contraction (~10x faster than a 3-D cubic zoom of the whole volume)
    w0, w1, w2 = (_spline_weights(n, c) for n, c in zip(shape, BIAS_GRID, strict=True))
    log_field = np.einsum("ijk,ai,bj,ck->abc", coarse, w0, w1, w2, optimize=True)
    return np.exp(log_field, dtype=np.float32)


def _spline_weights(n: int, c: int) -> np.ndarray:
    """(n, c) weights that upsample ``c`` control points to ``n`` samples with cubic
    splines (column j = the upsampled unit vector j; ``ndimage.zoom`` is linear)."""
    from scipy import ndimage

    w = ndimage.zoom(np.eye(c), (n / c, 1.0), order=3, mode="nearest")
    return _fit(w, (n, c))


def degrade_resolution(img: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """Emulate an acquisition ``factors`` times coarser per axis (>= 1; 1 = unchanged):
    Gaussian blur of the coarse voxel's width (FWHM = factor voxels), down-sample (linear),
    then resample back (linear) to exactly ``img.shape``."""
    from scipy import ndimage

    f = np.maximum(np.asarray(factors, float), 1.0)
    if np.all(f <= 1.0 + 1e-6):
        return img
    sigma = np.where(f > 1.0, f / 2.3548, 0.0)
    out = ndimage.gaussian_filter(img, sigma, truncate=2.0)
    low = [max(2, int(round(n / fi))) if n > 1 else 1 for n, fi in zip(img.shape, f, strict=True)]
    small = ndimage.zoom(out, [lo / n for lo, n in zip(low, img.shape, strict=True)], order=1)
    back = ndimage.zoom(
        small, [n / s for n, s in zip(img.shape, small.shape, strict=True)], order=1
    )
    return _fit(back, img.shape).astype(np.float32)


def rician_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of (signal + complex Gaussian noise of SD ``sigma``) (float32)."""
    re = img + np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    im = np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    return np.sqrt(re * re + im * im)


def _fit(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Crop or edge-pad ``a`` to ``shape`` (zoom's output can be off by one voxel)."""
    a = a[tuple(slice(0, n) for n in shape)]
    return np.pad(a, [(0, n - s) for n, s in zip(shape, a.shape, strict=True)], mode="edge")
