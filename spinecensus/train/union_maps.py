"""Union-class label maps: one class per named structure of the 49-name union schema
(``labels.all_names()``), the labeler's training target, and back to instances.

A union-class map is a uint8 array of the same shape (and voxel order) as the instance map it
came from: 0 background, ``i`` = ``labels.all_names()[i - 1]``.
"""

from __future__ import annotations

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.naming.vote import union_column


def union_class_map(instances: np.ndarray, id_to_name: dict[int, str]) -> np.ndarray:
    """Instance map -> per-voxel union-schema class (0 bg, i = all_names()[i-1]), uint8."""
    names = labels.all_names()
    lut = np.zeros(int(np.max(instances, initial=0)) + 1, dtype=np.uint8)
    for iid, name in id_to_name.items():
        if 0 < int(iid) < len(lut):
            # L4-S1 / L5-S1 are no union column: learned as "L6-S1", the disc above the
            # sacrum (vote.COLUMN_ALIASES scores them from it when decoding)
            lut[int(iid)] = names.index(union_column(name)) + 1
    return lut[np.asarray(instances, dtype=np.int64)]


def instances_from_union(union: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Union-class map of one labelled spine -> (instances 1..N cranio-caudal, names).

    Every structure of a spine has its own union class, so ranking the classes present
    gives the instances back (the union order is cranio-caudal).
    """
    present = np.unique(union)
    present = present[present > 0]
    lut = np.zeros(256, dtype=np.uint16)
    lut[present] = np.arange(1, present.size + 1, dtype=np.uint16)
    names = labels.all_names()
    return lut[union], {i + 1: names[int(c) - 1] for i, c in enumerate(present)}
