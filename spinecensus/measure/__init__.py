"""Per-structure measurements of split instances: volumes, centroids, morphometrics.

Module map:

* ``volumes``: ``structure_table(instances, id_to_name, scan)`` - one row per instance
  present (its name, kind, region, voxel count, ``volume_mm3`` = voxel count x
  ``|det(affine[:3, :3])|``, and centroid mapped through the stored affine into scanner
  coordinates, mm).
* ``morphometrics``: ``measure_subject(instances, labels, spacing)`` - per body and disc
  heights (mm), Genant ratios and grade, disc height index, endplate tilts, and the
  subject's lordosis / kyphosis / segment angles (degrees); ``write_measurements``;
  ``measure_columns`` (the same without pandas, for the analyse job).  Built from
  ``structures`` (the named bodies and discs measured in one batch), ``midsagittal``
  (each structure's own mid-sagittal plane and the instance sampled on it), ``heights``
  (six-point heights, depth and endplate lines on that plane),
  ``genant`` (wedge / biconcavity / crush ratios, Genant 1993 grade), ``disc_height``
  (Farfan's disc height index), ``alignment`` (Cobb angles from endplate tilts) and
  ``plausibility`` (outlines withheld as inconsistent with themselves or their neighbours,
  reason in ``measure_flag``; the disc axes a body's first frame may start from).
* ``cli``: ``spinecensus measure INSTANCES.nii.gz LABELS.json --out DIR``.
"""
