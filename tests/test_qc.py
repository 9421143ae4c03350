"""QC figures render from tiny synthetic inputs (phantom masks, hand-made tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from spine_phantom import make_phantom

from spinecensus.census import cohort_figures, subject_qc


def test_subject_png_mid_sagittal_overlay(tmp_path):
    """Synthetic phantom: a PNG is written, the chosen slice is the spine's middle."""
    ph = make_phantom("normal")
    out = tmp_path / "qc.png"
    subject_qc.subject_png(out, ph.instances, ph.id_to_name, ph.spacing_mm, image=ph.semantic * 1.0,
                   title="phantom")  # fmt: skip
    im = Image.open(out)
    assert im.size[0] > 100 and im.size[1] > 300
    k = subject_qc.mid_sagittal_index(ph.instances)
    assert abs(k - (ph.instances.shape[0] - 1) / 2) <= 1
    # not a blank picture: several distinct colours from the overlay
    assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 20


def test_failure_and_cohort_figures(tmp_path):
    subject_qc.failure_png(tmp_path / "f.png", "S1", "segment", "x.nii.gz: file does not exist")
    assert Image.open(tmp_path / "f.png").size[0] > 100
    prev = pd.DataFrame({
        "status": ["lumbarization", "lumbarization", "sacralization", "sacralization"],
        "stratum": ["all", "sex=F", "all", "sex=F"],
        "n": [7, 3, 4, 0], "denominator": [100, 50, 100, 50],
        "prevalence": [0.07, 0.06, 0.04, 0.0], "ci_low": [0.03, 0.02, 0.016, 0.0],
        "ci_high": [0.14, 0.16, 0.1, 0.07], "true_n": [6, 3, 4, 0],
        "true_prevalence": [0.06, 0.06, 0.04, 0.0],
    })  # fmt: skip
    cohort_figures.prevalence_png(
        prev, tmp_path / "p.png", {"lumbarization": 0.066, "sacralization": 0.036}
    )
    st = pd.DataFrame({"label": ["L1", "L1", "L1-L2", "L2"], "kind": ["vertebra", "vertebra",
                       "disc", "vertebra"], "volume_mm3": [1.0, 2.0, 0.5, 3.0]})  # fmt: skip
    cohort_figures.volumes_png(st, tmp_path / "v.png")
    for name in ("p.png", "v.png"):
        assert Image.open(tmp_path / name).size[0] >= 500
