"""Instance splitting (spinecensus.split) on synthetic phantoms with exact ground truth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from spine_phantom import dice_per_instance, make_phantom

from spinecensus.anatomy import labels
from spinecensus.io import InputError
from spinecensus.split.instances import UNSPLITTABLE_NO_DISCS, split_instances


@pytest.fixture(scope="module")
def phantoms():
    return {v: make_phantom(v) for v in labels.VARIANTS}


@pytest.mark.parametrize("variant", labels.VARIANTS)
def test_split_recovers_ground_truth(phantoms, variant):
    """Synthetic phantom: GT semantic mask -> instances equal GT (Dice 1), valid."""
    p = phantoms[variant]
    r = split_instances(p.semantic, p.spacing_mm)
    assert r.valid, r.invalid_reason
    assert r.n_instances == len(p.id_to_name)
    assert r.kinds == [labels.kind(p.id_to_name[i]) for i in range(1, r.n_instances + 1)]
    dice = dice_per_instance(r.instances.astype(int), p.instances.astype(int))
    assert dice.mean() >= 0.99 and dice.min() >= 0.95
    assert r.instances.dtype == np.uint16
    # every foreground voxel belongs to exactly one instance of the right kind
    kind_of = np.array([0] + [1 if k == "vertebra" else 2 for k in r.kinds])
    assert np.array_equal(kind_of[r.instances], p.semantic)


def test_split_metadata_consistent(phantoms):
    """Synthetic phantom: counts, centroids and disc planes describe the instances."""
    p = phantoms["normal"]
    r = split_instances(p.semantic, p.spacing_mm)
    counts = np.bincount(r.instances.ravel(), minlength=r.n_instances + 1)[1:]
    assert r.voxel_counts == counts.tolist()
    assert r.centroids_mm.shape == (r.n_instances, 3)
    # cranio-caudal order: axis-1 (superior -> inferior) centroid increases with id
    assert np.all(np.diff(r.centroids_mm[:, 1]) > 0)
    assert len(r.disc_planes) == r.n_discs
    for pl in r.disc_planes:
        assert abs(np.linalg.norm(pl.normal) - 1) < 1e-6
        assert pl.normal[1] > 0.7  # caudal, roughly along the spine


@pytest.mark.parametrize(
    "perm,flips",
    [
        ((0, 1, 2), (1, 1, 1)),
        ((2, 0, 1), (0, 1, 0)),
        ((1, 2, 0), (1, 0, 1)),
        ((2, 1, 0), (0, 0, 1)),
    ],
)
def test_split_orientation_independent(perm, flips):
    """Synthetic phantom with anisotropic spacing: flipped/permuted arrays (spacing and
    cranial direction transformed alike) give the same instances after mapping back."""
    p = make_phantom("normal", spacing_mm=(3.5, 1.3, 0.9), amplitude_mm=20)
    ref = split_instances(p.semantic, p.spacing_mm)
    a = p.semantic
    cran = np.array([0.0, -1.0, 0.0])
    for ax, f in enumerate(flips):
        if f:
            a = np.flip(a, ax)
            cran[ax] = -cran[ax]
    a = np.ascontiguousarray(np.transpose(a, perm))
    sp = tuple(p.spacing_mm[i] for i in perm)
    r = split_instances(a, sp, cranial_direction=cran[list(perm)])
    back = np.transpose(r.instances, np.argsort(perm))
    for ax, f in enumerate(flips):
        if f:
            back = np.flip(back, ax)
    assert r.valid and np.array_equal(back, ref.instances)


@pytest.mark.parametrize("spacing", [(4.0, 2.0, 2.0), (2.5, 1.0, 1.8), (5.0, 2.4, 1.2)])
def test_split_anisotropic_spacing(spacing):
    """Synthetic phantom at several anisotropic spacings: still exact and valid."""
    p = make_phantom("normal", spacing_mm=spacing, amplitude_mm=25)
    r = split_instances(p.semantic, p.spacing_mm)
    assert r.valid, r.invalid_reason
    assert dice_per_instance(r.instances.astype(int), p.instances.astype(int)).mean() >= 0.99


def test_split_strongly_bent_spine():
    """Synthetic phantom with a 90 mm sagittal bend: still exact and valid."""
    p = make_phantom("normal", amplitude_mm=90)
    r = split_instances(p.semantic, p.spacing_mm)
    assert r.valid, r.invalid_reason
    assert r.n_crossing_voxels == 0
    assert dice_per_instance(r.instances.astype(int), p.instances.astype(int)).min() >= 0.99


@pytest.mark.parametrize("arc", [200, 240])
def test_split_far_planes_cross_other_vertebrae(arc):
    """Synthetic phantom curled along a circular arc past 180 degrees (not anatomical, so
    the cranial end is given explicitly): every disc plane extended through the centre of
    the curl cuts vertebrae on the far side.  Counting the planes a voxel lies below
    misassigns hundreds of voxels; judging each voxel by its neighbouring planes only
    (nearest disc centroid) recovers every instance exactly."""
    p = make_phantom("normal", arc_deg=arc, scale=0.6, spacing_mm=(4.0, 2.0, 2.0))
    r = split_instances(p.semantic, p.spacing_mm, cranial_direction=(0.0, -1.0, -1.0))
    assert r.valid, r.invalid_reason
    assert dice_per_instance(r.instances.astype(int), p.instances.astype(int)).min() == 1.0
    # the naive rule (slab = number of planes the voxel lies caudal of) fails here
    c = np.array([d.centroid_mm for d in r.disc_planes])
    n = np.array([d.normal for d in r.disc_planes])
    x = np.argwhere(p.semantic == 1) * np.asarray(p.spacing_mm)
    naive = ((x @ n.T - (c * n).sum(1)) >= 0).sum(1)
    truth = (p.instances[p.semantic == 1].astype(int) - 1) // 2
    assert (naive != truth).sum() > 100


def test_split_ignores_stray_fragments():
    """Synthetic phantom plus 60 isolated 1-voxel fragments of both classes: the same
    structures, still valid, and the fragments are covered (assigned, not dropped)."""
    p = make_phantom("normal")
    sem = p.semantic.copy()
    rng = np.random.default_rng(1)
    bg = np.argwhere(sem == 0)
    pick = bg[rng.choice(len(bg), 60, replace=False)]
    sem[tuple(pick.T)] = 1 + (np.arange(60) % 2)
    r = split_instances(sem, p.spacing_mm)
    assert r.valid, r.invalid_reason
    assert r.n_instances == len(p.id_to_name)
    assert np.array_equal(r.instances > 0, sem > 0)
    inside = np.where(p.semantic > 0, r.instances, 0)
    assert dice_per_instance(inside.astype(int), p.instances.astype(int)).min() >= 0.99


def test_split_merges_a_disc_cut_in_two():
    """Synthetic phantom whose T5-T6 disc is cut into two halves by a gap: still one disc."""
    p = make_phantom("normal")
    sem = p.semantic.copy()
    disc_id = labels.class_id("T5-T6")
    ys = np.flatnonzero(np.any(p.instances == disc_id, axis=(0, 2)))
    mid = sem.shape[0] // 2
    sem[mid, ys.min() : ys.max() + 1][sem[mid, ys.min() : ys.max() + 1] == 2] = 0
    r = split_instances(sem, p.spacing_mm)
    assert r.valid, r.invalid_reason
    assert r.n_instances == len(p.id_to_name)


def test_split_small_fov_crop():
    """Synthetic phantom cropped to a mid-thoracic window cutting vertebrae at both ends."""
    p = make_phantom("normal")
    crop = p.semantic[:, 100:220]
    r = split_instances(crop, p.spacing_mm)
    assert r.valid, r.invalid_reason
    gt = p.instances[:, 100:220]
    assert r.n_instances == len(np.unique(gt[gt > 0]))


def test_split_no_discs_is_unsplittable():
    """A mask with vertebrae but no discs: clear verdict, no exception, no instances."""
    sem = np.zeros((4, 30, 10), dtype=np.uint8)
    sem[1:3, 5:25, 2:8] = 1
    r = split_instances(sem, (3.0, 1.0, 1.0))
    assert not r.valid and r.invalid_reason == UNSPLITTABLE_NO_DISCS
    assert r.n_instances == 0 and not r.instances.any()


def test_split_empty_mask_is_unsplittable():
    """All-zero and zero-size masks: unsplittable verdicts."""
    r = split_instances(np.zeros((3, 4, 5), dtype=np.uint8), (1, 1, 1))
    assert not r.valid and r.invalid_reason.startswith("unsplittable")
    r = split_instances(np.zeros((0, 4, 5), dtype=np.uint8), (1, 1, 1))
    assert not r.valid and r.invalid_reason.startswith("unsplittable")


@pytest.mark.parametrize("seed", range(6))
def test_split_never_crashes_on_noise(seed):
    """Random label noise (not a spine): a result, ordered ids, covering every voxel
    whenever discs exist."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(1, 14, 3))
    sem = (rng.random(shape) < rng.random()) * rng.integers(1, 3, shape)
    r = split_instances(sem.astype(np.uint8), tuple(rng.uniform(0.5, 5, 3)))
    assert r.instances.shape == sem.shape
    assert set(np.unique(r.instances)) - {0} == set(range(1, r.n_instances + 1))
    if (sem == 2).any() and r.n_instances:
        assert np.array_equal(r.instances > 0, sem > 0)
    if not r.valid:
        assert r.invalid_reason


