"""Instance splitting: a semantic mask -> ordered vertebra and disc instances, cut along planes
fitted through the discs.

Entry point: :func:`split_instances` -> :class:`SplitResult` (``split.instances``).
Module map, one step of the split each:

* ``instances``: ``split_instances`` (the steps in order), ``SplitResult``, the
  "unsplittable" verdicts.
* ``discs``: disc connected components, their moments and fitted planes (``DiscPlane``,
  ``find_disc_components``, ``fit_planes``).
* ``ordering``: ordering the disc planes along the spinal curve and orienting their
  normals caudally (``order_along_curve``, ``orient_normals``, ``ordered_disc_planes``).
* ``slabs``: assigning vertebra voxels to the slabs between planes, merging discs split
  around an empty slab, stray end slabs (``assign_slabs``).
* ``validity``: the thesis's validity check (``check_validity``).
* ``voxels``: bounding box, flat-index voxel lists, 26-connected components, the
  box-centred mm frame.
"""

from spinecensus.split.instances import (
    UNSPLITTABLE_EMPTY,
    UNSPLITTABLE_NO_DISCS,
    SplitResult,
    split_instances,
)

__all__ = ["UNSPLITTABLE_EMPTY", "UNSPLITTABLE_NO_DISCS", "SplitResult", "split_instances"]
