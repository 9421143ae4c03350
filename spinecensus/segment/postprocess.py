"""Keeping the spine column of a semantic mask: the largest foreground component and the
large pieces linked to it across small gaps (a missed disc), everything else background.
"""

from __future__ import annotations

import math

import numpy as np

#: pieces of the column smaller than this are stray blobs (mm³).  A piece cut off by a
#: missed disc holds at least one vertebral body (2-3 cm³ for the smallest, cervical ones;
#: real lumbar bodies 8-65 cm³), while a synthetic model's blob at the skull base above C2
#: held 1.1 cm³ and, kept, made the top instance two pieces.
MIN_COLUMN_PIECE_MM3 = 2000.0
#: largest gap bridged between two pieces of the column (mm): one missed lumbar disc
#: (≤ 12-15 mm high) leaves its two vertebral bodies about this far apart
MAX_COLUMN_GAP_MM = 15.0


def spine_column(
    semantic: np.ndarray,
    spacing_mm: tuple[float, float, float],
    max_gap_mm: float = MAX_COLUMN_GAP_MM,
    min_piece_mm3: float = MIN_COLUMN_PIECE_MM3,
) -> np.ndarray:
    """Keep the spine column: the largest 26-connected foreground component and every
    component of at least ``min_piece_mm3`` that a chain of such components links to it
    with gaps of at most ``max_gap_mm`` (mm, measured with ``spacing_mm``, same axis order
    as ``semantic``).  Everything else becomes background.

    Why not only the largest component (the published package's rule): on synthetic and
    most expert-quality predictions the bodies and discs touch, so the column is one
    component.  On real MRI a missed disc leaves its two bodies a disc-height apart; the
    largest component is then one *piece* of the column and the rest - often most
    lumbar bodies - was erased (real validation scans lost up to 75 % of their body Dice
    that way).  Small components stay excluded even when close, so a chain of stray
    voxels cannot link a distant false positive.
    """
    import cc3d
    from scipy import ndimage

    sem = np.asarray(semantic)
    fg = sem > 0
    if not fg.any():
        return sem.copy()
    cc = cc3d.connected_components(fg, connectivity=26)
    sizes = np.bincount(cc.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    voxel_mm3 = float(np.prod(spacing_mm))
    big = sizes * voxel_mm3 >= min_piece_mm3
    big[largest] = True
    big[0] = False
    if big.sum() == 1:
        return np.where(cc == largest, sem, 0).astype(sem.dtype)
    pieces = big[cc]
    # grow every piece by half the gap: two pieces <= max_gap_mm apart then overlap
    near = ndimage.distance_transform_edt(~pieces, sampling=spacing_mm) <= max_gap_mm / 2.0
    groups = cc3d.connected_components(near, connectivity=26)
    group_of_largest = int(groups[cc == largest].flat[0])
    keep = pieces & (groups == group_of_largest)
    return np.where(keep, sem, 0).astype(sem.dtype)


def largest_component(semantic: np.ndarray) -> np.ndarray:
    """Keep only the largest 26-connected component of the foreground (vertebra | disc).

    The published package's rule, kept for comparison: it assumes the column is one
    connected object, which a missed disc breaks; the pipeline uses :func:`spine_column`.
    """
    return spine_column(semantic, (1.0, 1.0, 1.0), min_piece_mm3=math.inf)
