"""Per-structure measurements of split instances: volumes (mm³) and centroids (scanner mm).

Module map:

* ``volumes``: ``structure_table(instances, id_to_name, scan)`` - one row per instance
  present (its name, kind, region, voxel count, ``volume_mm3`` = voxel count x
  ``|det(affine[:3, :3])|``, and centroid mapped through the stored affine into scanner
  coordinates, mm).
"""
