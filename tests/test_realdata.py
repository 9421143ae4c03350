"""Real annotated MRI reader, partial-label loss, augmentation and evaluation.

Tests marked ``real`` read ``../shared/data/real`` (public annotated scans, never copied into
the repository) and skip with a reason when it is absent.  The loss / augmentation /
naming tests use tiny synthetic arrays and tensors (stated in each docstring).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import cc3d
import numpy as np
import pytest

from spinecensus.train import (
    real_augment,
    real_metrics,
    real_report,
    real_sample_sheet,
    real_subject_eval,
)
from spinecensus.train import real_codes as rc
from spinecensus.train import real_data as rd
from spinecensus.train import real_splits as rs

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(
    not (REAL / "manifest.tsv").exists(),
    reason=f"public annotated MRI not present at {REAL} (not shipped with the repository)",
)


@pytest.fixture(scope="module")
def manifest() -> list[rd.RealSample]:
    return rd.load_manifest(REAL)


@pytest.mark.real
@needs_real
def test_manifest_partial_labels_and_levels(manifest: list[rd.RealSample]) -> None:
    by_ds: dict[str, list[rd.RealSample]] = {}
    for s in manifest:
        by_ds.setdefault(s.dataset, []).append(s)
    assert set(by_ds) == {"VB1", "VB2", "VB3", "IVD"}
    assert all(s.labeled_classes == {rd.BODY} for d in ("VB1", "VB2", "VB3") for s in by_ds[d])
    assert all(s.labeled_classes == {rd.DISC} for s in by_ds["IVD"])
    assert all(
        list(s.level_names.values()) == ["T11", "T12", "L1", "L2", "L3", "L4", "L5"]
        for s in by_ds["VB2"]
    )
    assert all(s.level_names[5] == "L5-S1" for s in by_ds["IVD"])
    assert not any(s.levels_known for s in by_ds["VB1"])
    assert all(s.levels_known for d in ("VB2", "VB3", "IVD") for s in by_ds[d])
    # README: VB1 02/03 are AKa3/AKa4 and 10/11 DzZ_T1/DzZ_T2, probable same-patient repeats
    groups = {s.key: s.group for s in by_ds["VB1"]}
    assert groups["VB1_02"] == groups["VB1_03"] != groups["VB1_10"] == groups["VB1_11"]


@pytest.mark.real
@needs_real
def test_split_is_by_patient_and_stratified(manifest: list[rd.RealSample]) -> None:
    train, val = rs.split_subjects(manifest, seed=0)
    rs.check_split(train, val)
    assert {s.key for s in train}.isdisjoint({s.key for s in val})
    assert len(train) + len(val) == len(manifest)
    assert {s.dataset for s in val} == {"VB1", "VB2", "VB3", "IVD"}
    again = rs.split_subjects(manifest, seed=0)
    assert [s.key for s in again[1]] == [s.key for s in val]
    with pytest.raises(ValueError, match="both sides"):
        rs.check_split(train, [train[0]])


def _fake_sample(dataset: str, subject: str, group: str) -> rd.RealSample:
    """A manifest row without files (synthetic test input: only the split reads it)."""
    p = Path(f"/nonexistent/{dataset}_{subject}")
    return rd.RealSample(
        dataset, subject, f"{dataset}_{subject}", group, p, p, p, frozenset({1}), {}
    )


def test_folds_validate_every_subject_once_and_keep_patients_together() -> None:
    """Synthetic manifest rows (no files): 3 datasets, one with a two-exam patient."""
    samples = [_fake_sample("A", f"{i:02d}", f"A_{i}") for i in range(9)]
    samples += [_fake_sample("B", f"{i:02d}", f"B_{i // 2}") for i in range(4)]  # 2 patients
    samples += [_fake_sample("C", f"{i:02d}", f"C_{i}") for i in range(5)]
    k = rs.n_folds(0.34)
    assert k == 3 and rs.n_folds(0.2) == 5 and rs.n_folds(0.6) == 2
    seen: list[str] = []
    for fold in range(k):
        train, val = rs.split_subjects(samples, 0.34, seed=3, fold=fold)
        rs.check_split(train, val)
        assert len(train) + len(val) == len(samples)
        assert sum(s.dataset == "A" for s in val) == 3  # round(0.34 * 9) per fold
        seen += [s.key for s in val]
    assert sorted(seen) == sorted(s.key for s in samples)
    # fold 0 is the historical split (the one the shipped real weights were trained on)
    assert rs.split_subjects(samples, 0.34, 3) == rs.split_subjects(samples, 0.34, 3, 0)
    with pytest.raises(ValueError, match="fold 3 outside 0..2"):
        rs.split_subjects(samples, 0.34, 3, fold=3)


@pytest.mark.real
@needs_real
def test_fold_zero_is_the_split_of_the_shipped_real_weights(
    manifest: list[rd.RealSample],
) -> None:
    import json

    from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS

    side = json.loads(DEFAULT_SEGMENTATION_WEIGHTS.with_name("segmentation_real.json").read_text())
    train, val = rs.split_subjects(manifest, 0.34, seed=0, fold=0)
    assert [s.key for s in val] == side["training"]["real_validation_subjects"]
    assert sorted(s.key for s in train) == sorted(side["training"]["real_train_subjects"])


@pytest.mark.real
@needs_real
def test_loaded_sample_is_canonical_and_codes_honour_partial_labels(
    manifest: list[rd.RealSample],
) -> None:
    ivd = next(s for s in manifest if s.dataset == "IVD").load()
    # canonical [slice, SI, AP]: stored (I, P, R) 221x221x34 -> (34, 221, 221), 2 mm slices
    assert ivd.scan.data.shape == (34, 221, 221)
    assert ivd.spacing_mm == (2.0, 1.0, 1.0)
    rows = [np.nonzero(ivd.instances == i)[1].mean() for i in range(1, 6)]
    assert rows == sorted(rows)  # id 1 (L1-L2) is the most cranial: row 0 is superior
    codes = rc.target_codes(ivd)
    assert set(np.unique(codes)) == {
        rc.CODE_BG, rc.CODE_BODY, rc.CODE_DISC, rc.CODE_NOT_DISC, rc.CODE_UNKNOWN
    }  # fmt: skip
    assert np.all(codes[ivd.instances > 0] == rc.CODE_DISC)
    assert not np.any(codes == rc.CODE_NOT_BODY)
    disc_ap = np.nonzero(ivd.instances)[2]
    col = int(np.median(disc_ap))
    # between L1-L2 and L2-L3 lies L2's body (fill_between); without it, "not disc"
    mid = ivd.instances.shape[0] // 2
    r12 = np.nonzero(ivd.instances[mid, :, col] == 1)[0].max()
    r23 = np.nonzero(ivd.instances[mid, :, col] == 2)[0].min()
    assert np.all(codes[mid, r12 + 1 : r23, col] == rc.CODE_BODY)
    plain = rc.target_codes(ivd, fill_between=False)
    assert not np.any(plain == rc.CODE_BODY)
    # L5-S1 is annotated: no disc lies below it; the sacrum (a vertebra) may, near the column
    assert np.all(codes[:, -1, col] == rc.CODE_NOT_DISC)
    # above L1-L2's centre the unannotated T12-L1 may be a disc: no loss near the column
    assert np.all(codes[:, 0, col] == rc.CODE_UNKNOWN)
    # far anterior of the column (abdomen) is certain background at every height
    assert np.all(codes[:, :, 0] == rc.CODE_BG)


@pytest.mark.real
@needs_real
def test_ground_truth_as_prediction_scores_perfectly(manifest: list[rd.RealSample]) -> None:
    vb3 = next(s for s in manifest if s.dataset == "VB3").load()
    ev = real_subject_eval.evaluate_subject(vb3, vb3.semantic, "truth")
    assert ev.row["body_dice"] == 1.0
    assert ev.row["detection_rate"] == 1.0
    assert [r["level"] for r in ev.levels] == ["L1", "L2", "L3", "L4", "L5"]


def test_target_codes_end_faces_and_disc_core() -> None:
    """Synthetic two-body mask (L4, L5; 1 mm voxels): the disc fill between them keeps its
    endplate margin "not body"; beyond L5's lower face, 2 mm are "not body", then nothing."""
    inst = np.zeros((3, 40, 12), dtype=np.uint16)
    inst[:, 5:15, 2:10] = 1
    inst[:, 25:35, 2:10] = 2  # a 10-row gap: rows 15..24
    meta = rd.RealSample("VB3", "00", "VB3_00", "VB3_0", Path("/x"), Path("/x"), Path("/x"),
                         frozenset({rc.CODE_BODY}), {1: "L4", 2: "L5"})  # fmt: skip
    sample = rd.LoadedSample(meta, SimpleNamespace(spacing_mm=(1.0, 1.0, 1.0)), inst, inst > 0)
    plain = rc.target_codes(sample)  # type: ignore[arg-type]
    new = rc.target_codes(sample, disc_fill_margin_mm=2.0, end_face_mm=2.0)  # type: ignore[arg-type]
    assert np.all(plain[1, 15:25, 5] == rc.CODE_DISC)
    assert (
        list(new[1, 15:25, 5])
        == [rc.CODE_NOT_BODY] * 2 + [rc.CODE_DISC] * 6 + [rc.CODE_NOT_BODY] * 2
    )
    assert np.all(plain[1, 35:40, 5] == rc.CODE_UNKNOWN)
    assert list(new[1, 35:40, 5]) == [rc.CODE_NOT_BODY] * 2 + [rc.CODE_UNKNOWN] * 3
    assert np.array_equal(new[inst > 0], plain[inst > 0])
    # levels unknown (VB1): the last body may be S1, fused to S2 below, so no lower face;
    # the upper face stays (rows 3..4 above the first body)
    unknown = dataclasses.replace(meta, levels_known=False)
    sample_unknown = rd.LoadedSample(unknown, sample.scan, inst, inst > 0)
    vb1 = rc.target_codes(sample_unknown, end_face_mm=2.0)  # type: ignore[arg-type]
    assert np.all(vb1[1, 35:40, 5] == rc.CODE_UNKNOWN)
    assert list(vb1[1, 2:5, 5]) == [rc.CODE_UNKNOWN] + [rc.CODE_NOT_BODY] * 2


