"""Hypothesis property tests of instance splitting and count labeling (synthetic spines).

Inputs are synthetic whole spines from ``spinecensus.synthetic`` with random seed,
anomaly, curvature, rotation, spacing and field of view (``crop_fov``), then a random
permutation and flips of the array axes (spacing and the cranial direction follow).

Properties (for every input, valid split or not):

* **never crashes**: ``split_instances`` and ``count_labels`` return, never raise;
* **ids**: ``instances`` is uint16 with ids exactly ``1..N`` and ``len(kinds) == N``;
* **covering, non-overlapping**: one label array, so instances cannot overlap; every
  foreground voxel of the semantic mask is in exactly one instance and no background voxel
  is (``(instances > 0) == (semantic > 0)``).  The splitter documents no dropped voxels:
  stray disc fragments join the nearest disc and stray vertebra voxels beyond the end discs
  join the neighbouring vertebra, so the equality is exact; each instance is of the kind of
  its voxels (vertebra instances hold only class 1, disc instances only class 2);
* **ordered**: ids follow the ground-truth cranio-caudal order (the ground-truth instance
  holding most of each predicted instance strictly increases with the id) for valid
  splits, and the split is the same whatever the axis order/flips (equivariance);
* **no discs -> "unsplittable"** verdict (``valid=False``, no instances), no exception;
* labeling: names unique, in schema order, of the instance's kind; status in the allowed
  set; an uncropped valid whole spine gets its planted anomaly.

``max_examples`` is kept small (the whole module runs in well under 30 s) and
``deadline=None`` (the first call pays imports).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from spinecensus import synthetic
from spinecensus.anatomy import labels  # noqa: E402
from spinecensus.naming.counting import count_labels  # noqa: E402
from spinecensus.split.instances import CANONICAL_CRANIAL, split_instances  # noqa: E402

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # reproducible in CI; a failing example is printed in full
)
STATUSES = {"normal", "lumbarization", "sacralization", "undetermined"}
PERMS = list(itertools.permutations(range(3)))


@st.composite
def spines(draw: st.DrawFn) -> dict:
    """A random synthetic spine (canonical) plus a random axis permutation and flips."""
    seed = draw(st.integers(0, 10_000))
    anomaly = draw(st.sampled_from(["normal", "lumbarization", "sacralization"]))
    inplane = draw(st.floats(2.0, 3.2))
    curvature = draw(st.floats(0.3, 1.8))
    cfg = replace(
        synthetic.SyntheticConfig.tiny(),
        inplane_spacing_mm=(inplane, inplane + draw(st.floats(0.0, 0.6))),
        slice_spacing_mm=(draw(st.floats(3.0, 6.0)),) * 2,
        curvature_scale=(curvature, curvature),
        rotation_deg=draw(st.floats(0.0, 8.0)),
    )
    subj = synthetic.generate_subject(seed, anomaly, cfg)
    crop = draw(st.one_of(st.none(), st.integers(1, 10)))
    if crop is not None:
        subj = synthetic.crop_fov(subj, crop, np.random.default_rng(seed))
    perm = draw(st.sampled_from(PERMS))
    flips = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()))
    return {"subject": subj, "crop": crop, "perm": perm, "flips": flips}


def _forward(a: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]) -> np.ndarray:
    out = np.transpose(a, perm)
    return out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]


def _backward(a: np.ndarray, perm: tuple[int, ...], flips: tuple[bool, ...]) -> np.ndarray:
    un = a[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return np.transpose(un, np.argsort(perm))


def _transformed_geometry(spacing, perm, flips):
    sp = tuple(float(spacing[p]) for p in perm)
    cranial = np.asarray(CANONICAL_CRANIAL, dtype=float)[list(perm)]
    cranial = cranial * np.where(flips, -1.0, 1.0)
    return sp, tuple(cranial)


def _check_split_invariants(sem: np.ndarray, result) -> None:
    inst = result.instances
    assert inst.shape == sem.shape
    assert inst.dtype == np.uint16
    n = len(result.kinds)
    present = np.unique(inst)
    present = present[present > 0]
    assert present.tolist() == list(range(1, n + 1))
    if n == 0:
        assert result.valid is False
        assert result.invalid_reason.startswith("unsplittable")
        return
    assert np.array_equal(inst > 0, sem > 0), "instances must cover the mask exactly"
    kind_of = np.array(["bg"] + list(result.kinds))
    vert_inst = np.isin(inst, [i + 1 for i, k in enumerate(result.kinds) if k == "vertebra"])
    assert np.all(sem[vert_inst] == 1)
    disc_inst = np.isin(inst, [i + 1 for i, k in enumerate(result.kinds) if k == "disc"])
    assert np.all(sem[disc_inst] == 2)
    assert set(kind_of[1:]) <= {"vertebra", "disc"}
    assert len(result.voxel_counts) == n
    assert sum(result.voxel_counts) == int(np.count_nonzero(sem))
    if result.valid:
        assert result.invalid_reason is None
        # interleaved: never two discs in a row when vertebra voxels exist
        pairs = zip(result.kinds[:-1], result.kinds[1:], strict=True)
        assert not any(a == b == "disc" for a, b in pairs)


def _check_labeling(result, lab) -> None:
    assert lab.transitional_status in STATUSES
    names = [lab.id_to_name[i] for i in sorted(lab.id_to_name)]
    assert len(set(names)) == len(names)
    keys = [labels.sort_key(nm) for nm in names]
    assert keys == sorted(keys), names
    for iid, nm in lab.id_to_name.items():
        assert 1 <= iid <= len(result.kinds)
        want = "vertebra" if labels.is_vertebra(nm) else "disc"
        assert result.kinds[iid - 1] == want, (iid, nm)


@SETTINGS
@given(case=spines())
def test_split_and_label_properties(case: dict) -> None:
    """Random synthetic spines (counts via anomaly, curvature, rotation, spacing, FOV,
    axis order/flips) satisfy every split and labeling property (synthetic)."""
    subj = case["subject"]
    perm, flips = case["perm"], case["flips"]
    canon = split_instances(subj.semantic, subj.spacing_mm)
    _check_split_invariants(subj.semantic, canon)

    sem_t = _forward(subj.semantic, perm, flips)
    sp_t, cranial_t = _transformed_geometry(subj.spacing_mm, perm, flips)
    moved = split_instances(sem_t, sp_t, cranial_direction=cranial_t)
    _check_split_invariants(sem_t, moved)
    # equivariance: same instances and verdict whatever the array layout
    assert moved.kinds == canon.kinds
    assert moved.valid == canon.valid
    assert np.array_equal(_backward(moved.instances, perm, flips), canon.instances)

    if canon.valid and canon.kinds:
        # ordered like the ground truth: majority GT id per predicted id increases
        gt = subj.instances.astype(np.int64)
        pred = canon.instances.astype(np.int64)
        fg = pred > 0
        pairs = np.bincount(
            pred[fg] * (int(gt.max()) + 1) + gt[fg],
            minlength=(len(canon.kinds) + 1) * (int(gt.max()) + 1),
        ).reshape(len(canon.kinds) + 1, int(gt.max()) + 1)[1:]
        majority = pairs.argmax(axis=1)
        assert np.all(np.diff(majority) > 0), majority

    lab = count_labels(canon)
    _check_labeling(canon, lab)
    if case["crop"] is None and canon.valid:
        assert lab.transitional_status == subj.anomaly
    lab_moved = count_labels(moved)
    assert lab_moved.id_to_name == lab.id_to_name
    assert lab_moved.transitional_status == lab.transitional_status


@SETTINGS
@given(case=spines())
def test_no_discs_is_unsplittable(case: dict) -> None:
    """The same spines with every disc voxel removed give an "unsplittable" verdict,
    no instances and an undetermined labeling, never an exception (synthetic)."""
    subj = case["subject"]
    sem = np.where(subj.semantic == 2, 0, subj.semantic).astype(np.uint8)
    sem_t = _forward(sem, case["perm"], case["flips"])
    sp_t, cranial_t = _transformed_geometry(subj.spacing_mm, case["perm"], case["flips"])
    result = split_instances(sem_t, sp_t, cranial_direction=cranial_t)
    assert result.valid is False
    assert result.invalid_reason.startswith("unsplittable")
    assert int(result.instances.max(initial=0)) == 0
    lab = count_labels(result)
    assert lab.transitional_status == "undetermined"
    assert lab.id_to_name == {}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    sem=hnp.arrays(
        np.uint8,
        hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=9),
        elements=st.sampled_from([0, 0, 0, 1, 1, 2]),
    ),
    spacing=st.tuples(*[st.floats(0.2, 6.0)] * 3),
)
def test_arbitrary_masks_never_crash(sem: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Arbitrary (non-anatomical) 0/1/2 masks, including empty and disc-free ones, never
    raise and still satisfy the id and coverage invariants (synthetic)."""
    result = split_instances(sem, spacing)
    _check_split_invariants_loose(sem, result)
    lab = count_labels(result)
    _check_labeling(result, lab)


def _check_split_invariants_loose(sem: np.ndarray, result) -> None:
    """As :func:`_check_split_invariants` minus interleaving (noise has no anatomy)."""
    inst = result.instances
    n = len(result.kinds)
    present = np.unique(inst)
    assert present[present > 0].tolist() == list(range(1, n + 1))
    if not np.any(sem == 2):
        assert n == 0 and result.invalid_reason.startswith("unsplittable")
        return
    if n:
        assert np.array_equal(inst > 0, sem > 0)
        verts = [i + 1 for i, k in enumerate(result.kinds) if k == "vertebra"]
        assert np.all(sem[np.isin(inst, verts)] == 1)
        assert np.all(sem[(inst > 0) & ~np.isin(inst, verts)] == 2)
