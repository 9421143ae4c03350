"""Rendering: a volume of tissue classes -> a T2-, T1- or fat-weighted magnitude image.

Intensities of :mod:`spinecensus.synthetic.tissues`, per-structure factors, optional marrow
texture, in-plane partial-volume blur, a smooth multiplicative bias (receive coil,
stitched stations), soft-tissue textures and Rician noise (magnitude of complex Gaussian).
Arrays are canonical ``(slice, row, col)``: axis 0 L->R, axis 1 S->I, axis 2 A->P.
"""

from __future__ import annotations

import math

import numpy as np

from spinecensus.synthetic.config import SyntheticConfig
from spinecensus.synthetic.grid import Grid
from spinecensus.synthetic.tissues import AIR, CONTRASTS, FAT, MARROW, N_TISSUES, NUCLEUS, VISCERA


def render(
    tissue: np.ndarray,
    inst: np.ndarray,
    names: tuple[str, ...],
    disc_f: np.ndarray,
    grid: Grid,
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
    img = _tissue_intensities(tissue, inst, names, disc_f, table, cfg, rng, age)
    if cfg.marrow_texture > 0:
        _speckle_marrow(img, tissue, grid, cfg, rng)
    if cfg.blur_vox > 0:
        img = ndimage.gaussian_filter(img, (0.0, cfg.blur_vox, cfg.blur_vox), truncate=2.0)
    _, ny, nz = tissue.shape
    tex = _soft_tissue_texture(ny, nz, rng)
    field = _bias_field(ny, nz, grid, cfg, rng)
    img *= np.exp(field + tex).astype(np.float32)[None]
    _texture_viscera(img, tissue, rng)
    _lateral_ramp(img, rng)
    sigma = np.float32(rng.uniform(*cfg.noise) * table[FAT])
    _add_rician_noise(img, sigma, rng)
    return img, contrast


def _tissue_intensities(
    tissue: np.ndarray,
    inst: np.ndarray,
    names: tuple[str, ...],
    disc_f: np.ndarray,
    table: dict[int, float],
    cfg: SyntheticConfig,
    rng: np.random.Generator,
    age: int,
) -> np.ndarray:
    """float32 image of jittered tissue intensities times per-structure factors."""
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
    return img


def _speckle_marrow(
    img: np.ndarray,
    tissue: np.ndarray,
    grid: Grid,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> None:
    """Speckled marrow, in place: coarse 3-D noise (~4-8 mm blobs) upsampled, marrow voxels
    only."""
    from scipy import ndimage

    nx, ny, nz = tissue.shape
    cell = max(1, int(round(6.0 / min(grid.spacing[1], grid.spacing[2]))))
    coarse = rng.normal(0.0, cfg.marrow_texture, (nx, max(2, ny // cell), max(2, nz // cell)))
    tex3 = ndimage.zoom(coarse, (1, ny / coarse.shape[1], nz / coarse.shape[2]), order=1)
    tex3 = np.stack([_fit2d(t, ny, nz) for t in tex3])
    marrow = tissue == MARROW
    img[marrow] *= np.exp(tex3[marrow]).astype(np.float32)


def _soft_tissue_texture(ny: int, nz: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth soft-tissue texture (marbling), log scale: coarse noise upsampled in 2-D."""
    from scipy import ndimage

    coarse = rng.normal(0.0, 0.08, (max(2, ny // 12), max(2, nz // 12)))
    tex = ndimage.zoom(coarse, (ny / coarse.shape[0], nz / coarse.shape[1]), order=1)
    return _fit2d(tex, ny, nz)


def _bias_field(
    ny: int, nz: int, grid: Grid, cfg: SyntheticConfig, rng: np.random.Generator
) -> np.ndarray:
    """Smooth multiplicative bias (log scale, (rows, cols)): low-order cosines in (y, z) and a
    posterior receive coil whose sensitivity falls off toward anterior, plus station gains."""
    strength = float(rng.uniform(*cfg.bias))
    yn = np.linspace(0.0, 1.0, ny)[:, None]
    zn = np.linspace(0.0, 1.0, nz)[None, :]
    field = np.zeros((ny, nz))
    for _ in range(4):
        fy, fz = rng.uniform(0.3, 2.0, 2)
        py, pz = rng.uniform(0, 2 * math.pi, 2)
        field += np.cos(math.pi * fy * yn + py) * np.cos(math.pi * fz * zn + pz)
    field = strength * field / 2.0 - float(rng.uniform(0.2, 0.6)) * (1.0 - zn)
    return field + _station_gains(ny, grid, cfg, rng)


def _station_gains(
    ny: int, grid: Grid, cfg: SyntheticConfig, rng: np.random.Generator
) -> np.ndarray:
    """Stitched stations (log gain per row, (rows, 1)): a gain step between cervico-thoracic
    / thoraco-lumbar stations, blended over ~10-25 mm at the seams."""
    n_st = int(rng.integers(2, 4))
    seams = (np.arange(1, n_st) / n_st + rng.uniform(-0.06, 0.06, n_st - 1)) * ny
    gains = rng.normal(0.0, cfg.station_gain_sd, n_st)
    rows = np.arange(ny)[:, None]
    width = float(rng.uniform(10.0, 25.0)) / grid.spacing[1]
    step = np.full((ny, 1), gains[0])
    for k, seam in enumerate(seams):
        step += (gains[k + 1] - gains[k]) / (1.0 + np.exp(-(rows - seam) / (width / 4)))
    return step


def _texture_viscera(img: np.ndarray, tissue: np.ndarray, rng: np.random.Generator) -> None:
    """Strong, finer texture in the viscera compartment (bowel content, mesenteric fat), in
    place."""
    from scipy import ndimage

    _, ny, nz = tissue.shape
    fine = rng.normal(0.0, 0.22, (max(2, ny // 7), max(2, nz // 7)))
    fine = _fit2d(ndimage.zoom(fine, (ny / fine.shape[0], nz / fine.shape[1]), order=1), ny, nz)
    visc = tissue == VISCERA
    img[visc] *= np.exp(np.broadcast_to(fine.astype(np.float32)[None], img.shape)[visc])


def _lateral_ramp(img: np.ndarray, rng: np.random.Generator) -> None:
    """A small multiplicative ramp across the slices (left -> right), in place."""
    nx = img.shape[0]
    img *= np.exp(rng.uniform(-0.05, 0.05) * np.linspace(-1, 1, nx)).astype(np.float32)[
        :, None, None
    ]


def _add_rician_noise(img: np.ndarray, sigma: np.float32, rng: np.random.Generator) -> None:
    """Rician noise, in place: magnitude of (signal + complex Gaussian noise of SD
    ``sigma``)."""
    n = rng.standard_normal(img.shape, dtype=np.float32)
    n *= sigma
    img += n
    img *= img
    rng.standard_normal(img.shape, dtype=np.float32, out=n)
    n *= sigma
    n *= n
    img += n
    np.sqrt(img, out=img)


def _fit2d(a: np.ndarray, ny: int, nz: int) -> np.ndarray:
    """Crop or edge-pad a 2-D array to (ny, nz) (zoom can be off by one)."""
    a = a[:ny, :nz]
    return np.pad(a, ((0, ny - a.shape[0]), (0, nz - a.shape[1])), mode="edge")