def test_bodies_beyond_the_end_discs() -> None:
    """Synthetic two-disc mask (1 mm voxels): above the first disc and below the last, up
    to the depth, lie bodies (L1 above L1-L2, S1 below L5-S1), away from the AP rim."""
    inst = np.zeros((2, 60, 20), dtype=np.uint16)
    inst[:, 20:26, 2:18] = 1
    inst[:, 40:46, 2:18] = 2
    body = rc.beyond_end_discs(inst, (2.0, 1.0, 1.0), depth_mm=5.0, rim_mm=3.0)
    expected = np.zeros_like(body)
    expected[:, 15:20, 5:15] = True  # rows 15..19 above disc 1, AP 2..17 less a 3 mm rim
    expected[:, 46:51, 5:15] = True  # rows 46..50 below disc 2
    np.testing.assert_array_equal(body, expected)
    assert not rc.beyond_end_discs(np.zeros_like(inst), (2.0, 1.0, 1.0), 5.0).any()


def _median_column_height(mask: np.ndarray, instances: np.ndarray) -> float:
    """Median over (slice, AP) columns of each piece's height in rows (one row = 1 mm)."""
    pieces = cc3d.connected_components(mask & (instances == 0), connectivity=6)
    heights = [
        np.median(h[h > 0]) for i in range(1, int(pieces.max()) + 1)
        if ((h := (pieces == i).sum(1)) > 0).sum() > 50
    ]  # fmt: skip
    return float(np.median(heights))


