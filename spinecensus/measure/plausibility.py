"""Plausibility of each measured outline: withhold what a failed mask or frame would misreport.

A segmentation model's mask can hand the measurement a structure that is not the one its
name promises: a disc fragment beside the column, a disc segmented over half its depth, the
sacrum named as a lumbar body.  :mod:`spinecensus.measure.heights` traces an outline on
every one of them and returns numbers that look like heights.  This module compares each
traced structure with itself and with its measured neighbours (the structures whose
instance ids differ from its own by at most :data:`NEIGHBOUR_IDS`: in a mask of bodies and
discs, two levels each way; enough that one failed neighbour does not decide) and names
what is inconsistent; the caller withholds (NaN) its
heights, depth, endplate tilts and everything computed from them, and records the reason
in the column ``measure_flag``.

Rules (all from geometry in mm and degrees; a structure without a measured neighbour is
checked only against itself; the frame rule counts only neighbours that pass the other two):

* :data:`FRAME` (``"frame_disagrees"``): its frame disagrees with every measured
  neighbour's: the normals of their mid-sagittal planes are more than
  :data:`PLANE_MAX_DEG` apart, or their superior-inferior axes more than
  :data:`AXIS_MAX_DEG`.  Adjacent vertebrae turn against each other by a few degrees about
  the long axis and by a segment angle (up to about 25 deg at L5-S1 between two bodies)
  in the sagittal plane; a fragment whose principal axes point anywhere does not.
* :data:`DEPTH` (``"depth_disagrees"``): its antero-posterior depth is below
  :data:`MIN_DEPTH_RATIO` or above :data:`MAX_DEPTH_RATIO` times the median depth of its
  measured neighbours: a body or disc is about as deep as the ones next to it, so a much
  shorter outline covers only part of the structure and a much longer one takes in
  something else; either way its walls (where the heights are read) are not the
  structure's.
* :data:`MIDDLE` (``"middle_height_outside"``, bodies only): the middle height exceeds
  :data:`MAX_MIDDLE_RATIO` times the taller of the anterior and posterior heights.  A
  body's endplates are flat or concave, so its middle is at most as high as its walls
  (a disc bulges, so discs are exempt); a middle height far above both is a diagonal of an
  outline measured in a frame turned against the body.

The thresholds sit outside what the expert masks of 21 real scans and the ground-truth
masks of two seeded synthetic cohorts show (docs/morphometrics.md, "Withheld outlines").

:func:`disc_axis_weights` and :func:`disc_axes_hints` serve the first guess of a body's
frame (:func:`spinecensus.measure.morphometrics.measure_subject` starts it from the
adjacent discs' axes): a disc's short axis is only as good as its shape is flat, and a
fragment's axis is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from spinecensus.measure.alignment import KYPHOSIS_ENDS, LORDOSIS_ENDS
from spinecensus.measure.heights import Outlines, masked_median
from spinecensus.measure.midsagittal import Frames, Moments

#: ``measure_flag`` of a structure that was to be measured but has no outline: fewer
#: voxels than ``morphometrics.MIN_VOXELS``, or no outline could be traced
TOO_SMALL = "too_small"
NOT_TRACED = "not_traced"
#: ``measure_flag`` of a traced outline withheld by :func:`withheld`
FRAME = "frame_disagrees"
DEPTH = "depth_disagrees"
MIDDLE = "middle_height_outside"
#: neighbours: measured structures whose instance ids differ by at most this
NEIGHBOUR_IDS = 4
#: largest angle (degrees) between the mid-sagittal plane normals of neighbours
PLANE_MAX_DEG = 40.0
#: largest angle (degrees) between the superior-inferior axes of neighbours
AXIS_MAX_DEG = 45.0
#: depth as a fraction of the median depth of the measured neighbours: allowed range
MIN_DEPTH_RATIO = 0.7
MAX_DEPTH_RATIO = 1.5
#: largest middle height of a body as a multiple of its taller wall
MAX_MIDDLE_RATIO = 1.25
#: a body's first frame uses the axis of an adjacent disc at least this flat
#: (:func:`disc_axis_weights`) and within :data:`HINT_AGREE_DEG` of the flattest one's
MIN_DISC_FLATNESS = 2.5
HINT_AGREE_DEG = 30.0


def _axis_angles(v: np.ndarray) -> np.ndarray:
    """(N, N) angles (degrees) between the axes (unit rows of ``v``, either sense)."""
    return np.degrees(np.arccos(np.clip(np.abs(v @ v.T), 0.0, 1.0)))


def _neighbour_median(values: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Per row of the (N, N) boolean ``near``: the median of the non-NaN ``values`` over
    it (NaN where there is none)."""
    return masked_median(np.broadcast_to(values, near.shape), near & ~np.isnan(values)[None, :])


