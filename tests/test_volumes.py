"""Per-structure volumes (mm³) and scanner-space centroids (spinecensus.measure.volumes)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from spine_phantom import make_phantom

from spinecensus import io as sio
from spinecensus.anatomy import labels
from spinecensus.measure.volumes import structure_table
from spinecensus.naming.counting import count_labels
from spinecensus.split.instances import split_instances


def stored_scan(canonical: np.ndarray, spacing, perm, flips, origin=(-30.0, 12.5, 80.0)):
    """A Scan whose stored array is ``canonical`` permuted/flipped, with a matching affine.

    Canonical axes are (R, I, P) in world RAS terms (+x, -z, -y).  ``perm[i]`` = canonical
    axis stored as stored axis ``i``; ``flips[i]`` reverses stored axis ``i``.
    """
    world_dir = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, -1.0, 0]])  # rows: R, I, P in RAS
    arr = np.transpose(canonical, perm)
    aff = np.eye(4)
    for i, ax in enumerate(perm):
        aff[:3, i] = world_dir[ax] * spacing[ax]
    aff[:3, 3] = origin
    for i, f in enumerate(flips):
        if f:
            arr = np.flip(arr, i)
            aff[:3, 3] += aff[:3, i] * (arr.shape[i] - 1)
            aff[:3, i] = -aff[:3, i]
    img = nib.Nifti1Image(np.ascontiguousarray(arr), aff)
    return sio.scan_from_image(img, check=False), np.ascontiguousarray(arr), aff


@pytest.mark.parametrize("variant", labels.VARIANTS)
def test_volumes_match_ground_truth_exactly(variant):
    """Synthetic phantom: split + count labels -> volume of every named structure equals
    GT voxel count x voxel volume exactly."""
    p = make_phantom(variant, spacing_mm=(3.5, 2.2, 1.8))
    scan, _, aff = stored_scan(p.semantic, p.spacing_mm, (0, 1, 2), (0, 0, 0))
    split = split_instances(scan.data, scan.spacing_mm)
    lab = count_labels(split)
    rows = structure_table(split.instances, lab.id_to_name, scan)
    vox = abs(np.linalg.det(aff[:3, :3]))
    gt_counts = np.bincount(p.instances.ravel())
    by_name = {r["label"]: r for r in rows}
    assert set(by_name) == set(p.id_to_name.values())
    for gid, name in p.id_to_name.items():
        assert by_name[name]["voxel_count"] == gt_counts[gid]
        assert by_name[name]["volume_mm3"] == gt_counts[gid] * vox
        assert by_name[name]["kind"] == labels.kind(name)
        assert by_name[name]["region"] == labels.region(name)


@pytest.mark.parametrize(
    "perm,flips", [((0, 1, 2), (0, 0, 0)), ((2, 0, 1), (1, 0, 1)), ((1, 2, 0), (0, 1, 1))]
)
def test_centroids_are_scanner_coordinates_for_any_stored_orientation(perm, flips):
    """Synthetic phantom stored in several orientations: canonical-order rows equal the
    direct computation on the stored grid with the affine, and equal across orientations."""
    p = make_phantom("normal", spacing_mm=(4.0, 2.0, 1.5))
    ref_scan, _, _ = stored_scan(p.semantic, p.spacing_mm, (0, 1, 2), (0, 0, 0))
    ref = structure_table(p.instances, p.id_to_name, ref_scan)
    scan, stored_sem, aff = stored_scan(p.semantic, p.spacing_mm, perm, flips)
    canon_inst = scan.orientation.canonical(stored_scan(p.instances, p.spacing_mm, perm, flips)[1])
    rows = structure_table(canon_inst, p.id_to_name, scan)
    stored_inst = scan.to_stored(canon_inst)
    direct = structure_table(stored_inst, p.id_to_name, aff)
    for a, b, c in zip(rows, direct, ref, strict=True):
        for key in ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"):
            assert a[key] == pytest.approx(b[key], abs=1e-6)
            assert a[key] == pytest.approx(c[key], abs=1e-6)
        assert a["volume_mm3"] == pytest.approx(c["volume_mm3"], rel=1e-12)
    # the superior structure (C2) lies higher in world z than the sacrum
    z = {r["label"]: r["centroid_z_mm"] for r in rows}
    assert z["C2"] > z["S1"]


def test_structure_table_unnamed_ids_and_confidence():
    inst = np.zeros((2, 6, 3), dtype=np.uint16)
    inst[:, 0:2] = 1
    inst[:, 2] = 2
    inst[:, 3:6] = 3
    rows = structure_table(
        inst,
        {1: "C2", 2: "C2-C3"},
        np.diag([2.0, 1.0, 0.5, 1.0]),
        confidence={1: 0.9},
        kinds=["vertebra", "disc", "vertebra"],
    )
    assert [r["instance_id"] for r in rows] == [1, 2, 3]
    assert rows[0]["confidence"] == 0.9 and rows[1]["confidence"] is None
    assert rows[2]["label"] is None and rows[2]["kind"] == "vertebra"
    assert rows[2]["volume_mm3"] == 18 * 1.0
    assert rows[0]["centroid_x_mm"] == pytest.approx(1.0)  # mean index 0.5 x 2 mm
    assert structure_table(np.zeros((2, 2, 2), np.uint16), {}, np.eye(4)) == []


def test_volumes_exact_on_synthetic_subjects(synthetic_subjects):
    """Synthetic subjects written as NIfTI in their stored orientation: every structure's
    volume equals its GT voxel count x |det(affine)|, centroids equal the GT centroids."""
    for s in synthetic_subjects:
        _, sem_img, inst_img = s.to_nifti()
        scan = sio.scan_from_image(sem_img, check=False)
        split = split_instances(scan.data, scan.spacing_mm)
        lab = count_labels(split)
        rows = {r["label"]: r for r in structure_table(split.instances, lab.id_to_name, scan)}
        truth = structure_table(np.asarray(inst_img.dataobj), s.id_to_name, inst_img.affine)
        assert set(rows) == set(s.id_to_name.values())
        for t in truth:
            r = rows[t["label"]]
            assert r["voxel_count"] == t["voxel_count"]
            assert r["volume_mm3"] == t["volume_mm3"]
            for key in ("centroid_x_mm", "centroid_y_mm", "centroid_z_mm"):
                assert r[key] == pytest.approx(t[key], abs=1e-6)