@pytest.mark.real
@needs_real
def test_disc_fill_margin_matches_the_expert_disc_height(
    manifest: list[rd.RealSample],
) -> None:
    """Real masks: the gap between two annotated bodies (VB2) is higher than an expert disc
    mask (IVD, endplates excluded); without the endplate margin the fill would teach discs
    about 1.5x too high, with it the filled discs come closer to the expert ones."""
    disc_h = float(np.median([
        _median_column_height(ivd.instances > 0, np.zeros_like(ivd.instances))
        for ivd in (s.load() for s in manifest if s.dataset == "IVD")
    ]))  # fmt: skip
    vb2 = next(s for s in manifest if s.dataset == "VB2").load()
    inst = np.asarray(vb2.instances)
    full = rc.between_consecutive(inst, vb2.spacing_mm, rc.MAX_DISC_GAP_MM)
    core = rc.between_consecutive(inst, vb2.spacing_mm, rc.MAX_DISC_GAP_MM, 2.0)
    full_h, core_h = _median_column_height(full, inst), _median_column_height(core, inst)
    assert full_h > 1.3 * disc_h
    assert abs(core_h - disc_h) < abs(full_h - disc_h)
    codes = rc.target_codes(vb2, disc_fill_margin_mm=rc.DISC_FILL_MARGIN_MM)
    # the endplate rows stay "not body" (background or disc), the core is disc
    assert np.all(codes[full & ~core] == rc.CODE_NOT_BODY)
    assert np.all(codes[core] == rc.CODE_DISC)