def test_split_missing_disc_gives_two_piece_vertebra():
    """Synthetic phantom whose L2-L3 disc was missed (voxels erased): L2 and L3 share one
    slab but are two pieces -> invalid, with the reason."""
    p = make_phantom("normal")
    sem = p.semantic.copy()
    sem[p.instances == labels.class_id("L2-L3")] = 0
    r = split_instances(sem, p.spacing_mm)
    assert not r.valid
    assert "pieces" in r.invalid_reason


def test_validity_flags_disc_touching_non_adjacent_vertebra():
    """Hand-made instance map V D V D V where disc 2 also touches vertebra 5."""
    from spinecensus.split.validity import check_validity

    inst = np.zeros((1, 9, 6), dtype=np.uint16)
    inst[0, 0:2, :] = 1
    inst[0, 2, :] = 2
    inst[0, 3:5, :] = 3
    inst[0, 5, :] = 4
    inst[0, 6:9, :] = 5
    inst[0, 2:7, 5] = [2, 2, 2, 2, 5]  # disc 2 reaches down along the side
    inst[0, 6:9, 5] = 5
    kinds = ["vertebra", "disc", "vertebra", "disc", "vertebra"]
    reasons = check_validity(inst, kinds, fragment_voxels=1, min_contact_faces=1)
    assert any("disc instance 2 touches non-adjacent vertebra 5" in r for r in reasons)
    ok = np.zeros_like(inst)
    ok[0, :, :5] = inst[0, :, :5]
    assert check_validity(ok, kinds, fragment_voxels=1, min_contact_faces=1) == []


