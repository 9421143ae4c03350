"""Tests of the synthetic whole-spine generator (all on synthetic data, tiny preset)."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest

from spinecensus import cli, io
from spinecensus import synthetic as syn
from spinecensus.anatomy import labels
from spinecensus.synthetic import tissues
from spinecensus.synthetic.cohort import _cohort_draw

TINY = syn.SyntheticConfig.tiny()


def _contacts(inst: np.ndarray) -> set[tuple[int, int]]:
    """Pairs (a < b) of instance ids that are 26-neighbours somewhere."""
    pairs: set[tuple[int, int]] = set()
    nx, ny, nz = inst.shape
    offsets = [
        (dx, dy, dz)
        for dx in (0, 1)
        for dy in (-1, 0, 1)
        for dz in (-1, 0, 1)
        if (dx, dy, dz) > (0, 0, 0)
    ]
    for dx, dy, dz in offsets:
        a = inst[: nx - dx, max(0, -dy) : ny - max(0, dy), max(0, -dz) : nz - max(0, dz)]
        b = inst[dx:, max(0, dy) : ny + min(0, dy), max(0, dz) : nz + min(0, dz)]
        m = (a > 0) & (b > 0) & (a != b)
        if m.any():
            lo = np.minimum(a[m], b[m]).astype(np.int64)
            hi = np.maximum(a[m], b[m]).astype(np.int64)
            pairs |= set(zip(lo.tolist(), hi.tolist(), strict=True))
    return pairs


def test_generate_subject_is_deterministic():
    """synthetic: same (seed, anomaly, config) -> identical arrays and metadata."""
    a = syn.generate_subject(5, "lumbarization", TINY)
    b = syn.generate_subject(5, "lumbarization", TINY)
    c = syn.generate_subject(6, "lumbarization", TINY)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.instances, b.instances)
    assert a.spacing_mm == b.spacing_mm and a.id_to_name == b.id_to_name
    assert (a.sex, a.age) == (b.sex, b.age)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


def test_cohort_subject_independent_of_n():
    """synthetic: subject i of a cohort does not depend on the cohort size."""
    small = list(syn.generate_cohort(3, seed=9, config=TINY))
    big = list(syn.generate_cohort(5, seed=9, config=TINY))
    assert [s.subject for s in big] == ["S0000", "S0001", "S0002", "S0003", "S0004"]
    for s, t in zip(small, big[:3], strict=True):
        assert s.subject == t.subject and s.anomaly == t.anomaly
        assert np.array_equal(s.image, t.image) and np.array_equal(s.instances, t.instances)


def test_covariates_do_not_depend_on_anomaly():
    """synthetic: sex and age come from their own stream, identical across anomalies."""
    covs = {(syn.generate_subject(21, a, TINY).sex, syn.generate_subject(21, a, TINY).age)
            for a in syn.ANOMALIES}  # fmt: skip
    assert len(covs) == 1
    sexes = [syn.generate_subject(i, "normal", TINY).sex for i in range(12)]
    assert set(sexes) == {"F", "M"}


@pytest.mark.parametrize("anomaly", syn.ANOMALIES)
def test_names_match_schema(synthetic_tiny, anomaly):
    """synthetic: whole-spine names are exactly labels.structures(anomaly), all present."""
    for s in synthetic_tiny[anomaly]:
        expected = labels.structures(anomaly)
        assert [s.id_to_name[i] for i in sorted(s.id_to_name)] == list(expected)
        assert sorted(s.id_to_name) == list(range(1, len(expected) + 1))
        present = np.unique(s.instances)
        assert present.tolist() == list(range(len(expected) + 1))
        assert s.anomaly == anomaly
        assert labels.transitional_status(s.id_to_name.values()) == anomaly


def test_semantic_matches_instances(synthetic_subjects):
    """synthetic: semantic == kind of the instance (1 vertebral body, 2 disc, 0 background)."""
    for s in synthetic_subjects:
        lut = np.zeros(max(s.id_to_name) + 1, np.uint8)
        for i, n in s.id_to_name.items():
            lut[i] = 2 if labels.is_disc(n) else 1
        assert s.semantic.dtype == np.uint8 and s.instances.dtype == np.uint16
        assert s.image.dtype == np.float32 and s.image.shape == s.semantic.shape
        assert np.array_equal(s.semantic, lut[s.instances])
        assert np.isfinite(s.image).all() and s.image.min() >= 0


def test_instances_cranio_caudal(synthetic_subjects):
    """synthetic: instance centroids move inferiorly (axis 1) with increasing id."""
    for s in synthetic_subjects:
        idx = np.nonzero(s.instances)
        ids = s.instances[idx].astype(np.int64)
        n = int(ids.max()) + 1
        cnt = np.bincount(ids, minlength=n)[1:]
        si = np.bincount(ids, weights=idx[1], minlength=n)[1:] / cnt
        assert np.all(np.diff(si) > 0), s.subject


def test_each_instance_one_component(synthetic_subjects):
    """synthetic: every instance is one 26-connected piece (the sacrum included)."""
    for s in synthetic_subjects:
        cc = cc3d.connected_components(s.instances, connectivity=26)
        assert int(cc.max()) == len(s.id_to_name), s.subject


def test_neighbours_touch_and_only_neighbours(synthetic_subjects):
    """synthetic: consecutive body/disc instances touch; non-consecutive ones never do."""
    for s in synthetic_subjects:
        pairs = _contacts(s.instances)
        n = len(s.id_to_name)
        assert {(i, i + 1) for i in range(1, n)} <= pairs, s.subject
        assert all(b == a + 1 for a, b in pairs), sorted(p for p in pairs if p[1] != p[0] + 1)


def test_body_volumes_grow_caudally_and_sacrum_largest(synthetic_subjects):
    """synthetic: lumbar bodies > thoracic > cervical on average; the sacrum is largest."""
    for s in synthetic_subjects:
        vol = np.bincount(s.instances.ravel(), minlength=len(s.id_to_name) + 1)
        by_region: dict[str, list[int]] = {}
        for i, n in s.id_to_name.items():
            if labels.is_vertebra(n):
                by_region.setdefault(labels.region(n), []).append(int(vol[i]))
        mean = {k: float(np.mean(v)) for k, v in by_region.items()}
        assert mean["cervical"] < mean["thoracic"] < mean["lumbar"], (s.subject, mean)
        sacrum = max(s.id_to_name)
        assert s.id_to_name[sacrum] == "S1"
        assert vol[sacrum] == vol[1:].max(), s.subject


def test_lumbar_discs_taller_than_cervical():
    """synthetic: lumbar discs are bigger than cervical discs (default preset, one subject)."""
    s = syn.generate_subject(3, "normal")
    vol = np.bincount(s.instances.ravel())
    name_vol = {n: int(vol[i]) for i, n in s.id_to_name.items()}
    assert name_vol["L4-L5"] > 3 * name_vol["C4-C5"]


def test_spacing_within_ranges(synthetic_subjects):
    """synthetic: spacing drawn within the configured ranges; slice count within limits."""
    for cfg in (TINY, syn.SyntheticConfig()):
        subs = synthetic_subjects if cfg is TINY else [syn.generate_subject(1, "normal", cfg)]
        for s in subs:
            sx, sy, sz = s.spacing_mm
            lo, hi = cfg.inplane_spacing_mm
            assert lo <= sy <= hi and lo <= sz <= hi
            assert cfg.slice_spacing_mm[0] <= sx <= cfg.slice_spacing_mm[1]
            assert cfg.min_slices <= s.image.shape[0] <= cfg.max_slices


def test_write_cohort_roundtrip(tmp_path: Path):
    """synthetic: write_cohort files reload through spinecensus.io exactly (reoriented)."""
    sheet = syn.write_cohort(tmp_path / "cohort", n=2, seed=4, config=TINY)
    assert sheet == tmp_path / "cohort" / "samples.tsv"
    with open(sheet, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert [r["subject"] for r in rows] == ["S0000", "S0001"]
    assert {"subject", "image", "anomaly", "sex", "age"} <= set(rows[0])
    subs = list(syn.generate_cohort(2, seed=4, config=TINY))
    for row, sub in zip(rows, subs, strict=True):
        assert row["anomaly"] == sub.anomaly and row["sex"] == sub.sex
        assert int(row["age"]) == sub.age
        img_path = sheet.parent / row["image"]
        assert img_path == sheet.parent / sub.subject / "image.nii.gz"
        stored = nib.load(str(img_path))
        assert nib.aff2axcodes(stored.affine) == tuple(TINY.storage_axcodes)
        scan = io.load_scan(img_path)
        assert np.array_equal(scan.data, sub.image)
        assert np.allclose(scan.spacing_mm, sub.spacing_mm)
        sem = io.load_mask(img_path.parent / "semantic.nii.gz")
        ins = io.load_mask(img_path.parent / "instances.nii.gz")
        assert np.array_equal(sem.data, sub.semantic)
        assert np.array_equal(ins.data, sub.instances)
        lab = json.loads((img_path.parent / "labels.json").read_text())
        assert lab == {str(k): v for k, v in sub.id_to_name.items()}
        assert np.isclose(scan.voxel_volume_mm3, float(np.prod(sub.spacing_mm)))


@pytest.mark.parametrize("axcodes", ["LPS", "RAS", "PIR"])
def test_affine_any_storage_order(synthetic_tiny, axcodes):
    """synthetic: to_nifti in other storage orders still reloads to the canonical arrays."""
    s = synthetic_tiny["normal"][0]
    img, _, ins = s.to_nifti(axcodes)
    assert nib.aff2axcodes(img.affine) == tuple(axcodes)
    scan = io.scan_from_image(img)
    assert np.array_equal(scan.data, s.image)
    assert np.array_equal(io.scan_from_image(ins, check=False).data, s.instances)
    # voxel (0,0,0) of the canonical grid maps to origin_mm whatever the storage order
    canon0 = s.canonical_affine() @ np.array([0, 0, 0, 1.0])
    assert np.allclose(canon0[:3], s.origin_mm)


@pytest.mark.parametrize("v", [1, 3, 5, 8])
def test_crop_fov_exact_whole_vertebrae(synthetic_tiny, v):
    """synthetic: crop_fov keeps exactly V whole vertebrae; ids 1..M, true names in order."""
    rng = np.random.default_rng(v)
    for anomaly in syn.ANOMALIES:
        full = synthetic_tiny[anomaly][0]
        full_vol = {
            full.id_to_name[i]: c
            for i, c in enumerate(np.bincount(full.instances.ravel()))
            if i in full.id_to_name
        }
        for _ in range(4):
            crop = syn.crop_fov(full, v, rng)
            ids = sorted(crop.id_to_name)
            assert ids == list(range(1, len(ids) + 1))
            assert np.unique(crop.instances).tolist() == [0, *ids]
            names = [crop.id_to_name[i] for i in ids]
            assert labels.check_order(names)
            cnt = np.bincount(crop.instances.ravel(), minlength=len(ids) + 1)
            whole = [
                n for i, n in crop.id_to_name.items()
                if labels.is_vertebra(n) and cnt[i] == full_vol[n]
            ]  # fmt: skip
            assert len(whole) == v
            assert sorted(whole, key=labels.sort_key) == crop.meta["whole_vertebrae"]
            assert crop.image.shape[1] < full.image.shape[1] or v >= 8
            # the crop is the same voxels: image rows match the full subject's rows
            r0, r1 = crop.meta["crop_rows"]
            assert np.array_equal(crop.image, full.image[:, r0:r1])
            # every (partial) structure stays one connected piece
            assert cc3d.connected_components(crop.instances, connectivity=26).max() == len(ids)


def test_crop_fov_rejects_bad_count(synthetic_tiny):
    """synthetic: asking for more vertebrae than exist raises ValueError."""
    with pytest.raises(ValueError):
        syn.crop_fov(synthetic_tiny["normal"][0], 99, np.random.default_rng(0))


def test_sample_anomaly_prevalence():
    """synthetic: sampled anomaly frequencies match the target (5 binomial SDs)."""
    rng = np.random.default_rng(123)
    n = 20000
    draws = [syn.sample_anomaly(rng, 0.066, 0.036) for _ in range(n)]
    for name, p in (("lumbarization", 0.066), ("sacralization", 0.036)):
        freq = draws.count(name) / n
        assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n), (name, freq)
    with pytest.raises(ValueError):
        syn.sample_anomaly(rng, 0.7, 0.5)


def test_cohort_anomaly_prevalence():
    """synthetic: per-subject cohort draws follow the prevalences (no image generation)."""
    n = 6000
    an = [_cohort_draw(77, i, 0.2, 0.1)[0] for i in range(n)]
    for name, p in (("lumbarization", 0.2), ("sacralization", 0.1)):
        assert abs(an.count(name) / n - p) < 5 * np.sqrt(p * (1 - p) / n)


def test_unknown_anomaly_raises():
    """synthetic: an unknown anomaly name is a ValueError."""
    with pytest.raises(ValueError, match="anomaly"):
        syn.generate_subject(0, "scoliosis", TINY)


def test_cli_synth(tmp_path: Path, capsys):
    """synthetic: `spinecensus synth` writes a cohort and prints the sheet path."""
    out = tmp_path / "c"
    rc = cli.main(["synth", "--n", "2", "--seed", "3", "--out", str(out), "--preset", "tiny",
                   "--lumbarization", "0.5", "--sacralization", "0.5"])  # fmt: skip
    assert rc == 0
    sheet = out / "samples.tsv"
    assert capsys.readouterr().out.strip() == str(sheet)
    rows = list(csv.DictReader(open(sheet), delimiter="\t"))
    assert len(rows) == 2 and all(r["anomaly"] != "normal" for r in rows)
    assert all((out / r["image"]).exists() for r in rows)


@pytest.mark.parametrize(
    ("contrast", "brighter", "darker"),
    [
        ("t2", tissues.CSF, tissues.MARROW),
        ("t1", tissues.MARROW, tissues.CSF),
        ("fat_bright", tissues.MARROW, tissues.NUCLEUS),
    ],
)
def test_contrast_tables_order_tissues_like_real_scans(contrast, brighter, darker):
    """Synthetic: T2 = bright CSF over marrow; T1 = marrow over dark CSF; water-fat fat image
    = bodies brighter than discs (docs/real_mri.md, "How real images differ")."""
    table = syn.CONTRASTS[contrast]
    assert table[brighter] > 1.5 * table[darker]
    cfg = dataclasses.replace(syn.SyntheticConfig.tiny(), contrast=contrast)
    sub = syn.generate_subject(4, "normal", cfg)
    assert sub.meta["contrast"] == contrast
    if contrast != "t2":  # bodies vs discs as the tables say, after noise and bias
        body = np.median(sub.image[sub.semantic == 1])
        disc = np.median(sub.image[sub.semantic == 2])
        assert body > disc


def test_varied_preset_draws_contrasts_and_keeps_anatomy():
    """Synthetic: the varied preset draws all three contrasts over a few seeds, adds marrow
    texture, and leaves the anatomy (masks) of a seed exactly as the default generator's."""
    seen = set()
    for seed in range(8):
        sub = syn.generate_subject(seed, "normal", syn.SyntheticConfig.varied())
        seen.add(sub.meta["contrast"])
    assert seen == {"t2", "t1", "fat_bright"}
    a = syn.generate_subject(2, "normal", syn.SyntheticConfig())
    b = syn.generate_subject(2, "normal", syn.SyntheticConfig.varied())
    assert np.array_equal(a.semantic, b.semantic) and not np.array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="unknown contrast"):
        syn.generate_subject(2, "normal", syn.SyntheticConfig(contrast="pd"))
