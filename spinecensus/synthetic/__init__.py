"""Seeded synthetic whole-spine sagittal T2-like MRI with exact ground truth.

What is generated
-----------------
One subject is a whole spine from the skull base (clivus, cerebellum, brainstem) down to the
coccyx on a random anisotropic voxel grid, with

* ``image``: float32 array of integer-valued T2-like intensities, stored as int16 (discs
  and CSF bright, marrow intermediate, cortical bone, ligaments, air and lungs dark, fat
  bright-ish, muscle darker), a smooth multiplicative bias field, Rician noise (magnitude of
  complex Gaussian) and mild in-plane partial-volume blur;
* ``semantic``: uint8, 0 background, 1 vertebral *body*, 2 intervertebral disc;
* ``instances``: uint16, ids ``1..N`` cranio-caudal, bodies and discs interleaved, named by
  :func:`spinecensus.anatomy.labels.structures` of the subject's anomaly (``id_to_name``).

All arrays are in the package's canonical order (``spinecensus.io``): axis 0 sagittal slice
(left -> right), axis 1 superior -> inferior, axis 2 anterior -> posterior; ``spacing_mm`` in
the same order.  Masks are rasterised from analytic shapes at voxel centres on the final
grid (never resampled), so they are exact for that grid.

Modules, in the order a subject is built
----------------------------------------
* ``config``: ``SyntheticConfig`` (every knob, presets ``default`` / ``tiny`` / ``varied``).
* ``morphometry``: adult body, sacral, coccygeal and disc dimensions (mm).
* ``column_plan``: ``ANOMALIES``; bodies, discs, sacrum and coccyx along the arc length.
* ``centreline``: the spine frame (s, v, w) and the sagittal curvature.
* ``column_profile``: 1-D cross-section, canal, cord and arch profiles along s.
* ``grid``: voxel spacing, slices and field of view.
* ``trunk``: skin outline, subcutaneous fat, muscle, mediastinum / viscera.
* ``landmarks``: skull, airway, organs, ribs, pelvis (ellipsoids at named levels).
* ``column``: the labelled bodies and discs, canal and posterior elements.
* ``tissues``: tissue classes, intensity tables per contrast, disc degeneration.
* ``render``: intensities, texture, blur, bias, Rician noise.
* ``randomise``: domain randomisation from the tissue label map (random Gaussian mixture,
  bias field, resolution, noise, field of view, clipping).
* ``appearance``: ``APPEARANCES``, the named contrasts and ``render_appearance`` (the label
  map in a named or randomised appearance; ``SyntheticConfig.appearance``).
* ``subject``: ``SyntheticSubject`` and its NIfTI storage.
* ``generate``: ``generate_subject``.
* ``variants``: ``VARIANTS`` (remnant S1-S2 disc, 11/13 thoracic, C2 or sacrum out of view,
  C2-C3 block, vertebral fracture, disc narrowing), their draws and what a correct census
  reports (``expected_status``).
* ``fracture``: the planted fractures (wedge, biconcave, crush; Genant grades 1-3) and disc
  narrowing.
* ``drawn_geometry``: each drawn body's and disc's heights and endplate lines.
* ``truth``: Genant grades, lordosis and kyphosis from them, ``truth.json``.
* ``crop``: ``crop_fov`` (small fields of view), ``cut_field_of_view`` (the FOV variants).
* ``cohort``: ``generate_cohort``, ``write_subject``, ``write_cohort``, ``SAMPLE_COLUMNS``.
* ``cli``: the ``spinecensus synth`` command.

Entry points re-exported here: ``SyntheticConfig``, ``SyntheticSubject``, ``ANOMALIES``,
``CONTRASTS``, ``DEFAULT_AXCODES``, ``generate_subject``, ``crop_fov``, ``sample_anomaly``,
``subject_id``, ``generate_cohort``, ``write_subject``, ``write_cohort``, ``SAMPLE_COLUMNS``,
``VARIANTS``, ``expected_status``.
"""

from spinecensus.synthetic.cohort import (
    SAMPLE_COLUMNS,
    generate_cohort,
    sample_anomaly,
    subject_id,
    write_cohort,
    write_subject,
)
from spinecensus.synthetic.column_plan import ANOMALIES
from spinecensus.synthetic.config import DEFAULT_AXCODES, SyntheticConfig
from spinecensus.synthetic.crop import crop_fov
from spinecensus.synthetic.generate import generate_subject
from spinecensus.synthetic.subject import SyntheticSubject
from spinecensus.synthetic.tissues import CONTRASTS
from spinecensus.synthetic.variants import VARIANTS, expected_status

__all__ = [
    "ANOMALIES",
    "CONTRASTS",
    "DEFAULT_AXCODES",
    "SAMPLE_COLUMNS",
    "SyntheticConfig",
    "SyntheticSubject",
    "VARIANTS",
    "crop_fov",
    "expected_status",
    "generate_cohort",
    "generate_subject",
    "sample_anomaly",
    "subject_id",
    "write_cohort",
    "write_subject",
]
