"""The labeler fine-tuned on real scans' named levels (``spinecensus.train.real_labeler``) and
the ignore-index training it needs (``spinecensus.train.loop``, ``spinecensus.train.slice_bank``).

The target, bank and loss tests use tiny synthetic arrays and tensors (stated in each
docstring).  Tests marked ``real`` read ``../shared/data/real`` (never copied into the
repository) and skip with a reason when it is absent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from spinecensus.anatomy import labels
from spinecensus.naming import vote
from spinecensus.train import loop, real_labeler, real_subject_eval, slice_bank
from spinecensus.train import real_data as rd
from spinecensus.train import real_splits as rs

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(
    not (REAL / "manifest.tsv").exists(),
    reason=f"public annotated MRI not present at {REAL} (not shipped with the repository)",
)


def _sample(names: dict[int, str], levels_known: bool = True) -> rd.LoadedSample:
    """Synthetic two-disc mask (ids 1, 2), no files."""
    inst = np.zeros((2, 30, 10), dtype=np.uint16)
    inst[:, 5:9, 2:8] = 1
    inst[:, 20:24, 2:8] = 2
    p = Path("/nonexistent")
    meta = rd.RealSample("IVD", "00", "IVD_00", "IVD_0", p, p, p, frozenset({rd.DISC}), names,
                         levels_known=levels_known)  # fmt: skip
    scan = SimpleNamespace(spacing_mm=(2.0, 1.0, 1.0), data=np.zeros(inst.shape, np.float32))
    return rd.LoadedSample(meta, scan, inst, (inst > 0).astype(np.uint8) * 2)  # type: ignore[arg-type]


def test_named_targets_carry_union_classes_and_ignore_the_rest() -> None:
    """Synthetic mask: named discs get their union class (L5-S1 in the "disc above the
    sacrum" column, as the synthetic labeler learned it), every other voxel is ignored;
    a scan without stated levels gives no target."""
    target = real_labeler.named_class_map(_sample({1: "L4-L5", 2: "L5-S1"}))
    assert target is not None
    names = labels.all_names()
    assert np.all(target[:, 5:9, 2:8] == names.index("L4-L5") + 1)
    assert np.all(target[:, 20:24, 2:8] == names.index("L6-S1") + 1)
    assert np.all(target[:, 10:19] == real_labeler.IGNORE)
    assert np.all(target[:, :, 0] == real_labeler.IGNORE)
    assert real_labeler.named_class_map(_sample({1: "unknown_1", 2: "unknown_2"}, False)) is None


def test_ignored_voxels_carry_no_loss() -> None:
    """Synthetic logits: changing the prediction where the target is ignored changes
    neither the cross-entropy nor the soft Dice term; elsewhere it does."""
    torch.manual_seed(0)
    target = torch.randint(0, 4, (2, 6, 5))
    target[:, :3] = real_labeler.IGNORE
    logits = torch.randn(2, 4, 6, 5)
    other = logits.clone()
    other[:, :, :3] = torch.randn(2, 4, 3, 5) * 5

    def loss(lg: torch.Tensor) -> float:
        ce = torch.nn.functional.cross_entropy(lg, target, ignore_index=real_labeler.IGNORE)
        return float(ce + loop.dice_loss(lg, target, real_labeler.IGNORE))

    assert loss(logits) == pytest.approx(loss(other), abs=1e-6)
    changed = logits.clone()
    changed[:, :, 4:] += torch.randn(2, 4, 2, 5) * 5
    assert loss(changed) != pytest.approx(loss(logits), abs=1e-3)


def _bank(n_volumes: int, value: int, ignore: int | None) -> slice_bank.SliceBank:
    """Synthetic bank: ``n_volumes`` volumes of 4 slices, one supervised square each."""
    images, targets = [], []
    for _ in range(n_volumes):
        t = np.full((4, 16, 12), 0 if ignore is None else ignore, dtype=np.uint8)
        t[:, 4:10, 3:9] = value
        images.append(np.zeros((4, 16, 12), np.float16))
        targets.append(t)
    index = np.array([(v, s) for v in range(n_volumes) for s in range(4)])
    return slice_bank.SliceBank(images, targets, index)


def test_mixed_bank_reaches_the_real_share_and_pads_with_ignore() -> None:
    """Synthetic banks: 1 real volume against 9 synthetic ones; about half the sampled
    slices are real, and crops running past the slice are padded with the ignore value."""
    real = _bank(1, 7, real_labeler.IGNORE)
    synthetic = _bank(9, 3, None)
    bank = real_labeler.mixed_bank(real, synthetic, 0.5)
    is_real = bank.index[:, 0] < 1
    assert is_real.mean() == pytest.approx(0.5, abs=0.05)
    rng = np.random.default_rng(0)
    x, y = slice_bank.sample_batch(bank, rng, 64, (24, 12), real_labeler.IGNORE)
    assert x.shape == (64, 3, 24, 12)
    assert set(torch.unique(y).tolist()) <= {0, 3, 7, real_labeler.IGNORE}
    assert bool((y[:, 16:] == real_labeler.IGNORE).all())  # rows beyond the 16-row slices
    with pytest.raises(ValueError, match="no real slice"):
        real_labeler.mixed_bank(_bank(0, 7, real_labeler.IGNORE), synthetic, 0.5)


def test_evaluation_uses_the_given_namer() -> None:
    """Synthetic mask and prediction (the mask itself): a namer's names are judged per
    level; the default (sacrum rule) finds no sacrum in two discs and names nothing."""
    sample = _sample({1: "L4-L5", 2: "L5-S1"})
    pred = np.asarray(sample.semantic)
    plain = real_subject_eval.evaluate_subject(sample, pred)
    assert plain.row["n_named_correct"] == 0 and plain.row["n_named_wrong"] == 0

    def namer(split):  # type: ignore[no-untyped-def]
        return {i + 1: n for i, n in enumerate(["L4-L5", "L4-L5"][: split.n_instances])}

    named = real_subject_eval.evaluate_subject(sample, pred, namer=namer)
    assert named.row["n_named_correct"] == 1 and named.row["n_named_wrong"] == 1
    assert "L5-S1: named L4-L5" in named.row["misses"]


@pytest.mark.real
@needs_real
def test_real_targets_name_every_annotated_level() -> None:
    """Every named real scan (VB2, VB3, IVD) gives a target with one union class per
    annotated level and nothing else supervised; VB1 gives none."""
    for s in rd.load_manifest(REAL):
        loaded = s.load()
        target = real_labeler.named_class_map(loaded)
        if not s.levels_known:
            assert target is None
            continue
        assert target is not None
        inst = np.asarray(loaded.instances)
        assert np.all((target != real_labeler.IGNORE) == (inst > 0))
        got = {int(c) for c in np.unique(target[inst > 0])}
        want = {
            labels.all_names().index(vote.union_column(n)) + 1
            for i, n in s.level_names.items()
            if (inst == i).any()
        }
        assert got == want, s.key


def test_config_from_dict_ignores_unknown_keys() -> None:
    cfg = real_labeler.RealLabelerConfig.from_dict({"steps": 5, "crop": [64, 32], "other": 1})
    assert cfg.steps == 5 and cfg.crop == (64, 32)
    assert dataclasses.asdict(cfg)["fold"] == 0
    # the training seed is apart from the split's: a repeat judges the same folds
    assert cfg.train_seed is None
    assert real_labeler.RealLabelerConfig.from_dict({"train_seed": 1}).seed == 0


@pytest.mark.real
@needs_real
def test_fine_tune_names_its_data_and_keeps_the_validation_scans_out(tmp_path: Path) -> None:
    """A 3-step fine-tune on fold 1's named real scans (no synthetic windows): the
    sidecar lists exactly the training side's named scans, none of VB1 (levels unknown),
    none of the validation side, and the start weights' digest."""
    from spinecensus.segment.weights import (
        DEFAULT_LABELING_WEIGHTS,
        load_model,
        read_spec,
        sha256_file,
    )

    out = real_labeler.train_real_labeler(
        {"root": str(REAL), "fold": 1, "steps": 3, "batch_size": 2, "threads": 1},
        tmp_path / "lab.pt",
    )
    spec = read_spec(out)
    assert spec is not None and spec.task == "labeling" and len(spec.classes) == 50
    t = spec.training
    train, val = rs.split_subjects(rd.load_manifest(REAL), 0.34, 0, 1)
    assert t["real_train_subjects"] == [s.key for s in train if s.levels_known]
    assert t["real_validation_subjects"] == [s.key for s in val]
    assert not any(k.startswith("VB1") for k in t["real_train_subjects"])
    assert t["init_sha256"] == sha256_file(DEFAULT_LABELING_WEIGHTS)
    assert t["steps"] == 3
    assert load_model(out, threads=1).spec.task == "labeling"
