"""Appearances rendered from the tissue label map: named contrasts and domain randomisation
(issue 20 item 1).  All on synthetic data (tiny preset subjects)."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from spinecensus import cli
from spinecensus import synthetic as syn
from spinecensus.synthetic import randomise
from spinecensus.synthetic.appearance import (
    APPEARANCES,
    NAMED_MEANS,
    render_appearance,
)
from spinecensus.synthetic.tissues import (
    AIR,
    ANNULUS,
    CORD,
    CSF,
    FAT,
    MARROW,
    MUSCLE,
    N_TISSUES,
    NUCLEUS,
)  # fmt: skip

TINY = syn.SyntheticConfig.tiny()

#: the tissue order each named contrast documents (brighter, darker)
ORDER = {
    "t2": [(NUCLEUS, MARROW), (CSF, CORD)],
    "t1": [(FAT, NUCLEUS), (MARROW, NUCLEUS), (CORD, CSF)],
    "water": [(NUCLEUS, MARROW), (CSF, FAT), (MUSCLE, FAT)],
    "fat": [(FAT, NUCLEUS), (MARROW, NUCLEUS), (FAT, CSF)],
    "inverted": [(MARROW, NUCLEUS), (CORD, CSF)],
}


@pytest.fixture(scope="module")
def subject():
    return syn.generate_subject(3, "normal", TINY)


def _medians(image: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Median intensity per tissue class (NaN where absent)."""
    out = np.full(N_TISSUES, np.nan)
    for t in np.unique(tissue):
        out[t] = np.median(image[tissue == t])
    return out


def test_subject_carries_its_tissue_label_map(subject):
    """The label map is stored with the subject, same shape; discs are nucleus and annulus,
    and bodies are mostly marrow (synthetic)."""
    assert subject.tissue is not None and subject.tissue.shape == subject.shape
    assert subject.tissue.dtype == np.uint8
    assert np.all(subject.semantic[subject.tissue == NUCLEUS] == 2)
    assert set(np.unique(subject.tissue[subject.semantic == 2])) == {NUCLEUS, ANNULUS}
    assert np.mean(subject.tissue[subject.semantic == 1] == MARROW) > 0.5


@pytest.mark.parametrize("name", sorted(ORDER))
def test_named_contrast_tissue_order(subject, name):
    """Each named contrast has its documented order, in the table and in the rendered image
    (per-tissue medians, synthetic tiny subject, seed 0)."""
    means = NAMED_MEANS[name]
    r = render_appearance(subject.tissue, subject.spacing_mm, name, np.random.default_rng(0))
    med = _medians(r.image, subject.tissue)
    for bright, dark in ORDER[name]:
        assert means[bright] > means[dark], (name, bright, dark)
        assert med[bright] > med[dark], (name, bright, dark, med[bright], med[dark])
    assert r.rows == (0, subject.shape[1]) and r.draw.clip_percentile is None


def test_inverted_reverses_every_t2_pair():
    """``inverted`` swaps the order of every pair of non-air tissues of ``t2``; air stays
    darkest."""
    t2, inv = NAMED_MEANS["t2"], NAMED_MEANS["inverted"]
    body = np.arange(N_TISSUES) != AIR
    d_t2 = t2[body][:, None] - t2[body][None, :]
    d_inv = inv[body][:, None] - inv[body][None, :]
    assert np.all(np.sign(d_t2) == -np.sign(d_inv))
    assert inv[AIR] == 0 and inv[body].min() > 0


@pytest.mark.parametrize("appearance", ["t1", "randomised"])
def test_render_is_deterministic_per_seed(subject, appearance):
    """Same seed -> the same image and draw; another seed -> another image (synthetic)."""
    a = render_appearance(subject.tissue, subject.spacing_mm, appearance, np.random.default_rng(5))
    b = render_appearance(subject.tissue, subject.spacing_mm, appearance, np.random.default_rng(5))
    c = render_appearance(subject.tissue, subject.spacing_mm, appearance, np.random.default_rng(6))
    np.testing.assert_array_equal(a.image, b.image)
    assert a.draw == b.draw
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.float32 and a.image.min() >= 0


def test_randomised_draws_cover_both_disc_body_orders_and_partial_views(subject):
    """Over 24 randomised draws (seeds 0..23, synthetic) the nucleus is sometimes brighter and
    sometimes darker than the marrow, some views are partial and some images clipped."""
    signs, partial, clipped, sources = set(), 0, 0, set()
    for seed in range(24):
        draw = randomise.draw_random(
            np.random.default_rng(seed), subject.shape, subject.spacing_mm, NAMED_MEANS
        )
        signs.add(bool(draw.means[NUCLEUS] > draw.means[MARROW]))
        partial += draw.rows != (0, subject.shape[1])
        clipped += draw.clip_percentile is not None
        sources.add(draw.source.split(":")[0].split("+")[0])
        assert 0 <= draw.rows[0] < draw.rows[1] <= subject.shape[1]
        assert min(draw.factors) >= 1.0
    assert signs == {True, False}
    assert 0 < partial < 24 and 0 < clipped < 24
    assert sources == {"anchor", "uniform"}


