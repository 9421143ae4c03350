"""Ordering the disc planes along the spinal curve and orienting their normals caudally
(step 3 of the split, see ``split.instances``).

The order comes from a curve through the disc centroids, not from an array axis: the
longest path (diameter) of the centroids' minimum spanning tree is the spine curve, and
every centroid is sorted by its arc-length position on it.  The curve end lying further
along the cranial direction is the top.  Normals are flipped to point caudally along the
local curve tangent.  Nothing depends on which array axis is which, so flips/permutations
of the axes give the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spinecensus.split.discs import DiscComponents, fit_planes, group_moments


def order_along_curve(c: np.ndarray, cranial: np.ndarray) -> np.ndarray:
    """Cranio-caudal order of points ``c`` (K, 3, mm) along the curve they lie on.

    The curve is the diameter path of the points' Euclidean minimum spanning tree (robust
    to curvature: no single axis is assumed).  Points off that path are placed by their
    projection onto the nearest path segment.  The end further along ``cranial`` first.
    """
    k = len(c)
    if k == 1:
        return np.zeros(1, dtype=np.intp)
    from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path

    d = np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    # csgraph treats 0 as "no edge": coincident centroids still need an edge
    mst = minimum_spanning_tree(d + 1e-6 * (1 - np.eye(k)))
    dist, pred = shortest_path(mst, directed=False, return_predecessors=True)
    a = int(np.argmax(dist[0]))
    b = int(np.argmax(dist[a]))
    path = [b]
    while path[-1] != a:
        path.append(int(pred[a, path[-1]]))
    path_idx = np.asarray(path[::-1], dtype=np.intp)  # a ... b
    pts = c[path_idx]
    if len(pts) == 1:  # all points coincide
        t = c @ cranial * -1.0
    else:
        seg0, seg1 = pts[:-1], pts[1:]
        seg = seg1 - seg0
        seg_len = np.linalg.norm(seg, axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg_len)])
        rel = c[:, None, :] - seg0[None]  # (K, S, 3)
        u = np.clip((rel * seg[None]).sum(-1) / np.maximum(seg_len**2, 1e-12), 0.0, 1.0)
        foot = seg0[None] + u[..., None] * seg[None]
        err = ((c[:, None, :] - foot) ** 2).sum(-1)
        best = np.argmin(err, axis=1)
        t = cum[best] + u[np.arange(k), best] * seg_len[best]
        t[path_idx] = cum  # path points exactly at their own arc length
    order = np.argsort(t, kind="stable")
    if (c[order[-1]] - c[order[0]]) @ cranial > 0:  # last is more cranial: reverse
        order = order[::-1]
    return order


def orient_normals(
    c: np.ndarray, n: np.ndarray, trusted: np.ndarray, cranial: np.ndarray
) -> np.ndarray:
    """Flip normals (ordered discs) to point caudally along the local curve tangent.

    Untrusted discs (not flat, or truncated by the field of view, whose thinnest
    direction is then the cut rather than the disc) take the normal of the nearest
    trusted disc in the order, or the curve tangent when there is none.
    """
    k = len(c)
    if k == 1:
        tangent = -cranial[None, :]
    else:
        nxt = np.concatenate([c[1:], c[-1:]])
        prv = np.concatenate([c[:1], c[:-1]])
        tangent = nxt - prv
    tangent = tangent / np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    sign = np.sign((n * tangent).sum(1))
    sign[sign == 0] = 1.0
    n = n * sign[:, None]
    good = np.flatnonzero(trusted)
    if good.size == 0:
        return tangent
    bad = np.flatnonzero(~trusted)
    if bad.size:
        nearest = good[np.argmin(np.abs(bad[:, None] - good[None, :]), axis=1)]
        n = n.copy()
        n[bad] = n[nearest]
    return n


@dataclass
class OrderedPlanes:
    """The disc groups' planes, cranial first, in box-centred mm.

    Plane j is ``{x : x . normal_j = offset_j}`` (``offset = centroid . normal`` unless moved
    to the outer edge of a disc cut by the FOV).

    Attributes:
        centroid: (K, 3) centroids.
        normal: (K, 3) unit normals pointing caudally.
        sd_normal: (K,) std along the normal (mm).
        count: (K,) voxels per disc group.
        offset: (K,) plane offsets (mm).
    """

    centroid: np.ndarray
    normal: np.ndarray
    sd_normal: np.ndarray
    count: np.ndarray
    offset: np.ndarray

    def __len__(self) -> int:
        return len(self.centroid)


def _cut_end_discs(g_cut_o: np.ndarray, g_cnt: np.ndarray) -> np.ndarray:
    """Which ordered discs are end discs cut by the FOV (``g_cut_o``: cut flags in order,
    modified in place and returned).

    An end disc cut by the FOV: on the border across its normal *and* under half its
    neighbour's size (a whole disc merely grazing the border keeps its own plane).
    """
    if len(g_cnt) >= 2:
        g_cut_o[0] &= g_cnt[0] < 0.5 * g_cnt[1]
        g_cut_o[-1] &= g_cnt[-1] < 0.5 * g_cnt[-2]
        g_cut_o[1:-1] = False
    return g_cut_o


def ordered_disc_planes(
    discs: DiscComponents, group: np.ndarray, spacing: np.ndarray, cranial: np.ndarray
) -> OrderedPlanes:
    """Fit one plane per disc group, order the groups along the spinal curve and orient
    their normals caudally.  ``group`` (group id per component, -1 = fragment) is
    renumbered in place so that groups run cranio-caudally."""
    g_cnt, g_s1, g_s2, g_cut = group_moments(discs, group)
    ng = len(g_cnt)
    c, n, sd_n, flat = fit_planes(g_cnt, g_s1, g_s2, spacing)
    order = order_along_curve(c, cranial)
    c, n, sd_n, g_cnt = c[order], n[order], sd_n[order], g_cnt[order]
    k = ng
    # A cut end disc's thinnest direction is the cut and its centroid the visible part's,
    # so it borrows a neighbour's normal and its plane goes to the sliver's outer edge (+ half
    # a voxel): only voxels clearly beyond the visible disc form the cut vertebra there.
    g_cut_o = _cut_end_discs(g_cut[order].copy(), g_cnt)
    trusted = flat[order] & ~g_cut_o
    rank = np.empty(ng, dtype=np.intp)
    rank[order] = np.arange(ng)
    sel = group >= 0
    group[sel] = rank[group[sel]]  # groups now numbered cranio-caudally
    n = orient_normals(c, n, trusted, cranial)
    offs = (c * n).sum(1)
    half_vox = 0.5 * (np.abs(n) * spacing[None, :]).sum(1)
    gv = group[discs.component]
    for j, outward in ((0, -1.0), (k - 1, 1.0)):
        if g_cut_o[j]:
            proj = n[j] @ discs.mm[:, gv == j].astype(np.float64)
            edge = proj.min() if outward < 0 else proj.max()
            offs[j] = edge + outward * half_vox[j]
    return OrderedPlanes(c, n, sd_n, g_cnt, offs)
