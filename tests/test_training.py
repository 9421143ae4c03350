"""spinecensus.train (generated-label training): the training loop, metrics and the
data-generation steps.

Synthetic data only: the hand-made phantom of ``tests/spine_phantom.py`` (with a fake T2-like
image) for the loop, and ``spinecensus.synthetic`` (``SyntheticConfig.tiny()``) for the
pipeline steps, which skip when that module is not available.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from spine_phantom import make_phantom  # noqa: E402

from spinecensus.anatomy import labels  # noqa: E402
from spinecensus.segment.spec import ModelSpec  # noqa: E402
from spinecensus.segment.weights import load_model, sha256_file  # noqa: E402
from spinecensus.train import (  # noqa: E402
    autolabel,
    config,
    crops,
    evaluation,
    labeler,
    loop,
    metrics,
    segmentation,
    slice_bank,
    subjects,
    union_maps,
)

torch.set_num_threads(1)


def fake_image(semantic: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([40.0, 90.0, 200.0], np.float32)[semantic]
    return (base + rng.normal(0, 8, semantic.shape)).astype(np.float32)


def tiny_seg_spec() -> ModelSpec:
    return ModelSpec(
        encoder="resnet18",
        encoder_depth=3,
        decoder_channels=(16, 8, 8),
        target_spacing_mm=(3.0, 3.0),
        input_size=(256, 64),
    )


def test_training_loop_runs_and_loss_decreases(tmp_path):
    """A tiny U-Net trains a few steps on a synthetic phantom; the loss goes down."""
    ph = make_phantom(spacing_mm=(4.0, 1.5, 1.5))
    spec = tiny_seg_spec()
    bank = slice_bank.to_bank([(fake_image(ph.semantic), ph.semantic, ph.spacing_mm)], spec)
    assert len(bank.index) > 0 and bank.images[0].shape[1:] == (256, 64)
    log = tmp_path / "loss.tsv"
    net, losses = loop.train_network(
        spec, bank, steps=30, batch_size=4, crop=(128, 64), seed=0, lr=5e-3, log_every=10,
        log_path=log,
    )  # fmt: skip
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert log.read_text().splitlines()[0] == "step\tloss\tseconds"


def test_training_is_seeded():
    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))
    spec = tiny_seg_spec()
    bank = slice_bank.to_bank([(fake_image(ph.semantic), ph.semantic, ph.spacing_mm)], spec)
    _, a = loop.train_network(spec, bank, 3, 2, (64, 64), seed=3)
    _, b = loop.train_network(spec, bank, 3, 2, (64, 64), seed=3)
    assert a == b


def test_dice_per_class():
    t = np.array([0, 1, 1, 2, 2, 2])
    p = np.array([0, 1, 2, 2, 2, 0])
    d = metrics.dice_per_class(p, t, [1, 2, 3])
    assert d[1] == pytest.approx(2 * 1 / 3)
    assert d[2] == pytest.approx(2 * 2 / 6)
    assert math.isnan(d[3])


def test_name_accuracy_matches_by_overlap():
    truth = np.array([[1, 1, 2, 3, 3]])
    pred = np.array([[5, 5, 6, 7, 0]])  # different ids, same structures
    t_names = {1: "C2", 2: "C2-C3", 3: "C3"}
    assert metrics.name_accuracy(pred, {5: "C2", 6: "C2-C3", 7: "C3"}, truth, t_names) == 1.0
    assert metrics.name_accuracy(pred, {5: "C2", 6: "C3-C4", 7: "C4"}, truth, t_names) == (
        pytest.approx(1 / 3)
    )


def test_union_class_map_lumbosacral_disc():
    inst = np.array([[0, 1, 2, 3]])
    m = union_maps.union_class_map(inst, {1: "L5", 2: "L5-S1", 3: "S1"})
    names = labels.all_names()
    assert [names[c - 1] for c in m[0, 1:]] == ["L5", "L6-S1", "S1"]
    assert m[0, 0] == 0


def test_config_presets_and_overrides():
    cfg = config.TrainConfig.from_dict(
        {"size": "demo", "seg_steps": 7, "labeling": {"encoder_depth": 3}}
    )
    assert cfg.seg_steps == 7 and cfg.n_expert == config.PRESETS["demo"]["n_expert"]
    assert cfg.labeling["encoder_depth"] == 3 and cfg.labeling["encoder"] == "resnet18"
    assert config.TrainConfig.from_dict({"size": "gpu"}).n_cohort == 10_833


def test_eval_markdown_marks_synthetic():
    import pandas as pd

    df = pd.DataFrame(
        [
            {"model": m, "aggregation": a, "V": v, "subset_correct": ok, "dice": 0.8}
            for m, ok in (("generated", True), ("control", False))
            for a in evaluation.AGGREGATIONS
            for v in evaluation.EVAL_V
        ]
    )
    md = evaluation.eval_markdown(df, config.TrainConfig())
    assert "SYNTHETIC" in md and "85.5 %" in md
    assert "| generated [vote] (synthetic) | 100.0 % / 0.800" in md
    assert "| control [mean] (synthetic) | 0.0 % / 0.800" in md


def test_pipeline_steps_tiny(tmp_path):
    """All five data-generation steps on a handful of tiny synthetic subjects (a few training
    steps each): files are written, autolabels never come from ground truth, eval table is
    complete."""
    import pandas as pd

    cfg = {
        "size": "ci", "n_expert": 2, "n_cohort": 2, "crops_per_subject": 2, "n_eval_per_v": 1,
        "seg_steps": 3, "lab_steps": 3, "batch_size": 2, "synthetic_preset": "tiny",
        "seg_crop": [64, 64], "lab_crop": [64, 64],
        "segmentation": {"encoder_depth": 3, "decoder_channels": [16, 8, 8]},
        "labeling": {"encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    }  # fmt: skip
    seg = segmentation.train_segmentation(cfg, tmp_path / "segmentation.pt")
    assert load_model(seg).spec.metrics["synthetic"] is True
    # the Dice difference bf16 - fp32 measured at training time (segmentation.precision)
    diff = load_model(seg).spec.metrics["precision_dice"]["bf16_minus_fp32"]
    assert set(diff) == {"dice_vertebra", "dice_disc"}
    auto = autolabel.train_autolabel(cfg, seg, tmp_path / "autolabels.npz")
    summary = (tmp_path / "autolabels.json").read_text()
    assert '"total": 2' in summary
    ecrops = crops.train_expert_crops(cfg, tmp_path / "expert_crops.npz")
    with np.load(ecrops) as z:
        assert len(z["seed"]) == 4 and str(z["labels"]) == "ground_truth"
        assert (z["r1"] > z["r0"]).all()
    ctl = labeler.train_labeler(cfg, ecrops, tmp_path / "control.pt", "control")
    models = {"control": ctl}
    with np.load(auto) as z:
        have_auto = len(z.files) > 0
    assert "ground truth" in load_model(ctl).spec.training["crops"]["labels"]
    if have_auto:  # an untrained segmenter may give no valid split; then skip that branch
        cohort_crops = crops.train_crops(cfg, auto, tmp_path / "crops.npz")
        models["generated"] = labeler.train_labeler(cfg, cohort_crops, tmp_path / "labeler.pt")
        # the sidecar names the model that generated the labels (provenance of the data)
        prov = load_model(models["generated"]).spec.training["crops"]
        assert prov["labels"].startswith("automatic")
        assert prov["autolabel"]["segmentation_sha256"] == sha256_file(seg)
    evaluation.evaluate_labelers(cfg, models, tmp_path / "eval.parquet", tmp_path / "eval.md")
    df = pd.read_parquet(tmp_path / "eval.parquet")
    assert set(df.V) == set(evaluation.EVAL_V) and set(df.model) == set(models)
    assert set(df.aggregation) == set(evaluation.AGGREGATIONS)
    assert "SYNTHETIC" in (tmp_path / "eval.md").read_text()


def test_fine_tune_starts_from_init_weights(tmp_path):
    """init_weights: 0 steps of "training" returns the saved network (synthetic phantom);
    class_weights reach the loss; a mismatching architecture is refused."""
    from spinecensus.segment.weights import load_network, save_weights

    ph = make_phantom(spacing_mm=(4.0, 2.0, 2.0))
    spec = tiny_seg_spec()
    bank = slice_bank.to_bank([(fake_image(ph.semantic), ph.semantic, ph.spacing_mm)], spec)
    net, _ = loop.train_network(spec, bank, 3, 2, (64, 64), seed=1)
    save_weights(net, spec, tmp_path / "w.pt")
    saved, _ = load_network(tmp_path / "w.pt")
    # lr 0: fine-tuning leaves the (fp16-rounded) starting weights unchanged
    tuned, a = loop.train_network(
        spec, bank, 2, 2, (64, 64), seed=5, lr=0.0, init_weights=tmp_path / "w.pt"
    )
    for k, v in saved.state_dict().items():
        if v.is_floating_point() and "running" not in k:
            assert torch.equal(tuned.state_dict()[k], v), k
    _, b = loop.train_network(
        spec, bank, 2, 2, (64, 64), seed=5, lr=0.0, init_weights=tmp_path / "w.pt",
        class_weights=(1.0, 1.0, 5.0),
    )  # fmt: skip
    assert a != b
    other = ModelSpec(encoder_depth=3, decoder_channels=(32, 16, 8), target_spacing_mm=(3, 3))
    with pytest.raises(ValueError, match="init_weights"):
        loop.train_network(other, bank, 1, 2, (64, 64), seed=0, init_weights=tmp_path / "w.pt")


def test_make_crops_oversamples_transitional_spines(tmp_path):
    """Synthetic tiny subjects: subjects whose labels say lumbarization / sacralization get
    anomaly_crop_factor x the crops of a normal spine."""
    base = {"size": "ci", "n_expert": 4, "crops_per_subject": 2, "synthetic_preset": "tiny",
            "lumbarization": 0.25, "sacralization": 0.25}  # fmt: skip
    cfg = config.TrainConfig.from_dict(base)
    seeds = [subjects.subject_seed(cfg, subjects.EXPERT_OFFSET, i) for i in range(4)]
    rare = sum(subjects.anomaly_for(cfg, sd) != "normal" for sd in seeds)
    out = crops.make_crops(
        {**base, "anomaly_crop_factor": 3}, None, tmp_path / "c.npz", expert=True
    )
    with np.load(out) as z:
        per_seed = {sd: int((z["seed"] == sd).sum()) for sd in seeds}
    for sd in seeds:
        assert per_seed[sd] == (6 if subjects.anomaly_for(cfg, sd) != "normal" else 2)
    assert sum(per_seed.values()) == 2 * 4 + 4 * rare


def test_autolabel_drops_spines_with_a_missed_disc(tmp_path, monkeypatch):
    """Synthetic tiny subjects and a stand-in segmenter that returns the ground-truth mask,
    except that it misses one thoracic disc in the first subject: that subject's automatic
    labels would be shifted below the merge, so it is dropped; the others are kept."""
    cfg = {"size": "ci", "n_cohort": 3, "synthetic_preset": "tiny",
           "lumbarization": 0.0, "sacralization": 0.0}  # fmt: skip
    first = subjects.subject_seed(config.TrainConfig.from_dict(cfg), subjects.COHORT_OFFSET, 0)

    class GroundTruthSegmenter:
        def predict_semantic(self, image, spacing_mm):
            seed = next(s for s in range(first, first + 3) if seen.get(s) is image)
            sub = made[seed]
            sem = np.asarray(sub.semantic).copy()
            if seed == first:
                name_to_id = {v: k for k, v in sub.id_to_name.items()}
                sem[sub.instances == name_to_id["T6-T7"]] = 1
            return sem

    made, seen = {}, {}
    real_make = subjects.make_subject

    def make_subject(c, seed, anomaly=None):
        sub = real_make(c, seed, anomaly)
        made[seed], seen[seed] = sub, sub.image
        return sub

    monkeypatch.setattr(autolabel, "make_subject", make_subject)
    monkeypatch.setattr(autolabel, "load_model", lambda *a, **k: GroundTruthSegmenter())
    monkeypatch.setattr("spinecensus.segment.weights.sha256_file", lambda p: "0" * 64)
    out = autolabel.train_autolabel(cfg, tmp_path / "seg.pt", tmp_path / "autolabels.npz")
    summary = json.loads((tmp_path / "autolabels.json").read_text())
    rows = {r["seed"]: r for r in summary["subjects"]}
    assert rows[first]["valid"] is False
    assert rows[first]["invalid_reason"].startswith("missed_disc_suspected")
    assert summary["kept"] == 2
    with np.load(out) as z:
        assert sorted(z.files) == [f"lab_{first + 1}", f"lab_{first + 2}"]
