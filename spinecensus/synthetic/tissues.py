"""Tissue classes of the image model, their intensities per contrast, disc degeneration.

Intensities are on an arbitrary 0..1000 scale; :mod:`spinecensus.synthetic.render` turns a
volume of tissue classes into an image with them.
"""

from __future__ import annotations

import numpy as np

from spinecensus.anatomy import labels

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


def disc_degeneration(names: tuple[str, ...], age: int, rng: np.random.Generator) -> np.ndarray:
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