@pytest.mark.parametrize(
    "arr,spacing",
    [
        (np.zeros((3, 3)), (1, 1, 1)),
        (np.full((3, 3, 3), 3), (1, 1, 1)),
        (np.full((3, 3, 3), 0.5), (1, 1, 1)),
        (np.zeros((3, 3, 3)), (1, 0, 1)),
    ],
)
def test_split_bad_input_raises_input_error(arr, spacing):
    """Non-3-D, labels outside {0,1,2}, non-integer values, zero spacing: InputError."""
    with pytest.raises(InputError):
        split_instances(arr, spacing)


def test_split_single_voxel_discs_use_the_curve_tangent():
    """A one-voxel-wide column V V D V V D V (no disc shape): planes follow the curve."""
    sem = np.array([1, 1, 2, 1, 1, 2, 1], dtype=np.uint8).reshape(1, 7, 1)
    r = split_instances(sem, (1.0, 1.0, 1.0), min_disc_voxels=1, fragment_voxels=1)
    assert r.kinds == ["vertebra", "disc", "vertebra", "disc", "vertebra"]
    assert r.instances.ravel().tolist() == [1, 1, 2, 3, 3, 4, 5]
    assert r.valid


def test_split_permutations_all_agree_on_counts():
    """Synthetic phantom: all 6 axis permutations give the same instance count."""
    p = make_phantom("sacralization", spacing_mm=(4.0, 2.5, 2.0))
    n = set()
    for perm in itertools.permutations(range(3)):
        cran = np.array([0.0, -1.0, 0.0])[list(perm)]
        sp = tuple(p.spacing_mm[i] for i in perm)
        r = split_instances(np.transpose(p.semantic, perm), sp, cranial_direction=cran)
        n.add((r.n_instances, r.valid))
    assert n == {(len(p.id_to_name), True)}


# --- on the project's synthetic generator (spinecensus.synthetic, tests/conftest.py) -----


def test_split_recovers_synthetic_subjects(synthetic_subjects):
    """Synthetic subjects (tiny preset, all anomalies): from the GT semantic mask every
    subject is valid with the GT instance count, mean Dice >= 0.99."""
    for s in synthetic_subjects:
        r = split_instances(s.semantic, s.spacing_mm)
        assert r.valid, (s.subject, r.invalid_reason)
        assert r.n_instances == len(s.id_to_name), s.subject
        dice = dice_per_instance(r.instances.astype(int), s.instances.astype(int))
        assert dice.mean() >= 0.99, (s.subject, dice.min())


