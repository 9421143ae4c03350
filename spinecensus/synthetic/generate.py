"""Generation of one synthetic subject (``generate_subject``): anatomy, grid, painting, image.

Every subject is deterministic in (seed, anomaly, config, variants).  Four independent
random streams (covariates, anatomy, grid, image) are spawned from the seed, so e.g. the
covariates do not depend on the anomaly and the anatomy does not depend on the grid.  A
fifth (:func:`spinecensus.synthetic.variants.variant_rng`) draws the variants' geometry
and a sixth the planted fractures and disc narrowing
(:func:`spinecensus.synthetic.fracture.draw_deformities`); both only exist for a subject
with variants, so a subject without is what it always was.  Every subject carries its
drawn column (``SyntheticSubject.drawn``) from which its truth (``SyntheticSubject.truth``,
:mod:`spinecensus.synthetic.truth`) is read on demand, without touching any stream.

Speed
-----
The default in-plane spacing is 1.0-1.5 mm (slices 2.5-5 mm, 9-25 of them): about 2.5 M
voxels and ~0.17 CPU-s per subject on one core (``benchmarks/synthetic_speed.py``).  The
issue's full 0.5-1.5 mm range is ``SyntheticConfig(inplane_spacing_mm=(0.5, 1.5))``
(~2x the voxels on average, up to ~4x; ~0.33 CPU-s mean, ~1 s worst case).
:meth:`SyntheticConfig.tiny` gives coarse (2.5-3 mm) small subjects for unit tests
(~0.025 CPU-s).  Reading the truth (``SyntheticSubject.truth``, done when ``truth.json``
is written) costs ~0.1 CPU-s per subject whatever the grid (default preset, seeds 7-8:
0.46-0.54 s with it, 0.37-0.44 s without, on the loaded shared machine); a fracture
subject costs ~0.1-0.3 s more (its amount is solved for).
Work is done on a 2-D sagittal map (spine frame coordinates) and on per-row bands around
the column, never per structure on the full volume.
"""

from __future__ import annotations

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.synthetic.appearance import subject_image
from spinecensus.synthetic.centreline import draw_curve
from spinecensus.synthetic.column import paint_column
from spinecensus.synthetic.column_plan import ANOMALIES, plan_levels
from spinecensus.synthetic.column_profile import draw_conus
from spinecensus.synthetic.config import SyntheticConfig
from spinecensus.synthetic.crop import cut_field_of_view
from spinecensus.synthetic.fracture import NARROWED_NUCLEUS, deformed_column, draw_deformities
from spinecensus.synthetic.grid import Grid, draw_columns, draw_rows, draw_sampling
from spinecensus.synthetic.landmarks import LevelAnchors, paint_landmarks
from spinecensus.synthetic.render import render
from spinecensus.synthetic.subject import SyntheticSubject
from spinecensus.synthetic.tissues import disc_degeneration
from spinecensus.synthetic.trunk import draw_body_outline, paint_trunk, skin_rows
from spinecensus.synthetic.truth import DrawnColumn
from spinecensus.synthetic.variants import check_variants, variant_rng


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent random streams: covariates, anatomy, grid, image."""
    return [np.random.default_rng(ss) for ss in np.random.SeedSequence(seed).spawn(4)]


def generate_subject(
    seed: int,
    anomaly: str = "normal",
    config: SyntheticConfig | None = None,
    subject: str | None = None,
    variants: tuple[str, ...] | list[str] = (),
) -> SyntheticSubject:
    """Generate one synthetic whole-spine subject (deterministic in seed, anomaly, config,
    variants).

    Covariates (``sex``, ``age``) come from their own random stream and do not depend on
    ``anomaly`` (nor the anomaly on them).  ``variants``: names of
    :data:`spinecensus.synthetic.variants.VARIANTS` (anatomy and field of view); the masks
    and ``id_to_name`` hold them (a remnant disc is a labelled disc, a block one vertebra).
    """
    if anomaly not in ANOMALIES:
        raise ValueError(f"unknown anomaly {anomaly!r}; expected one of {ANOMALIES}")
    variants = check_variants(variants)
    r_var = variant_rng(int(seed)) if variants else None
    cfg = config or SyntheticConfig()
    r_cov, r_anat, r_grid, r_img = _streams(int(seed))
    sex = "F" if r_cov.random() < 0.5 else "M"
    age = int(r_cov.integers(20, 81))
    scale = float(np.clip(r_anat.normal(1.0, cfg.size_sd), 0.85, 1.15)) * (
        1.04 if sex == "M" else 0.96
    )
    plan = plan_levels(anomaly, r_anat, scale, cfg, variants, r_var)
    curve, conus = draw_curve(r_anat, cfg), draw_conus(r_anat)
    fracture, narrowing = draw_deformities(int(seed), variants, plan)
    cl, meta, prof = deformed_column(plan, curve, conus, scale, fracture, narrowing)
    names = plan.names

    # ---- grid and field of view around the body outline ------------------------------
    sampling = draw_sampling(r_grid, cfg)
    sx, sy, sz = sampling.spacing
    outline = draw_body_outline(plan, r_anat, cfg, scale)
    y = draw_rows(plan, cl, sy, r_grid, cfg)
    skin = skin_rows(outline, cl, y)
    z = draw_columns(plan, cl, float(np.max(skin.z_posterior)), sz, r_grid, cfg, scale)
    x = sampling.x
    grid = Grid(x, y, z, (sx, sy, sz))

    # ---- tissues: trunk and neck, landmarks, then the column, canal and arches ---------
    tissue = paint_trunk(grid, skin, outline, plan, anomaly, scale)
    x_mid = sampling.x_offset_mm
    paint_landmarks(tissue, grid, LevelAnchors(plan, cl, x_mid), plan, r_anat, scale,
                    outline.girth)  # fmt: skip
    disc_age = disc_degeneration(names, age, r_anat)
    if narrowing is not None:  # a narrowed disc is a degenerated one
        k = names.index(narrowing.disc) + 1
        disc_age[k] = min(disc_age[k], NARROWED_NUCLEUS)
    inst = paint_column(tissue, grid, cl, plan, prof, x_mid, sampling.tilt, scale, age >= 30)
    vert_ids = np.array([labels.is_vertebra(n) for n in names])
    kind_of_id = np.zeros(len(names) + 1, np.uint8)
    kind_of_id[1:] = np.where(vert_ids, 1, 2)
    sem = kind_of_id[inst]

    # ---- intensities ------------------------------------------------------------------
    if cfg.appearance == "default":  # the fixed "realistic T2" rendering (the demo's)
        image, contrast = render(tissue, inst, names, disc_age, grid, cfg, r_img, age)
    else:  # named or randomised contrast, from the tissue label map alone
        image, contrast = subject_image(tissue, grid.spacing, cfg.appearance, r_img), cfg.appearance
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
        variants=variants,
        tissue=tissue,
        drawn=DrawnColumn(plan, cl, prof, fracture, narrowing),
    )
    if r_var is not None and ("c2_cut" in variants or "sacrum_cut" in variants):
        sub = cut_field_of_view(sub, "c2_cut" in variants, "sacrum_cut" in variants, r_var)
    return sub