@pytest.mark.real
@needs_real
def test_sample_sheet_points_at_the_data(tmp_path: Path) -> None:
    sheet = real_sample_sheet.write_sample_sheet(tmp_path / "sheet" / "samples.tsv", REAL)
    rows = list(csv.DictReader(sheet.open(), delimiter="\t"))
    assert len(rows) == len(rd.load_manifest(REAL))
    assert all(not Path(r["image"]).is_absolute() for r in rows)
    assert all((sheet.parent / r["image"]).exists() for r in rows)
    assert len({r["subject"] for r in rows}) == len(rows)


def test_partial_loss_does_not_punish_unlabelled_class() -> None:
    """Synthetic tensors: on a body-only voxel ("not body") predicting disc costs the same
    as predicting background; an unknown voxel costs nothing; a labelled voxel does."""
    import torch

    from spinecensus.train.real_loss import partial_label_loss

    big = 8.0
    as_bg = torch.tensor([big, 0.0, 0.0]).view(1, 3, 1, 1)
    as_disc = torch.tensor([0.0, 0.0, big]).view(1, 3, 1, 1)
    as_body = torch.tensor([0.0, big, 0.0]).view(1, 3, 1, 1)
    not_body = torch.full((1, 1, 1), rc.CODE_NOT_BODY, dtype=torch.uint8)
    l_bg, p_bg = partial_label_loss(as_bg, not_body, dice_weight=0.0)
    l_disc, p_disc = partial_label_loss(as_disc, not_body, dice_weight=0.0)
    l_body, _ = partial_label_loss(as_body, not_body, dice_weight=0.0)
    assert abs(p_bg["ce"] - p_disc["ce"]) < 1e-6
    assert float(l_body) > 5.0 > float(l_bg)
    unknown = torch.full((1, 1, 1), rc.CODE_UNKNOWN, dtype=torch.uint8)
    assert float(partial_label_loss(as_body, unknown, dice_weight=0.0)[0]) == 0.0
    # fully labelled codes reduce to ordinary cross-entropy
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    ours, _ = partial_label_loss(logits, target.to(torch.uint8), dice_weight=0.0)
    ref = torch.nn.functional.cross_entropy(logits, target)
    assert abs(float(ours) - float(ref)) < 1e-5


def test_augmentation_is_seeded_and_keeps_shape() -> None:
    """Synthetic volume: MRI augmentations are deterministic per seed, finite, non-negative."""
    vol = np.random.default_rng(0).uniform(0, 200, size=(4, 24, 16)).astype(np.float32)
    a = real_augment.augment_volume(vol, np.random.default_rng(3))
    b = real_augment.augment_volume(vol, np.random.default_rng(3))
    c = real_augment.augment_volume(vol, np.random.default_rng(4))
    assert a.shape == vol.shape and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and a.min() >= 0
    grid = real_augment.random_rotation_grid(3, (32, 16), np.random.default_rng(0))
    assert tuple(grid.shape) == (3, 32, 16, 2)


def test_iou_matrix_and_restricted_dice() -> None:
    """Synthetic masks: IoU by bincount and component restriction behave as defined."""
    ref = np.zeros((1, 10, 4), dtype=np.uint8)
    ref[0, 1:3] = 1
    ref[0, 5:7] = 2
    pred = np.zeros_like(ref)
    pred[0, 1:3] = 7  # exact match of ref 1
    pred[0, 5:9] = 3  # ref 2 plus as much extra: IoU 0.5 (not > 0.5)
    iou = real_metrics.iou_matrix(ref, pred)
    assert iou[1, 7] == 1.0 and iou[2, 3] == 0.5
    extra = np.zeros_like(ref, dtype=bool)
    extra[0, 1:3] = True
    extra[0, 9] = True  # a separate component not touching ref: dropped by the restriction
    kept = real_metrics.restrict_to_reference(extra, ref == 1)
    assert kept.sum() == 8 and real_metrics.dice(kept, ref == 1) == 1.0


