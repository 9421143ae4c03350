"""Throughput settings (issue 23): inference precision, gzip level of written masks, and the
analyse rules' one-process-per-batch analysis with per-subject outputs, failures and reruns.

Data: the small synthetic phantom of tests/spine_phantom.py (via test_cohort) and, for the
bf16 check, a tiny U-Net trained for a few steps on one synthetic subject (synthetic)."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from test_cohort import _write_subject  # noqa: E402
from test_model import tiny_spec  # noqa: E402

from spinecensus.census import analyse_batch as ab  # noqa: E402
from spinecensus.census import subject_analysis  # noqa: E402
from spinecensus.census.segment_job import segment  # noqa: E402
from spinecensus.io import load_mask, save_like  # noqa: E402
from spinecensus.segment.predict import SegmentationModel, channel_argmax  # noqa: E402
from spinecensus.segment.runners import (  # noqa: E402
    PRECISIONS,
    batch_for_memory,
    native_bf16,
    resolve_precision,
)

# --- precision ---------------------------------------------------------------------------------


def test_precision_parsing():
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("BF16", "cpu") == "bf16"
    assert resolve_precision("fp16", "cuda") == "fp16"
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        resolve_precision("int8", "cpu")
    assert set(PRECISIONS) == {"auto", "fp32", "bf16"}


def test_auto_precision_is_a_valid_choice_that_follows_the_hardware():
    native = native_bf16("cpu")
    assert isinstance(native, bool)
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert resolve_precision(None, "cpu") == resolve_precision("auto", "cpu")
    cuda_native = native_bf16("cuda")
    assert resolve_precision("auto", "cuda") == ("bf16" if cuda_native else "fp32")


def test_batch_size_from_free_memory():
    gib = 1 << 30
    assert batch_for_memory(80 * gib, 100 << 20) == 491  # 60 % of 80 GiB / 100 MiB
    assert batch_for_memory(80 * gib, 1 << 20) == 512  # capped
    assert batch_for_memory(10 << 20, 100 << 20) == 1  # at least one slice


def test_channel_argmax_equals_torch_argmax_with_first_max_on_ties():
    gen = torch.Generator().manual_seed(0)
    for c in (3, 50):
        x = torch.randn(2, c, 7, 5, generator=gen)
        x[0, :, 0, 0] = 1.0  # a tie across every channel -> class 0
        x[1, 2, 1, 1] = x[1, 1, 1, 1] = x[1, :, 1, 1].max() + 1  # tie of 1 and 2 -> 1
        got = channel_argmax(x)
        assert got.dtype == torch.uint8
        assert torch.equal(got.long(), x.argmax(1))
        assert got[0, 0, 0] == 0 and got[1, 1, 1] == 1


@pytest.fixture(scope="module")
def tiny_trained():
    """A tiny U-Net trained 30 steps on one synthetic tiny-preset subject (decisive enough
    to segment: foreground Dice ~0.8 on another subject), and that other subject."""
    from spinecensus.synthetic import SyntheticConfig, generate_subject
    from spinecensus.train.loop import train_network
    from spinecensus.train.slice_bank import to_bank

    subs = [generate_subject(s, "normal", SyntheticConfig.tiny(), subject=f"T{s}") for s in (3, 4)]
    spec = tiny_spec(input_size=(128, 48), target_spacing_mm=(4.0, 4.0))
    bank = to_bank([(subs[0].image, subs[0].semantic, subs[0].spacing_mm)], spec)
    before = torch.get_num_threads()
    net, losses = train_network(spec, bank, 30, 4, (128, 48), 0, lr=3e-3, amp=None)
    torch.set_num_threads(before)
    assert losses[-1] < 0.5 * losses[0]
    return net, spec, subs[1]


def test_bf16_and_fp32_agree_on_a_tiny_trained_model(tiny_trained):
    """Synthetic: arg-max of bf16 autocast vs fp32 on a held-out subject, >= 99.5 % voxels
    equal; the model is not trivial (it finds the spine)."""
    net, spec, sub = tiny_trained
    fp32 = SegmentationModel.from_network(net, spec, amp="fp32")
    bf16 = SegmentationModel.from_network(net, spec, amp="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    a = fp32.predict(sub.image, sub.spacing_mm)
    b = bf16.predict(sub.image, sub.spacing_mm)
    truth = np.asarray(sub.semantic) > 0
    dice = 2 * np.sum((a > 0) & truth) / (np.sum(a > 0) + np.sum(truth))
    assert dice > 0.5, dice
    assert np.mean(a == b) >= 0.995
    # probabilities leave the runner in fp32 whatever the autocast dtype
    proba = bf16.predict_proba(sub.image[:2], sub.spacing_mm)
    assert proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-5)


def test_folded_channels_last_runner_matches_the_plain_network(tiny_trained):
    """Synthetic: the runner's BatchNorm folding + channels-last change logits only by float
    rounding, and leave the trained network itself untouched (still in training mode)."""
    net, spec, sub = tiny_trained
    net.train()
    model = SegmentationModel.from_network(net, spec, amp="fp32")
    assert net.training  # the runner works on a copy
    x = torch.randn(2, 3, *spec.input_size)
    with torch.inference_mode():
        plain = net.eval()(x)
    np.testing.assert_allclose(model.runner(x).numpy(), plain.numpy(), atol=1e-4)


# --- gzip level ----------------------------------------------------------------------------------


def test_gzip_level_is_honoured(tmp_path):
    """Synthetic phantom mask: every level writes a gzip file that reads back equal; level
    1 is marked 'fastest' in the gzip header, level 0 stores the data uncompressed."""
    _write_subject(tmp_path, "A", "normal")
    mask = load_mask(tmp_path / "A" / "semantic.nii.gz")
    sizes = {}
    for level in (0, 1, 9):
        out = tmp_path / f"m{level}.nii.gz"
        save_like(mask.data, mask, out, np.uint8, gzip_level=level)
        raw = out.read_bytes()
        assert raw[:2] == b"\x1f\x8b"  # gzip magic
        assert len(gzip.decompress(raw)) > mask.data.size  # header + voxels
        back = load_mask(out)
        np.testing.assert_array_equal(back.data, mask.data)
        np.testing.assert_array_equal(back.affine, mask.affine)
        sizes[level] = len(raw)
    assert (tmp_path / "m1.nii.gz").read_bytes()[8] == 4  # XFL: fastest algorithm
    assert sizes[0] > mask.data.size > sizes[1] >= sizes[9]
    with pytest.raises(ValueError, match="gzip_level"):
        save_like(mask.data, mask, tmp_path / "x.nii.gz", np.uint8, gzip_level=10)


# --- analyse per batch -----------------------------------------------------------------------


def _cohort(tmp_path):
    """Synthetic phantoms A (normal), B (lumbarization), C (sacralization), a corrupt image
    BAD, and A2 whose mask is broken after segmentation: one ground-truth segment batch."""
    data = tmp_path / "data"
    for s, v in [("A", "normal"), ("A2", "normal"), ("B", "lumbarization"),
                 ("C", "sacralization")]:  # fmt: skip
        _write_subject(data, s, v)
    (data / "BAD").mkdir()
    (data / "BAD" / "image.nii.gz").write_bytes(b"not a nifti")
    subjects = ["A", "A2", "B", "BAD", "C"]
    images = [str(data / s / "image.nii.gz") for s in subjects]
    sems = [str(data / s / "semantic.nii.gz") for s in subjects]
    seg = tmp_path / "seg" / "b00000"
    info = segment(subjects, images, seg, method="ground_truth", semantics=sems)
    assert info["subjects"][0]["input_sha256"]  # provenance recorded where it is read
    (seg / "A2.nii.gz").write_bytes(b"broken after segmentation")
    return subjects, images, seg


def _stamps(root: Path, subjects) -> dict[str, tuple[int, bytes]]:
    p = {s: root / s / "summary.json" for s in subjects}
    return {s: (f.stat().st_mtime_ns, f.read_bytes()) for s, f in p.items() if f.exists()}


def test_analyse_batch_isolates_failures_and_reruns_only_what_is_missing(tmp_path):
    """Synthetic phantoms: one process analyses the batch; bad inputs stay per-subject
    failures; a deleted subject is recomputed alone; a forced rerun recomputes the batch."""
    subjects, images, seg = _cohort(tmp_path)
    out = tmp_path / "subjects"
    res = ab.analyse_batch(subjects, seg, out, images, gzip_level=1)
    assert sorted(res["failed"]) == ["A2", "BAD"] and res["kept"] == []
    status = {s: json.loads((out / s / "summary.json").read_text()) for s in subjects}
    assert [status[s]["transitional_status"] for s in ("A", "B", "C")] == [
        "normal", "lumbarization", "sacralization"]  # fmt: skip
    assert status["BAD"]["rule"] == "segment" and status["A2"]["rule"] == "analyse"
    for s in subjects:
        for name in ab.DECLARED:
            assert (out / s / name).exists(), (s, name)
    assert (out / "A2" / "failed.json").exists() and not (out / "A" / "failed.json").exists()
    # provenance: the image's sha256 as the segment job read it
    assert status["A"]["input_sha256"] == ab.file_sha256(images[0])
    assert all(status[s]["analysis_key"] for s in subjects)

    before = _stamps(out, subjects)
    (out / "B" / "summary.json").unlink()  # "rerun one subject"
    res = ab.analyse_batch(subjects, seg, out, images)
    assert res["analysed"] == ["B"] and sorted(res["kept"]) == ["A", "A2", "BAD", "C"]
    after = _stamps(out, subjects)
    assert all(after[s] == before[s] for s in ("A", "A2", "BAD", "C"))

    # a changed input (the mask of A) makes A stale: recomputed, the others kept
    load = load_mask(seg / "A.nii.gz")
    save_like(load.data, load, seg / "A.nii.gz", np.uint8, gzip_level=0)  # same mask, new bytes
    res = ab.analyse_batch(subjects, seg, out, images)
    assert res["analysed"] == ["A"]

    # nothing missing or stale: the rule was forced, every subject is recomputed
    res = ab.analyse_batch(subjects, seg, out, images)
    assert sorted(res["analysed"]) == sorted(subjects) and res["kept"] == []


def test_a_fault_fails_the_batch_and_keeps_finished_subjects(tmp_path, monkeypatch):
    """Synthetic phantoms: a program fault (not a subject's bad input) in one subject stops
    the batch with its exception; subjects finished before keep complete outputs and are
    not recomputed when the batch resumes."""
    subjects, images, seg = _cohort(tmp_path)
    out = tmp_path / "subjects"
    real = subject_analysis.analyse_semantic
    calls = []

    def faulty(sem, *args, **kw):
        calls.append(1)
        if len(calls) == 2:  # A, then B (A2 fails reading its mask before)
            raise RuntimeError("a bug")
        return real(sem, *args, **kw)

    monkeypatch.setattr(subject_analysis, "analyse_semantic", faulty)
    with pytest.raises(RuntimeError, match="a bug"):
        ab.analyse_batch(subjects, seg, out, images)
    done = [s for s in subjects if (out / s / "summary.json").exists()]
    assert done == ["A", "A2"]  # A, then A2 (a failure record), then B raised
    monkeypatch.setattr(subject_analysis, "analyse_semantic", real)
    res = ab.analyse_batch(subjects, seg, out, images)
    assert sorted(res["kept"]) == ["A", "A2"] and sorted(res["analysed"]) == ["B", "BAD", "C"]


def test_kept_outputs_are_made_newer_than_a_remade_input(tmp_path):
    """Synthetic phantoms: a re-segmented batch with the same masks keeps the analyses but
    touches them, so Snakemake does not see them as outdated afterwards."""
    subjects, images, seg = _cohort(tmp_path)
    out = tmp_path / "subjects"
    ab.analyse_batch(subjects, seg, out, images)
    (out / "C" / "summary.json").unlink()
    past = (out / "A" / "qc.png").stat().st_mtime - 1000
    for name in ab.DECLARED:  # outputs written long before the batch was remade
        os.utime(out / "A" / name, (past, past))
    stamp = seg / ".snakemake_timestamp"
    stamp.touch()
    res = ab.analyse_batch(subjects, seg, out, images)
    assert res["analysed"] == ["C"]
    for name in ab.DECLARED:
        assert (out / "A" / name).stat().st_mtime >= stamp.stat().st_mtime


def test_the_analysis_reads_each_file_once_and_never_decodes_the_image(tmp_path, monkeypatch):
    """Synthetic phantoms: the analyse job reads each subject's mask once, takes the image's
    sha256 from the segment job's record and the QC picture's image slice from the
    ``<subject>.qc.npz`` the segment job wrote while it had the image in memory."""
    from spinecensus.census import analyse_job
    from spinecensus.io import nifti

    subjects, images, seg = _cohort(tmp_path)
    assert (seg / "A.qc.npz").exists() and not (seg / "BAD.qc.npz").exists()
    decoded, hashed = [], []
    real_load, real_hash = nifti.load_nifti, analyse_job.file_sha256

    def load(path, *a, **kw):
        decoded.append(Path(path).resolve())
        return real_load(path, *a, **kw)

    def sha(path):
        hashed.append(Path(path).resolve())
        return real_hash(path)

    monkeypatch.setattr(nifti, "load_nifti", load)
    monkeypatch.setattr(analyse_job, "file_sha256", sha)
    monkeypatch.setattr(ab, "file_sha256", sha)
    out = tmp_path / "subjects"
    ab.analyse_batch(subjects, seg, out, images)
    image_paths = {Path(p).resolve() for p in images}
    assert not image_paths & set(decoded) and not image_paths & set(hashed)
    assert sorted(decoded) == sorted({p for p in decoded})  # no file decoded twice
    assert (seg / "A.nii.gz").resolve() in decoded
    assert (out / "A" / "qc.png").stat().st_size > 1000
