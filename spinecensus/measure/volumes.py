"""Per-structure volumes (mm³) and centroids (scanner mm) from an instance mask.

Volume = voxel count x |det(affine[:3, :3])| (exact for any voxel shape and
orientation).  Centroids are the mean voxel index of each instance mapped through the
stored affine into scanner (world) coordinates, so they are comparable between scans of
any stored orientation.  One pass of ``np.bincount`` over the foreground voxels; no loop
over voxels or structures' masks.
"""

from __future__ import annotations

import numpy as np

from spinecensus.anatomy import labels
from spinecensus.io import Scan


def _canonical_to_stored_index(idx: np.ndarray, scan: Scan) -> np.ndarray:
    """Map (M, 3) canonical voxel indices (float ok) to the stored array's indices.

    ``Orientation.to_canonical`` row ``i`` = (canonical axis, flip) of stored axis ``i``;
    ``apply_orientation`` flips stored axis ``i`` and then moves it to that canonical axis.
    """
    tr = scan.orientation.to_canonical
    shape = scan.orientation.stored_shape
    out = np.empty_like(idx, dtype=np.float64)
    for i in range(3):
        ax, flip = int(tr[i, 0]), tr[i, 1]
        out[:, i] = idx[:, ax] if flip > 0 else (shape[i] - 1) - idx[:, ax]
    return out


def structure_table(
    instances: np.ndarray,
    id_to_name: dict[int, str],
    scan: Scan | np.ndarray,
    confidence: dict[int, float] | None = None,
    kinds: list[str] | None = None,
) -> list[dict]:
    """One row per instance present in ``instances``.

    Args:
        instances: integer instance mask.  With a :class:`~spinecensus.io.Scan` it is in
            canonical order (as the package produces it); with a bare 4x4 ``affine`` it is
            on that affine's own voxel grid (stored order).
        id_to_name: instance id -> structure name (unnamed ids get ``label=None``).
        scan: the scan the mask belongs to (stored affine + orientation), or an affine.
        confidence: optional id -> probability of the label (model labeling).
        kinds: optional ``kinds[id - 1]`` from the split, used for unnamed ids.

    Returns:
        dicts with ``label, kind, region, instance_id, voxel_count, volume_mm3,
        centroid_x_mm, centroid_y_mm, centroid_z_mm, confidence`` in id order.
    """
    inst = np.asarray(instances)
    if isinstance(scan, Scan):
        affine = np.asarray(scan.affine, dtype=np.float64)
    else:
        affine = np.asarray(scan, dtype=np.float64)
    vox_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    flat = inst.ravel()
    where = np.flatnonzero(flat)
    ids = flat[where].astype(np.intp)
    n = int(ids.max()) + 1 if ids.size else 1
    cnt = np.bincount(ids, minlength=n)
    coords = np.unravel_index(where, inst.shape)
    sums = np.stack([np.bincount(ids, coords[a], minlength=n) for a in range(3)], axis=1)
    present = np.flatnonzero(cnt[1:]) + 1
    mean_idx = sums[present] / cnt[present, None]
    if isinstance(scan, Scan):
        mean_idx = _canonical_to_stored_index(mean_idx, scan)
    world = mean_idx @ affine[:3, :3].T + affine[:3, 3]
    rows: list[dict] = []
    for j, i in enumerate(present.tolist()):
        name = id_to_name.get(i)
        if name is not None:
            kind = labels.kind(name)
            reg: str | None = labels.region(name)
        else:
            kind = kinds[i - 1] if kinds is not None and i <= len(kinds) else None
            reg = None
        rows.append(
            {
                "label": name,
                "kind": kind,
                "region": reg,
                "instance_id": i,
                "voxel_count": int(cnt[i]),
                "volume_mm3": float(cnt[i]) * vox_mm3,
                "centroid_x_mm": float(world[j, 0]),
                "centroid_y_mm": float(world[j, 1]),
                "centroid_z_mm": float(world[j, 2]),
                "confidence": None if confidence is None else confidence.get(i),
            }
        )
    return rows
