"""Appearances of a synthetic subject rendered from its tissue label map alone: named
contrasts for evaluation and the domain-randomised one for training (``render_appearance``).

``APPEARANCES`` are the choices of ``SyntheticConfig.appearance`` and ``spinecensus synth
--appearance``:

* ``default`` — the generator's fixed "realistic T2" rendering
  (:mod:`spinecensus.synthetic.render`: per-structure factors, disc degeneration, marrow
  texture, station gains); the demo's.  It needs more than the label map, so it is not
  rendered here.
* ``t2``, ``t1``, ``water``, ``fat``, ``inverted`` — deterministic mean intensity per tissue
  (``NAMED_MEANS``, 0..1000 scale; rationale below) with a mild seeded texture (SD 4 % of
  the mean), bias field (log SD 0.1), 0.5-voxel in-plane blur and Rician noise (SD 12), at
  the native resolution and the whole field of view.
* ``randomised`` — a new appearance per image (:func:`spinecensus.synthetic.randomise.draw_random`):
  the named tables serve as anchors for 40 % of the draws, uniform random means for the rest.

The named tables, and the tissue order each one guarantees (``tests/test_appearance.py``):

* ``t2``: T2 fast spin echo, the generator's table ``tissues.CONTRASTS["t2"]``: fluid and
  healthy nuclei bright, fat bright, marrow intermediate, muscle dark
  (nucleus > vertebral marrow, CSF > cord).
* ``t1``: spin-echo T1, ``tissues.CONTRASTS["t1"]``: fat and fatty marrow bright, fluid dark,
  discs darker than bodies (fat > nucleus, marrow > nucleus, cord > CSF).
* ``water``: the water image of a chemical-shift (Dixon) T2 acquisition, i.e. a
  fat-suppressed T2: free water bright (CSF, nuclei, effusions), fat and the fatty adult
  marrow (fat fraction ~50-70 %) dark, muscle and organs intermediate
  (nucleus > marrow, CSF > fat, muscle > fat).
* ``fat``: the fat image of the same acquisition, ``tissues.CONTRASTS["fat_bright"]``: only
  fat and fatty marrow bright, every water-rich tissue dark (fat > nucleus, marrow > nucleus,
  fat > CSF).
* ``inverted``: ``t2`` with every non-air tissue's intensity reflected within the table's
  range (``min + max - t2``), so each pair of tissues swaps order; air stays dark (no MR
  contrast gives air signal).  It has no scanner counterpart: it tests that a model reads
  shape, not brightness.

Arrays are canonical ``(slice, row, col)``: axis 0 L->R, axis 1 S->I, axis 2 A->P.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinecensus.synthetic import randomise
from spinecensus.synthetic import tissues as ts
from spinecensus.synthetic.tissues import AIR, CONTRASTS, N_TISSUES

#: every choice of ``SyntheticConfig.appearance`` (``default`` = the fixed demo rendering)
APPEARANCES = ("default", "t2", "t1", "water", "fat", "inverted", "randomised")

# Water image of a T2 Dixon acquisition (0..1000): free water bright, fat suppressed, adult
# marrow dark-intermediate (its water fraction), muscle/organs by their water content and T2.
_WATER: dict[int, float] = {
    ts.AIR: 0.0, ts.FAT: 60.0, ts.MUSCLE: 220.0, ts.MARROW: 160.0, ts.CORTEX: 30.0,
    ts.NUCLEUS: 700.0, ts.ANNULUS: 160.0, ts.CSF: 950.0, ts.CORD: 400.0, ts.BRAIN: 480.0,
    ts.CEREBELLUM: 420.0, ts.LIVER: 230.0, ts.KIDNEY: 500.0, ts.LUNG: 20.0, ts.FLOWVOID: 30.0,
    ts.HEART: 260.0, ts.BOWEL: 380.0, ts.FLUID: 960.0, ts.LIGAMENT: 50.0, ts.POSTBONE: 150.0,
    ts.RUDIMENT: 450.0, ts.SPLEEN: 460.0, ts.EPIFAT: 70.0, ts.VISCERA: 300.0,
}  # fmt: skip


def _table(d: dict[int, float]) -> np.ndarray:
    return np.array([d[t] for t in range(N_TISSUES)], dtype=float)


def _inverted(t2: np.ndarray) -> np.ndarray:
    body = np.arange(N_TISSUES) != AIR
    out = t2.copy()
    out[body] = t2[body].min() + t2[body].max() - t2[body]
    return out


#: deterministic mean intensity per tissue class (index = tissue id), 0..1000 scale
NAMED_MEANS: dict[str, np.ndarray] = {
    "t2": _table(CONTRASTS["t2"]),
    "t1": _table(CONTRASTS["t1"]),
    "water": _table(_WATER),
    "fat": _table(CONTRASTS["fat_bright"]),
}
NAMED_MEANS["inverted"] = _inverted(NAMED_MEANS["t2"])

#: the mild, fixed corruption of a named contrast (see the module docstring)
NAMED_TEXTURE, NAMED_BIAS_LOG_SD, NAMED_BLUR_VOX, NAMED_NOISE_SD = 0.04, 0.1, 0.5, 12.0


@dataclass(frozen=True)
class Rendered:
    """A rendered image and what made it.

    ``image``: float32, the label map's shape, >= 0 (0..~1000).  ``rows``: the
    superior-inferior field of view ``(first, stop)``; crop the image *and* the labels with
    ``[:, first:stop]`` (the whole range unless a randomised draw chose a partial view).
    ``draw``: every drawn number (:class:`spinecensus.synthetic.randomise.AppearanceDraw`).
    """

    image: np.ndarray
    rows: tuple[int, int]
    draw: randomise.AppearanceDraw

    def cropped(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image, labels) cropped to the field of view; ``labels`` has the image's shape."""
        r0, r1 = self.rows
        return self.image[:, r0:r1], np.asarray(labels)[:, r0:r1]