def test_between_consecutive_structures() -> None:
    """Synthetic two-body mask: the gap between consecutive bodies is found only in the
    columns crossing both, and only when it is at most ``max_gap_mm`` high."""
    inst = np.zeros((2, 30, 8), dtype=np.uint8)
    inst[:, 2:10, 1:7] = 1
    inst[:, 14:22, 3:8] = 2  # 4-row gap (rows 10..13) over AP columns 3..6
    gap = rc.between_consecutive(inst, (2.0, 1.0, 1.0), max_gap_mm=6.0)
    expected = np.zeros_like(gap)
    expected[:, 10:14, 3:7] = True
    np.testing.assert_array_equal(gap, expected)
    assert not rc.between_consecutive(inst, (2.0, 2.0, 1.0), max_gap_mm=6.0).any()
    assert not rc.between_consecutive(np.zeros_like(inst), (1.0, 1.0, 1.0), 9.0).any()
    # a 1 mm margin (rows of 1 mm) leaves one row next to each body out: the endplates
    core = rc.between_consecutive(inst, (2.0, 1.0, 1.0), max_gap_mm=6.0, margin_mm=1.0)
    expected[:, 10, :] = expected[:, 13, :] = False
    np.testing.assert_array_equal(core, expected)


def test_restriction_to_annotated_levels_ignores_unannotated_neighbours() -> None:
    """Synthetic column: a predicted vertebra above the annotated ones (T10 above VB2's T11),
    connected to them, is not counted against the prediction.  Rows beyond the annotated
    extent are not judged at all (also the end levels' own over-reach: the rule is lenient
    there by at most a disc's height)."""
    ref = np.zeros((1, 30, 4), dtype=bool)
    ref[0, 10:20] = True
    pred = np.zeros_like(ref)
    pred[0, 0:22] = True  # unannotated level above (rows 0..9) + 2 extra rows below
    assert real_metrics.dice(real_metrics.restrict_to_reference(pred, ref), ref) < 0.7
    kept = real_metrics.restrict_to_annotated_levels(pred, ref)
    assert kept.sum() == 10 * 4 and real_metrics.dice(kept, ref) == 1.0
    assert not real_metrics.annotated_rows(np.zeros_like(ref)).any()


def test_partial_training_loop_runs_and_updates_weights() -> None:
    """Synthetic arrays: two steps of the partial-label training loop on a tiny U-Net change
    the weights and give finite losses (mixed real-style and fully labelled volumes)."""
    import torch

    from spinecensus.segment.network import build_network
    from spinecensus.segment.spec import ModelSpec
    from spinecensus.train.real_batches import BatchConfig
    from spinecensus.train.real_train_loop import TrainConfig, train_partial
    from spinecensus.train.real_volumes import TrainVolume

    torch.set_num_threads(1)
    spec = ModelSpec(
        encoder_depth=3, decoder_channels=(16, 8, 8), target_spacing_mm=None, input_size=(32, 32)
    )
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 100, size=(4, 40, 36)).astype(np.float32)
    codes = np.full(img.shape, rc.CODE_NOT_BODY, dtype=np.uint8)
    codes[:, 10:20, 10:20] = rc.CODE_BODY
    real = [TrainVolume(img, codes, "r", fg_slices=np.arange(4), ap_centre=15)]
    full = rng.integers(0, 3, size=img.shape).astype(np.uint8)
    synth = [TrainVolume(img, full, "s", "synthetic", fg_slices=np.arange(4), ap_centre=18)]
    net = build_network(spec)
    before = [p.detach().clone() for p in net.parameters()]
    cfg = TrainConfig(
        steps=2, warmup=1, log_every=0,
        batch=BatchConfig(batch_size=2, volumes_per_step=2, crop_si=32, crop_ap=32),
    )  # fmt: skip
    hist = train_partial(net, spec, real, synth, cfg, log=lambda _m: None)
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_dataset_weights_steer_which_real_volumes_are_drawn() -> None:
    """Synthetic arrays: with the VB2 dataset weighted 0 only the IVD volume's codes reach the
    batches; without weights both datasets are drawn."""
    from spinecensus.segment.spec import ModelSpec
    from spinecensus.train.real_batches import BatchConfig, make_batch
    from spinecensus.train.real_volumes import TrainVolume

    spec = ModelSpec(target_spacing_mm=None, input_size=(32, 32))
    img = np.ones((3, 32, 32), dtype=np.float32)
    disc = np.full(img.shape, rc.CODE_DISC, dtype=np.uint8)
    body = np.full(img.shape, rc.CODE_BODY, dtype=np.uint8)
    pool = [
        TrainVolume(img, disc, "IVD_01", fg_slices=np.arange(3), ap_centre=16, dataset="IVD"),
        TrainVolume(img, body, "VB2_01", fg_slices=np.arange(3), ap_centre=16, dataset="VB2"),
    ]

    def drawn(weights: dict[str, float] | None) -> set[int]:
        bcfg = BatchConfig(
            batch_size=4, volumes_per_step=4, crop_si=32, crop_ap=32, dataset_weights=weights
        )
        rng = np.random.default_rng(0)
        codes = [make_batch(pool, [], spec, rng, bcfg, None)[1].numpy() for _ in range(10)]
        return set(np.unique(np.concatenate(codes)).tolist())

    assert drawn({"VB2": 0.0}) == {rc.CODE_DISC}
    assert drawn(None) == {rc.CODE_DISC, rc.CODE_BODY}
    with pytest.raises(ValueError, match="no real volume"):
        drawn({"VB2": 0.0, "IVD": 0.0})


