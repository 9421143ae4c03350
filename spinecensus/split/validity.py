"""The thesis's validity check of a split (reported, never raised).

Every vertebra instance is one connected piece lying between two consecutive discs, and no
disc touches two non-adjacent vertebrae.  Pieces under ``fragment_voxels``, or under
:data:`SLIVER_FRACTION` of the instance's largest piece, are ignored: a sliver a disc
plane shaved off the neighbouring body (on coarse grids a few voxels at a posterior corner;
1.6 % of an L3 on a synthetic 2.6 x 4.5 mm grid) is no second vertebra, while a missed disc
leaves two pieces of similar size.  An invalid split withholds the transitional status
(``naming.counting``), so a sliver must not make one invalid.  All work is on voxel lists
plus one ``cc3d`` pass, never full-volume shifts.
"""

from __future__ import annotations

import numpy as np

from spinecensus.split.voxels import connected_components

#: a piece of a vertebra instance under this fraction of its largest piece is a sliver
SLIVER_FRACTION = 0.05


def check_validity(
    inst: np.ndarray,
    kinds: list[str],
    fragment_voxels: int,
    min_contact_faces: int,
    exempt: set[int] | frozenset[int] = frozenset(),
    v_idx: tuple[np.ndarray, ...] | None = None,
    d_idx: tuple[np.ndarray, ...] | None = None,
) -> list[str]:
    """Reasons why the split is invalid in the thesis's sense (empty list = valid).

    ``inst``: instance ids (0 background), ``kinds[id - 1]`` ``"vertebra"`` or ``"disc"``;
    ``exempt``: vertebra ids whose piece count is not judged (end vertebrae cut by the FOV);
    ``min_contact_faces``: voxel faces a disc must share with a vertebra to touch it.

    ``v_idx`` / ``d_idx``: the vertebra / disc voxel indices if known (else found here);
    all work is on those voxel lists plus one ``cc3d`` pass, never full-volume shifts.
    """
    reasons: list[str] = []
    n = len(kinds)
    is_vert = np.array([False] + [k == "vertebra" for k in kinds])
    if not is_vert[1:].any():
        reasons.append("no vertebra instance")
    # adjacent discs with no vertebra between them
    for i in range(1, n):
        if kinds[i] == "disc" and kinds[i - 1] == "disc":
            reasons.append(f"discs {i} and {i + 1} have no vertebra between them")
    inst = np.ascontiguousarray(inst)
    flat = inst.reshape(-1)
    if v_idx is None or d_idx is None:
        v_idx = np.nonzero(is_vert[inst] & (inst > 0))
        d_idx = np.nonzero(~is_vert[inst] & (inst > 0))
    v_lin = np.ravel_multi_index(v_idx, inst.shape)  # flat gathers are the cheap ones
    d_lin = np.ravel_multi_index(d_idx, inst.shape)
    ids_v = flat[v_lin]
    if ids_v.size:
        reasons += _vertebrae_in_pieces(inst.shape, v_lin, ids_v, n, fragment_voxels, exempt)
    ids_d = flat[d_lin].astype(np.int64)
    if ids_d.size and ids_v.size:
        reasons += _discs_touching_non_adjacent_vertebrae(
            inst, d_lin, d_idx, ids_d, is_vert, min_contact_faces
        )
    return reasons


def _vertebrae_in_pieces(
    shape: tuple[int, ...],
    v_lin: np.ndarray,
    ids_v: np.ndarray,
    n: int,
    fragment_voxels: int,
    exempt: set[int] | frozenset[int],
) -> list[str]:
    """One connected piece per vertebra (26-connectivity within each id; ``v_lin``: flat
    indices of the vertebra voxels, ``ids_v`` their ids, ``n`` instances); fragments and
    slivers (:data:`SLIVER_FRACTION`) do not count."""
    reasons: list[str] = []
    vert_only = np.zeros(shape, dtype=np.uint16)
    vert_only.reshape(-1)[v_lin] = ids_v
    comps, n_comp = connected_components(vert_only)
    comp_of = comps.reshape(-1)[v_lin].astype(np.intp)
    sizes = np.bincount(comp_of, minlength=n_comp + 1)
    owner = np.zeros(n_comp + 1, dtype=np.intp)
    owner[comp_of] = ids_v
    largest = np.zeros(n + 1, dtype=np.intp)
    np.maximum.at(largest, owner, sizes)
    real = (sizes >= max(fragment_voxels, 1)) & (sizes >= SLIVER_FRACTION * largest[owner])
    real[0] = False
    pieces = np.bincount(owner[real], minlength=n + 1)
    for i in np.flatnonzero(pieces > 1):
        if int(i) in exempt:
            continue
        reasons.append(f"vertebra instance {int(i)} is in {int(pieces[i])} pieces")
    return reasons


def _discs_touching_non_adjacent_vertebrae(
    inst: np.ndarray,
    d_lin: np.ndarray,
    d_idx: tuple[np.ndarray, ...],
    ids_d: np.ndarray,
    is_vert: np.ndarray,
    min_contact_faces: int,
) -> list[str]:
    """Discs touching non-adjacent vertebrae: face neighbours of every disc voxel
    (``inst`` C-contiguous; ``is_vert[id]``: instance ``id`` is a vertebra)."""
    reasons: list[str] = []
    flat = inst.reshape(-1)
    m = len(is_vert)
    lin = d_lin
    strides = np.cumprod((1,) + inst.shape[:0:-1])[::-1]  # C-order element strides
    codes = []
    for ax in range(3):
        for step in (-1, 1):
            ok = (d_idx[ax] + step >= 0) & (d_idx[ax] + step < inst.shape[ax])
            nb = flat[lin[ok] + step * int(strides[ax])].astype(np.int64)
            hit = is_vert[nb]
            codes.append(ids_d[ok][hit] * m + nb[hit])
    counts = np.bincount(np.concatenate(codes), minlength=m * m)
    for code in np.flatnonzero(counts >= max(min_contact_faces, 1)):
        dsc, vtb = divmod(int(code), m)
        if abs(dsc - vtb) != 1:
            reasons.append(f"disc instance {dsc} touches non-adjacent vertebra {vtb}")
    return reasons