def named_draw(name: str, n_rows: int) -> randomise.AppearanceDraw:
    """The fixed parameters of a named contrast (its means and the mild corruption)."""
    if name not in NAMED_MEANS:
        raise ValueError(f"unknown named contrast {name!r} (one of {', '.join(NAMED_MEANS)})")
    means = NAMED_MEANS[name]
    return randomise.AppearanceDraw(
        means=tuple(float(m) for m in means),
        sds=tuple(float(NAMED_TEXTURE * m) for m in means),
        bias_log_sd=NAMED_BIAS_LOG_SD,
        factors=(1.0, 1.0, 1.0),
        blur_vox=NAMED_BLUR_VOX,
        noise_sd=NAMED_NOISE_SD,
        rows=(0, int(n_rows)),
        clip_percentile=None,
        source=name,
    )


def render_appearance(
    tissue: np.ndarray,
    spacing_mm: tuple[float, float, float],
    appearance: str,
    rng: np.random.Generator,
    ranges: randomise.RandomRanges | None = None,
) -> Rendered:
    """Render a tissue label map (uint8 tissue classes, canonical order; ``spacing_mm`` in
    mm, same order) in a named contrast or, with ``"randomised"``, a random appearance.

    Deterministic in ``rng``'s state.  This is the per-sample call for training on
    randomised renders: the segmentation truth is the subject's label map, cropped to
    ``Rendered.rows`` (:meth:`Rendered.cropped`).
    """
    tissue = np.asarray(tissue)
    if tissue.ndim != 3:
        raise ValueError(f"tissue label map must be 3-D (slice, SI, AP), got {tissue.shape}")
    if appearance == "randomised":
        draw = randomise.draw_random(rng, tissue.shape, spacing_mm, NAMED_MEANS, ranges)
    elif appearance in NAMED_MEANS:
        draw = named_draw(appearance, tissue.shape[1])
    else:
        choices = ", ".join(a for a in APPEARANCES if a != "default")
        raise ValueError(f"unknown appearance {appearance!r} for a label map ({choices})")
    return Rendered(randomise.synthesise(tissue, draw, rng), draw.rows, draw)


def subject_image(
    tissue: np.ndarray,
    spacing_mm: tuple[float, float, float],
    appearance: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """The image ``generate_subject`` stores for a non-default ``SyntheticConfig.appearance``:
    :func:`render_appearance` over the whole field of view (a subject's partial views come
    from ``crop_fov`` and the field-of-view variants, which renumber its instances)."""
    whole_view = randomise.RandomRanges(p_fov=0.0)
    return render_appearance(tissue, spacing_mm, appearance, rng, whole_view).image