def test_finer_network_grid_keeps_the_field_of_view_in_mm(tmp_path: Path) -> None:
    """A run with ``target_spacing_mm`` takes the pretrained weights' architecture on a finer
    grid: the input size scales so that it covers the same millimetres (rounded up to the
    network stride), and without the key the spec is the weights' own (JSON sidecar only)."""
    from spinecensus.io import write_json
    from spinecensus.segment.spec import ModelSpec
    from spinecensus.train.real_run_config import RealRunConfig, base_spec

    weights = tmp_path / "w.pt"
    spec = ModelSpec(target_spacing_mm=(2.0, 2.0), input_size=(512, 160))
    write_json(spec.to_dict(), weights.with_suffix(".json"))
    same = base_spec(RealRunConfig(pretrained=str(weights)))
    assert same.target_spacing_mm == (2.0, 2.0) and same.input_size == (512, 160)
    fine = base_spec(RealRunConfig(pretrained=str(weights), target_spacing_mm=[1.0, 1.0]))
    assert fine.target_spacing_mm == (1.0, 1.0) and fine.input_size == (1024, 320)
    odd = base_spec(RealRunConfig(pretrained=str(weights), target_spacing_mm=[1.5, 1.5]))
    assert odd.input_size == (688, 224)  # 682.7 and 213.3 voxels, up to a multiple of 16
    assert odd.encoder == spec.encoder and odd.decoder_channels == spec.decoder_channels