def test_labels_untouched_and_cropped_with_the_view(subject):
    """Rendering never changes the label map; ``cropped`` cuts image and labels to the same
    rows; a subject generated in another appearance has the default one's masks (synthetic)."""
    tissue = subject.tissue.copy()
    for seed in range(6):
        r = render_appearance(tissue, subject.spacing_mm, "randomised", np.random.default_rng(seed))
        assert r.image.shape == tissue.shape
        img, sem = r.cropped(subject.semantic)
        assert img.shape == sem.shape == (tissue.shape[0], r.rows[1] - r.rows[0], tissue.shape[2])
        np.testing.assert_array_equal(sem, subject.semantic[:, r.rows[0] : r.rows[1]])
    np.testing.assert_array_equal(tissue, subject.tissue)
    for appearance in ("water", "randomised"):
        other = syn.generate_subject(3, "normal", dataclasses.replace(TINY, appearance=appearance))
        np.testing.assert_array_equal(other.semantic, subject.semantic)
        np.testing.assert_array_equal(other.instances, subject.instances)
        np.testing.assert_array_equal(other.tissue, subject.tissue)
        assert other.meta["contrast"] == appearance
        assert other.shape == subject.shape  # the subject keeps its whole field of view
        assert not np.array_equal(other.image, subject.image)


def test_default_appearance_is_the_fixed_rendering(subject):
    """``appearance="default"`` (the default) is the fixed T2 rendering: the same image as a
    config that does not mention it (synthetic)."""
    explicit = syn.generate_subject(3, "normal", dataclasses.replace(TINY, appearance="default"))
    np.testing.assert_array_equal(explicit.image, subject.image)
    assert subject.meta["contrast"] == "t2"


def test_bias_field_is_smooth_and_positive():
    """The bias field is positive and low-frequency: neighbouring voxels differ by < 0.1 in
    log along SI and AP, and a 3-voxel Gaussian smoothing changes its log by < 0.05 (a
    voxel-wise field of the same SD, 0.35, would change by about that SD)."""
    shape = (6, 300, 90)
    for seed in range(5):
        b = randomise.bias_field(shape, 0.35, np.random.default_rng(seed))
        assert b.shape == shape and b.dtype == np.float32 and np.all(b > 0)
        log_b = np.log(b.astype(np.float64))
        assert log_b.std() > 0.02  # not flat
        assert np.abs(np.diff(log_b, axis=1)).max() < 0.1
        assert np.abs(np.diff(log_b, axis=2)).max() < 0.1
        smooth = ndimage.gaussian_filter(log_b, (0, 3, 3), mode="nearest")
        assert np.abs(smooth - log_b)[:, 10:-10, 10:-10].max() < 0.05


@pytest.mark.parametrize("factors", [(1.0, 1.0, 1.0), (1.7, 2.3, 3.1), (2.0, 1.0, 1.4)])
def test_resolution_round_trip_keeps_shape(factors):
    """Down-sampling and resampling back returns the original shape (odd sizes included) and
    removes fine detail: white noise loses variance unless every factor is 1."""
    img = np.random.default_rng(0).standard_normal((7, 101, 53)).astype(np.float32)
    out = randomise.degrade_resolution(img, factors)
    assert out.shape == img.shape and out.dtype == np.float32
    if max(factors) == 1.0:
        np.testing.assert_array_equal(out, img)
    else:
        assert out.var() < 0.6 * img.var()


def test_unknown_appearance_is_refused(subject):
    with pytest.raises(ValueError, match="unknown appearance"):
        render_appearance(subject.tissue, subject.spacing_mm, "flair", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown appearance"):
        render_appearance(subject.tissue, subject.spacing_mm, "default", np.random.default_rng(0))


def test_synth_cli_appearance(tmp_path):
    """``spinecensus synth --appearance t1`` writes a cohort whose masks equal the default
    one's and whose image differs (synthetic tiny preset, 1 subject)."""
    assert set(APPEARANCES) >= {"default", "t2", "t1", "water", "fat", "inverted", "randomised"}
    base = ["synth", "--n", "1", "--seed", "4", "--preset", "tiny"]
    assert cli.main([*base, "--out", str(tmp_path / "d")]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "t1"), "--appearance", "t1"]) == 0
    subj = sorted(p.name for p in (tmp_path / "d").iterdir() if p.is_dir())[0]

    def load(run: str, key: str) -> np.ndarray:
        return np.asarray(nib.load(tmp_path / run / subj / f"{key}.nii.gz").dataobj)

    np.testing.assert_array_equal(load("t1", "semantic"), load("d", "semantic"))
    assert not np.array_equal(load("t1", "image"), load("d", "image"))
