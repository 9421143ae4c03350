"""What makes the outline tracing cheap changes no number: crossings read along either
axis and in either direction, the smoothing along a flattened axis, each structure sampled
on its own plane extents (and with its own step) in one batch, the transposed
coordinates, and the hinted frames made from the unhinted ones.

Synthetic data throughout: seeded random arrays and a ``synthetic_tiny`` subject (a
generated whole spine on the coarse tiny grid).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinecensus.measure import midsagittal
from spinecensus.measure.boundaries import crossings, smooth
from spinecensus.measure.midsagittal import (
    hinted_frames,
    initial_frames,
    moments,
    padded,
    plane_extents,
    sample_planes,
    voxel_coords,
)


def _first_crossing_loop(v: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Reference: per column, the first sample >= 0.5 after an outside first sample,
    interpolated linearly from the one before (float32 samples, as the tracer reads)."""
    out = np.full((v.shape[0], v.shape[2]), np.nan)
    for i in range(v.shape[0]):
        for j in range(v.shape[2]):
            hits = np.flatnonzero(v[i, :, j] >= 0.5)
            if hits.size and hits[0] > 0:
                k = hits[0]
                lo, hi = v[i, k - 1, j], v[i, k, j]
                frac = np.clip((np.float32(0.5) - lo) / (hi - lo), 0.0, 1.0)
                out[i, j] = c[i, k - 1] + frac * (c[i, k] - c[i, k - 1])
    return out


def test_crossings_in_any_direction_and_layout():
    """Seeded random occupancies: the first crossing is the reference loop's; the last is
    the first of the reversed grid (how the fine windows read it); along axis 2 of the
    transposed samples it is the same as along axis 1."""
    rng = np.random.default_rng(5)
    v = (rng.random((6, 9, 7)) ** 2).astype(np.float32)
    c = np.cumsum(rng.random((6, 9)) + 0.1, axis=1)
    first = crossings(v, c)
    assert np.isfinite(first).sum() > 10 and np.isnan(first).sum() > 3
    assert np.allclose(first, _first_crossing_loop(v, c), equal_nan=True, rtol=0, atol=1e-12)
    last = crossings(v, c, last=True)
    assert np.array_equal(last, crossings(v[:, ::-1], c[:, ::-1]), equal_nan=True)
    assert np.array_equal(last, _first_crossing_loop(v[:, ::-1], c[:, ::-1]), equal_nan=True)
    vt = np.ascontiguousarray(v.transpose(0, 2, 1))
    for lst in (False, True):
        assert np.array_equal(crossings(v, c, lst), crossings(vt, c, lst, axis=2), equal_nan=True)