def withheld(
    ids: np.ndarray, is_disc: np.ndarray, frames: Frames, outlines: Outlines
) -> np.ndarray:
    """Why each of ``N`` traced structures is withheld (module docstring), or None.

    Args:
        ids: (N,) instance ids (cranio-caudal order, as the split writes them).
        is_disc: (N,) bool, disc (True) or vertebral body.
        frames: their final frames (unit axes, canonical mm axes).
        outlines: their outlines (mm); a structure whose outline was not traced
            (``outlines.ok`` false) is neither checked nor anyone's neighbour.

    Returns:
        (N,) object array: None, or the reasons (:data:`FRAME`, :data:`DEPTH`,
        :data:`MIDDLE`) joined by ``","``.
    """
    ok = outlines.ok
    ids = np.asarray(ids, dtype=np.int64)
    near = (np.abs(ids[:, None] - ids[None, :]) <= NEIGHBOUR_IDS) & ok[:, None] & ok[None, :]
    np.fill_diagonal(near, False)
    with np.errstate(invalid="ignore"):
        ratio = outlines.depth / _neighbour_median(outlines.depth, near)
        depth = (ratio < MIN_DEPTH_RATIO) | (ratio > MAX_DEPTH_RATIO)
        walls = np.fmax(outlines.height_anterior, outlines.height_posterior)
        middle = ~np.asarray(is_disc, bool) & (outlines.height_middle > MAX_MIDDLE_RATIO * walls)
    # a neighbour already withheld cannot vouch for a frame: a body whose first frame came
    # from a fragment of a disc agrees with that fragment
    near &= ~(depth | middle)[None, :]
    disagree = (_axis_angles(frames.lr) > PLANE_MAX_DEG) | (_axis_angles(frames.si) > AXIS_MAX_DEG)
    frame = near.any(axis=1) & ~(near & ~disagree).any(axis=1)
    out = np.full(ids.size, None, dtype=object)
    for k in np.flatnonzero(ok & (frame | depth | middle)):
        out[k] = ",".join(r for r, f in ((FRAME, frame), (DEPTH, depth), (MIDDLE, middle)) if f[k])
    return out


def disc_axis_weights(m: Moments, frames: Frames) -> np.ndarray:
    """(N,) how well each structure's shape fixes the superior-inferior axis ``frames.si``
    of its first frame (:func:`spinecensus.measure.midsagittal.initial_frames`): its
    flatness about that axis, the smaller of the variances of its voxel coordinates along
    ``ap`` and ``lr`` over the variance along ``si``, minus 1; 0 below
    :data:`MIN_DISC_FLATNESS` (dimensionless).  A disc is a plate, wide and deep but thin
    along ``si``: flatness 11-28 on expert masks of real MRI, 3.1-27 on generated ones; a
    model's disc in pieces or a fragment 0.3-2.8, a rod about 1, a sliver in one sagittal
    slice 0 (flat, but across ``lr``)."""
    var = [np.einsum("ni,nij,nj->n", v, m.cov, v) for v in (frames.si, frames.ap, frames.lr)]
    flatness = np.minimum(var[1], var[2]) / np.maximum(var[0], 1e-9)
    return np.where(flatness >= MIN_DISC_FLATNESS, flatness - 1.0, 0.0)


def disc_axes_hints(axes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """First guesses (M, 3), canonical mm axes, of ``M`` bodies' inferior axes from the
    axes of their adjacent discs, ``axes`` (M, K, 3) (each unit, inferior-pointing) and
    :func:`disc_axis_weights` ``weights`` (M, K), 0 for no disc (a body with fewer than K;
    each row has at least one): the mean of the axes within :data:`HINT_AGREE_DEG` of the
    flattest disc's.  Two adjacent discs' axes differ by about the body's wedge angle; one
    far off belongs to a fragment (a model's disc in pieces), and averaging it in would
    start the frame turned against the body, where the endplates' bisector cannot turn it
    back."""
    a = np.asarray(axes, dtype=float)
    w = np.asarray(weights, dtype=float)
    flattest = np.take_along_axis(a, np.argmax(w, axis=1)[:, None, None], axis=1)
    cos = np.clip(np.abs(np.sum(a * flattest, axis=2)), 0.0, 1.0)
    agree = (w > 0) & (np.degrees(np.arccos(cos)) <= HINT_AGREE_DEG)
    return np.where(agree[..., None], a, 0.0).sum(axis=1) / agree.sum(axis=1)[:, None]


def disc_axes_hint(axes: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """:func:`disc_axes_hints` of one body: its discs' axes (K, 3) and weights (K,)."""
    return disc_axes_hints(np.asarray(axes, dtype=float)[None], np.asarray(weights)[None])[0]


def alignment_withheld(
    spine: Mapping[str, Any],
    tilts: Mapping[str, tuple[float, float]],
    segments: Sequence[tuple[str, str, str]],
    flags: Mapping[str, str],
) -> dict[str, Any]:
    """Why each null angle of ``spine`` (:func:`spinecensus.measure.alignment.spine_alignment`)
    is null, where a flagged structure is the cause: ``{"lordosis_deg": "L6-S1:
    frame_disagrees", "segment_angles_deg": {"L5-L6": "L6: not_traced"}}`` ({} when none).

    An endplate of vertebra V is missing when its tilt in ``tilts`` (``{V: (superior,
    inferior)}``, degrees) is NaN; the structures that could have given it are V and the
    disc on that side of it (whose boundary stands in for an unmeasured body's endplate),
    and each of them that has a ``flags`` entry (name -> ``measure_flag``) is named.  A
    null angle whose endplates are merely out of view has no entry."""

    def why(ends: Sequence[tuple[str, str]]) -> str:
        found = []
        for v, side in ends:
            if math.isfinite(tilts.get(v, (math.nan, math.nan))[side == "inferior"]):
                continue
            for name, flag in flags.items():
                parts = name.split("-")
                if name == v or (len(parts) == 2 and parts[side == "superior"] == v):
                    found.append(f"{name}: {flag}")
        return "; ".join(found)

    out: dict[str, Any] = {}
    for key, ends in (("lordosis_deg", LORDOSIS_ENDS), ("kyphosis_deg", KYPHOSIS_ENDS)):
        if spine[key] is None and (reason := why(ends)):
            out[key] = reason
    angles = spine["segment_angles_deg"]
    segs = {}
    for name, up, low in segments:
        if angles.get(name) is None and (reason := why(((up, "superior"), (low, "superior")))):
            segs[name] = reason
    if segs:
        out["segment_angles_deg"] = segs
    return out