@pytest.mark.real
@needs_real
def test_cross_validation_judges_every_subject_once_by_its_fold_model(
    manifest: list[rd.RealSample], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real scans through train_real_cv_evaluate with stand-in models (each predicts
    nothing and records which scans it was shown), so only the fold bookkeeping is under test."""
    import pandas as pd

    from spinecensus.segment import weights as weights_mod
    from spinecensus.train.real_cv import train_real_cv_evaluate

    shown: dict[str, list[tuple[int, ...]]] = {}

    class Blank:
        def __init__(self, name: str) -> None:
            self.name = name

        def predict_semantic(self, volume: np.ndarray, spacing_mm: object) -> np.ndarray:
            shown.setdefault(self.name, []).append(tuple(volume.shape))
            return np.zeros(volume.shape, dtype=np.uint8)

        predict = predict_semantic

    monkeypatch.setattr(weights_mod, "load_model", lambda path, **_kw: Blank(str(path)))
    cfg = {"root": str(REAL), "seed": 0, "threads": 1}
    with pytest.raises(ValueError, match=r"folds \[2\]"):
        train_real_cv_evaluate(cfg, {0: "f0", 1: "f1"}, tmp_path / "x.parquet", tmp_path / "x.md")
    summary = train_real_cv_evaluate(
        cfg, {0: "f0", 1: "f1", 2: "f2"}, tmp_path / "cv.parquet", tmp_path / "cv.md",
        baseline={"blank": "b"},
    )  # fmt: skip
    subjects = pd.read_parquet(tmp_path / "cv.parquet")
    cv = subjects[subjects["model"] == "cross_validated"]
    assert sorted(cv["subject"]) == sorted(s.key for s in manifest)  # each exactly once
    for fold in range(3):
        _train, val = rs.split_subjects(manifest, 0.34, 0, fold)
        assert set(cv.loc[cv["split"] == f"fold{fold}", "subject"]) == {s.key for s in val}
        assert len(shown[f"f{fold}"]) == len(val)
    assert len(shown["b"]) == len(manifest)
    pooled = summary[summary["dataset"] == real_report.POOLED].set_index("model")
    assert pooled.loc["cross_validated", "n_subjects"] == len(manifest)
    assert pooled.loc["cross_validated", "detected_pct"] == 0.0
    assert "3-fold cross-validation" in (tmp_path / "cv.md").read_text()


@pytest.mark.real
@needs_real
def test_fine_tune_sidecar_states_its_data_and_the_start_s_own_record(tmp_path: Path) -> None:
    """Two steps of a fold-1 fine-tune on the real scans (plus one synthetic subject): the
    sidecar names the fold's training and validation subjects, the start's sha256 and the
    start's own training record, and the network grid it was trained on."""
    from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS, read_spec, sha256_file
    from spinecensus.train.real_variant import train_real_variant

    cfg = {
        "root": str(REAL), "fold": 1, "steps": 2, "n_synthetic": 1, "threads": 1,
        "log_every": 0, "target_spacing_mm": [1.5, 1.5],
        "batch": {"batch_size": 2, "volumes_per_step": 2, "crop_si": 64, "crop_ap": 64},
    }  # fmt: skip
    out = train_real_variant(cfg, "pretrained_mixed", tmp_path / "ft.pt")
    spec = read_spec(out)
    start = read_spec(DEFAULT_SEGMENTATION_WEIGHTS)
    assert spec is not None and start is not None
    rec = spec.training
    train, val = rs.split_subjects(rd.load_manifest(REAL), 0.34, 0, 1)
    assert rec["fold"] == 1 and rec["steps"] == 2
    assert rec["real_train_subjects"] == [s.key for s in train]
    assert rec["real_validation_subjects"] == [s.key for s in val]
    assert rec["init_sha256"] == sha256_file(DEFAULT_SEGMENTATION_WEIGHTS)
    assert rec["init_training"] == start.training
    assert spec.target_spacing_mm == (1.5, 1.5)
    # the default recipe's loss codes are recorded (docs/real_mri.md, sixth run)
    assert (rec["disc_fill_margin_mm"], rec["end_face_mm"], rec["end_body_mm"]) == (
        rc.DISC_FILL_MARGIN_MM,
        rc.END_FACE_MM,
        rc.END_BODY_MM,
    )


def test_summary_separates_wrong_names_from_unnamed_levels() -> None:
    """Synthetic subject rows: of 10 levels, 6 named right, 1 wrong, 3 left unnamed."""
    import pandas as pd

    base = {"model": "m", "dataset": "VB2", "body_dice": 0.9, "disc_dice": np.nan,
            "body_dice_raw": 0.9, "disc_dice_raw": np.nan, "split_valid": True,
            "sacrum_anchor": True, "levels_known": True, "misses": ""}  # fmt: skip
    rows = pd.DataFrame([
        {**base, "subject": "a", "n_annotated": 5, "n_detected": 5,
         "n_named_correct": 5, "n_named_wrong": 0},
        {**base, "subject": "b", "n_annotated": 5, "n_detected": 5,
         "n_named_correct": 1, "n_named_wrong": 1},
    ])  # fmt: skip
    summary = real_report.summarise(rows, pooled=True)
    row = summary[summary["dataset"] == "VB2"].iloc[0]
    assert row["label_accuracy_pct"] == 60.0 and row["misnamed_pct"] == 10.0
    assert "levels named wrongly %" in real_report.markdown_table(summary)