def _smooth_slices(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Reference: the shifted sums along ``axis`` itself (the former formulation)."""
    r = int(np.ceil(3.0 * sigma))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w = (w / w.sum()).astype(values.dtype)
    v = np.moveaxis(values, axis, -1)
    out = v * w[r]
    for k in range(1, min(r, v.shape[-1] - 1) + 1):
        out[..., k:] += v[..., :-k] * w[r - k]
        out[..., :-k] += v[..., k:] * w[r + k]
    return np.moveaxis(out, -1, axis)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1])
def test_smoothing_along_the_flattened_axis_is_the_same(axis):
    """Seeded random (N, 2, n, m) samples, contiguous or a transposed view, and an axis
    shorter than the kernel: bit for bit the shifted sums along the axis itself."""
    rng = np.random.default_rng(8)
    x = rng.random((3, 2, 11, 5)).astype(np.float32)
    for values in (x, x.transpose(0, 1, 3, 2)):
        for sigma in (1.0, 1.7):
            got = smooth(values, sigma, axis)
            assert got.shape == values.shape
            assert np.array_equal(got, _smooth_slices(values, sigma, axis))


@pytest.fixture(scope="module")
def tiny_planes(synthetic_tiny):
    """A tiny synthetic whole spine: its padded volume, ids, moments, first frames."""
    sub = synthetic_tiny["normal"][0]
    inst = sub.instances
    boxes = ndimage.find_objects(inst)
    ids = np.array([i for i in sorted(sub.id_to_name) if i <= len(boxes) and boxes[i - 1]])
    m = moments(inst, ids, boxes, sub.spacing_mm)
    return padded(inst), ids, m, initial_frames(m), np.asarray(sub.spacing_mm, dtype=float)


def test_own_extents_sampling_equals_the_common_grid(tiny_planes, monkeypatch):
    """Synthetic: sampling each structure only on its own plane extents (zero beyond
    them) gives the common grid's values, with the margin the measurement gives them
    (an in-plane voxel and two steps: the mask's interpolation reaches no further);
    per-structure steps in one batch give each structure what a batch of its own step
    gives it."""
    vol, ids, m, frames, sp = tiny_planes
    step = np.where(np.arange(ids.size) % 2 == 0, 1.0, 2.0)
    ext = plane_extents(m, frames, max(sp[1], sp[2]) + 2 * step)
    monkeypatch.setattr(midsagittal, "OWN_SHARE", 0.0)  # always the whole common grid
    full, a, s = sample_planes(vol, ids, sp, frames, ext, 1.0)
    monkeypatch.setattr(midsagittal, "OWN_SHARE", 2.0)  # always each on its own extents
    own, a2, s2 = sample_planes(vol, ids, sp, frames, ext, 1.0)
    assert full.sum() > 100 and np.array_equal(a, a2) and np.array_equal(s, s2)
    assert np.array_equal(own, full)
    mixed, am, sm = sample_planes(vol, ids, sp, frames, ext, step)
    for st in (1.0, 2.0):
        k = np.flatnonzero(step == st)
        sub = midsagittal.Frames(*(getattr(frames, f)[k] for f in ("centre", "lr", "si", "ap")))
        alone, aa, sa = sample_planes(vol, ids[k], sp, sub, ext[k], st)
        ns, na = alone.shape[1:]
        assert np.array_equal(mixed[k, :ns, :na], alone)
        assert not mixed[k, ns:].any() and not mixed[k, :, na:].any()
        assert np.array_equal(am[k, :na], aa) and np.array_equal(sm[k, :ns], sa)


def test_transposed_coordinates_are_the_same_numbers(tiny_planes):
    """Synthetic frames, seeded random grids: ``s_last`` coordinates are the default ones
    with the last two axes swapped, bit for bit."""
    _vol, ids, _m, f, sp = tiny_planes
    rng = np.random.default_rng(2)
    a, s = rng.normal(0, 9, (ids.size, 2, 7)), rng.normal(0, 9, (ids.size, 2, 4))
    plain = voxel_coords(f.centre, f.si, f.ap, a, s, sp)
    swapped = voxel_coords(f.centre, f.si, f.ap, a, s, sp, s_last=True)
    for p, q in zip(plain, swapped, strict=True):
        assert p.shape == (ids.size, 2, 4, 7) and np.array_equal(p.swapaxes(-1, -2), q)


def test_hinted_frames_turn_only_the_hinted_axes(tiny_planes):
    """Synthetic: a structure without a usable hint keeps its first frame exactly; a hinted
    one gets the hint projected into its plane (unit, inferior-pointing), and the rest of
    its frame follows."""
    _vol, ids, m, first, _sp = tiny_planes
    hint = np.full((ids.size, 3), np.nan)
    hint[::2] = first.si[::2] + np.array([0.0, 0.1, 0.2])  # a little off the first axis
    hint[1] = first.lr[1]  # along the plane's normal: not usable
    got = hinted_frames(first, hint)
    direct = initial_frames(m, hint)
    assert all(np.array_equal(getattr(got, k), getattr(direct, k)) for k in ("lr", "si", "ap"))
    keep = np.ones(ids.size, bool)
    keep[::2] = False
    assert np.array_equal(got.si[keep], first.si[keep])
    assert np.array_equal(got.ap[keep], first.ap[keep])
    turned = got.si[~keep]
    assert np.allclose(np.linalg.norm(turned, axis=1), 1.0)
    assert np.allclose(np.sum(turned * got.lr[~keep], axis=1), 0.0, atol=1e-12)
    assert (turned[:, 1] >= 0).all() and not np.allclose(turned, first.si[~keep])