@pytest.mark.parametrize("perm,flips", [((2, 0, 1), (1, 1, 0)), ((1, 2, 0), (0, 1, 1))])
def test_split_synthetic_orientation_independent(synthetic_tiny, perm, flips):
    """Synthetic subject (anisotropic spacing): flipped/permuted -> identical instances."""
    s = synthetic_tiny["lumbarization"][0]
    ref = split_instances(s.semantic, s.spacing_mm)
    a = s.semantic
    cran = np.array([0.0, -1.0, 0.0])
    for ax, f in enumerate(flips):
        if f:
            a, cran[ax] = np.flip(a, ax), -cran[ax]
    r = split_instances(
        np.transpose(a, perm),
        tuple(s.spacing_mm[i] for i in perm),
        cranial_direction=cran[list(perm)],
    )
    back = np.transpose(r.instances, np.argsort(perm))
    for ax, f in enumerate(flips):
        if f:
            back = np.flip(back, ax)
    assert np.array_equal(back, ref.instances)


def _best_match_dice(pred: np.ndarray, truth: np.ndarray) -> dict[int, tuple[int, float]]:
    """GT id -> (best-overlapping predicted id, Dice) without assuming equal numbering."""
    m = int(pred.max()) + 1
    both = (truth > 0) & (pred > 0)
    pair = np.bincount(truth[both].astype(np.int64) * m + pred[both], minlength=0)
    st = np.bincount(truth.ravel())
    sp = np.bincount(pred.ravel(), minlength=m)
    out = {}
    for t in np.flatnonzero(st[1:]) + 1:
        row = pair[t * m : (t + 1) * m] if pair.size > t * m else np.zeros(1)
        p = int(np.argmax(row)) if row.size and row.max() > 0 else 0
        out[int(t)] = (p, 2 * float(row[p]) / (st[t] + sp[p]) if p else 0.0)
    return out


@pytest.mark.parametrize("v", [5, 8, 10, 15])
def test_split_synthetic_small_fov(synthetic_subjects, v):
    """Synthetic small-FOV crops (V whole vertebrae, cut neighbours kept): valid, every
    whole vertebra recovered (Dice >= 0.95) in cranio-caudal order."""
    from spinecensus.synthetic import crop_fov

    rng = np.random.default_rng(v)
    for s in synthetic_subjects:
        c = crop_fov(s, v, rng)
        r = split_instances(c.semantic, c.spacing_mm)
        assert r.valid, (s.subject, v, r.invalid_reason)
        match = _best_match_dice(r.instances.astype(np.int64), c.instances.astype(np.int64))
        name_to_id = {n: i for i, n in c.id_to_name.items()}
        got = [match[name_to_id[n]] for n in c.meta["whole_vertebrae"]]
        assert all(d >= 0.95 for _, d in got), (s.subject, v, got)
        ids = [p for p, _ in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(r.kinds[p - 1] == "vertebra" for p in ids)


@pytest.mark.parametrize("shape", [(1, 1, 5), (1, 5, 1), (5, 1, 1), (1, 1, 1), (2, 1, 3)])
def test_split_line_shaped_masks(shape):
    """Line-shaped and single-voxel masks (cc3d cannot label some of these unpadded)."""
    sem = np.resize(np.array([1, 2, 1, 2, 1], dtype=np.uint8), shape)
    r = split_instances(sem, (1.0, 2.0, 3.0), fragment_voxels=1, min_disc_voxels=1)
    assert r.instances.shape == shape
    if (sem == 2).any():
        assert np.array_equal(r.instances > 0, sem > 0)
    else:
        assert not r.valid and r.invalid_reason.startswith("unsplittable")


def test_implausibly_many_disc_components_is_a_quick_verdict() -> None:
    """A speckled 'disc' class (hundreds of blobs, as a failed model on a non-spine image
    produces) ends as an unsplittable verdict instead of hundreds of plane refits."""
    rng = np.random.default_rng(0)
    sem = np.ones((20, 60, 60), dtype=np.uint8)
    blobs = rng.random(sem.shape) < 0.05
    sem[blobs] = 2
    result = split_instances(sem, (1.0, 1.0, 1.0), min_disc_voxels=1)
    assert not result.valid
    assert result.invalid_reason is not None
    assert result.invalid_reason.startswith("unsplittable: implausible")
    assert int(result.instances.max()) == 0
