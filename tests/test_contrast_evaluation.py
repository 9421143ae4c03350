"""Segmentation Dice per contrast (issue 20, ``spinecensus.train.contrast_evaluation``) and the
appearances of the real study's mixed-in synthetic subjects.  All data here are synthetic
(tiny preset)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from spinecensus import synthetic
from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS
from spinecensus.train.contrast_evaluation import contrast_dice, contrast_summary
from spinecensus.train.real_run_config import (
    RealRunConfig,
    synthetic_appearance,
    synthetic_subject,
)


def test_contrasts_render_the_same_anatomy():
    """Synthetic: every named contrast renders the same label map for a seed, with a different
    image, so the contrast table compares appearance only."""
    base = synthetic.SyntheticConfig.tiny()
    subs = {
        look: synthetic.generate_subject(5, config=replace(base, appearance=look))
        for look in ("default", "t1", "inverted")
    }
    sem = np.asarray(subs["default"].semantic)
    for look, sub in subs.items():
        assert np.array_equal(np.asarray(sub.semantic), sem), look
    assert not np.allclose(np.asarray(subs["t1"].image), np.asarray(subs["inverted"].image))


def test_contrast_dice_of_the_shipped_model():
    """Synthetic, tiny preset: the shipped model segments the demo rendering (body Dice > 0.8)
    and the table holds one row per (contrast, subject) with Dice in [0, 1]."""
    per_subject = contrast_dice(
        DEFAULT_SEGMENTATION_WEIGHTS, ("default", "inverted"), n_subjects=1, preset="tiny"
    )
    assert list(per_subject["contrast"]) == ["default", "inverted"]
    assert per_subject[["dice_vertebra", "dice_disc"]].stack().between(0, 1).all()
    summary = contrast_summary(per_subject)
    assert list(summary.index) == ["default", "inverted"]
    assert summary.loc["default", "dice_vertebra_mean"] > 0.8


def test_mixed_in_synthetic_subjects_cycle_their_appearances():
    """Synthetic: ``synthetic_appearances`` is cycled over the mixed-in subjects, and a
    subject's label map does not depend on its appearance."""
    cfg = RealRunConfig.from_dict(
        {"synthetic_preset": "tiny", "synthetic_appearances": ["default", "randomised"]}
    )
    assert [synthetic_appearance(cfg, i) for i in range(4)] == [
        "default", "randomised", "default", "randomised",
    ]  # fmt: skip
    assert synthetic_appearance(RealRunConfig.from_dict({}), 3) == "default"
    a, b = synthetic_subject(cfg, 11, "default"), synthetic_subject(cfg, 11, "randomised")
    assert np.array_equal(np.asarray(a.semantic), np.asarray(b.semantic))
    assert not np.allclose(np.asarray(a.image), np.asarray(b.image))
