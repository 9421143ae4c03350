"""Run integrity: a subject's bad input is that subject's failure; a fault of the program or
the machine (a bug, out-of-memory, wrong weights) fails the job; the failure guard fails a run
that mostly failed; no library call leaves process-wide state changed.

Data: the small synthetic phantoms of tests/spine_phantom.py (via test_cohort's writer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from test_cohort import _write_subject

from spinecensus.census import analyse_job, subject_analysis
from spinecensus.census.aggregate_job import aggregate
from spinecensus.census.failure_guard import (
    CohortFailed,
    error_kind,
    failure_guard,
    guard_message,
)
from spinecensus.census.segment_job import halving_batch_on_gpu_oom, segment
from spinecensus.io import atomic_path
from spinecensus.segment.predict import torch_threads
from spinecensus.segment.weights import (
    DEFAULT_LABELING_WEIGHTS,
    DEFAULT_SEGMENTATION_WEIGHTS,
    WeightsTaskError,
    check_weights_file,
    load_model,
)

REPO = Path(__file__).resolve().parents[1]


# --- weights know their task ------------------------------------------------------------------
def test_a_labeler_is_refused_as_segmentation_weights_naming_file_and_tasks():
    with pytest.raises(WeightsTaskError) as err:
        load_model(DEFAULT_LABELING_WEIGHTS, task="segmentation")
    msg = str(err.value)
    assert str(DEFAULT_LABELING_WEIGHTS) in msg
    assert "labeling weights" in msg and "given as segmentation weights" in msg
    with pytest.raises(WeightsTaskError, match="segmentation weights .* given as labeling"):
        check_weights_file(DEFAULT_SEGMENTATION_WEIGHTS, "labeling")
    assert load_model(DEFAULT_SEGMENTATION_WEIGHTS, task="segmentation").spec.n_classes == 3
    check_weights_file(DEFAULT_LABELING_WEIGHTS, "labeling")


def test_segment_job_with_a_labeler_as_segmenter_stops_before_any_subject(tmp_path):
    data = tmp_path / "data"
    _write_subject(data, "A", "normal")
    out = tmp_path / "seg"
    with pytest.raises(WeightsTaskError, match=str(DEFAULT_LABELING_WEIGHTS)):
        segment(
            ["A"], [str(data / "A" / "image.nii.gz")], out, weights=str(DEFAULT_LABELING_WEIGHTS)
        )
    assert not list(out.glob("A*"))


# --- two kinds of error in the segment job ----------------------------------------------------
class _Exploding:
    """A segmenter whose forward pass hits a bug (a fault of the program, not of a subject)."""

    batch_size = 4

    def predict_semantic(self, volume, spacing_mm):
        raise RuntimeError("a bug in the model code")


def test_segment_records_bad_input_but_a_bug_fails_the_job(tmp_path, monkeypatch):
    from spinecensus.census import segment_job

    data = tmp_path / "data"
    _write_subject(data, "A", "normal")
    images = [str(data / "A" / "image.nii.gz"), str(data / "GONE" / "image.nii.gz")]
    monkeypatch.setattr(segment_job, "_load_segmenter", lambda *a: (_Exploding(), "x.pt", 0.0))
    # the missing image comes first: recorded, then the bug stops the job
    with pytest.raises(RuntimeError, match="a bug in the model code"):
        segment(["GONE", "A"], images[::-1], tmp_path / "seg")
    assert (tmp_path / "seg" / "GONE.failed.json").exists()
    assert not (tmp_path / "seg" / "A.failed.json").exists()


class OutOfMemoryError(RuntimeError):
    """Named like torch's accelerator out-of-memory error."""


class _SmallGpu:
    def __init__(self, fits: int):
        self.batch_size, self.fits, self.tried = 16, fits, []

    def predict_semantic(self, volume, spacing_mm):
        self.tried.append(self.batch_size)
        if self.batch_size > self.fits:
            raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return np.zeros(volume.shape, np.uint8)


class _Scan:
    data = np.zeros((2, 3, 4), np.float32)
    spacing_mm = (1.0, 1.0, 1.0)


def test_gpu_out_of_memory_halves_the_batch_then_fails(monkeypatch):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    model = _SmallGpu(fits=4)
    halving_batch_on_gpu_oom(model, model.predict_semantic, _Scan())
    assert model.tried == [16, 8, 4]
    model = _SmallGpu(fits=0)
    with pytest.raises(OutOfMemoryError):
        halving_batch_on_gpu_oom(model, model.predict_semantic, _Scan())
    assert model.tried == [16, 8, 4, 2, 1]


# --- two kinds of error in the analyse job ----------------------------------------------------
def _segmented(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    _write_subject(data, "A", "normal")
    seg = tmp_path / "seg" / "b00000"
    image = str(data / "A" / "image.nii.gz")
    segment(
        ["A"], [image], seg, method="ground_truth", semantics=[str(data / "A" / "semantic.nii.gz")]
    )
    return seg, Path(image)


def test_a_fault_in_the_split_fails_the_analyse_job(tmp_path, monkeypatch):
    seg, image = _segmented(tmp_path)

    def broken_split(*args, **kwargs):
        raise ZeroDivisionError("injected fault in the split")

    monkeypatch.setattr(subject_analysis, "split_instances", broken_split)
    with pytest.raises(ZeroDivisionError):
        analyse_job.analyse("A", seg, tmp_path / "out", image=str(image))
    assert not (tmp_path / "out" / "failed.json").exists()
    assert not (tmp_path / "out" / "summary.json").exists()


def test_the_analyse_command_exits_nonzero_with_the_traceback(tmp_path):
    """The job process itself (what Snakemake sees): fault injected by monkeypatching in a
    subprocess, which then runs the rule's command line."""
    seg, image = _segmented(tmp_path)
    code = (
        "import sys\n"
        "from spinecensus.census import subject_analysis, jobs\n"
        "def boom(*a, **k):\n"
        "    raise ZeroDivisionError('injected fault in the split')\n"
        "subject_analysis.split_instances = boom\n"
        "sys.exit(jobs.main(sys.argv[1:]))\n"
    )
    args = ["analyse", "--subject", "A", "--seg-dir", str(seg), "--out", str(tmp_path / "out")]
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert res.returncode != 0
    assert "Traceback" in res.stderr and "injected fault in the split" in res.stderr
    assert not (tmp_path / "out" / "summary.json").exists()


# --- the failure guard ------------------------------------------------------------------------
def test_error_kind_drops_the_file_path():
    assert error_kind("/data/S1/image.nii.gz: file does not exist") == "file does not exist"
    assert error_kind("ValueError: x") == "ValueError: x"


def test_guard_message_by_fraction_and_by_batch():
    ok = dict.fromkeys("ABCDEFGHIJ", True)
    batches = {"b00000": list("ABCDE"), "b00001": list("FGHIJ")}
    assert guard_message(ok, batches, []) is None
    two = {**ok, "A": False, "F": False}  # 20 % failed: not more than 0.2
    fails = [{"subject": s, "rule": "segment", "error": f"/x/{s}.nii.gz: file does not exist"}
             for s in "AF"]  # fmt: skip
    assert guard_message(two, batches, fails) is None
    three = {**two, "B": False}
    msg = guard_message(three, batches, fails + [{"error": "analyse: boom"}])
    assert msg.startswith("spinecensus: run failed: 3 of 10 subjects failed")
    assert "qc.max_failed_fraction = 0.2" in msg and "file does not exist (2x)" in msg
    whole = {**ok, **dict.fromkeys("FGHIJ", False)}
    msg = guard_message(whole, batches, [], max_failed_fraction=0.9)
    assert "every subject of batch b00001 failed" in msg and "max_failed" not in msg
    assert guard_message(whole, batches, [], 0.9, whole_batch=False) is None


def test_failure_guard_on_tables_of_unreadable_images(tmp_path):
    """Every image unreadable: tables written, the guard raises with its line."""
    data = tmp_path / "data"
    subjects = ["P1", "P2", "P3"]
    for s in subjects:
        (data / s).mkdir(parents=True)
        (data / s / "image.nii.gz").write_bytes(b"garbage")
    seg = tmp_path / "segmentation" / "b00000"
    segment(subjects, [str(data / s / "image.nii.gz") for s in subjects], seg)
    out = tmp_path / "subjects"
    for s in subjects:
        assert analyse_job.analyse(s, seg, out / s)["status"] == "failed"
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("subject\timage\n" + "".join(f"{s}\t{s}.nii.gz\n" for s in subjects))
    tables = aggregate(out, subjects, tmp_path / "tables", sheet=sheet)
    marker = tmp_path / "tables" / "failure_guard.txt"
    with pytest.raises(CohortFailed, match="3 of 3 subjects failed.*every subject of batch b00000"):
        failure_guard(tmp_path / "tables", [seg], marker)
    assert not marker.exists()
    assert pq.read_table(tables["failures"]).num_rows == 3


# --- no process-wide side effects -------------------------------------------------------------
def test_importing_the_package_leaves_the_umask_alone():
    code = (
        "import os\n"
        "os.umask(0o027)\n"
        "import spinecensus.io, spinecensus.io.dicom, spinecensus.census.jobs\n"
        "print(oct(os.umask(0o022)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0o27"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_atomic_outputs_follow_the_current_umask(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        with atomic_path(tmp_path / "x.json") as tmp:
            tmp.write_text("{}")
    finally:
        os.umask(before)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == mode


def test_model_threads_are_set_only_while_predicting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    model = load_model(DEFAULT_SEGMENTATION_WEIGHTS, threads=1)
    assert torch.get_num_threads() == before
    model.predict_semantic(np.random.default_rng(0).normal(size=(3, 40, 30)), (3.0, 1.0, 1.0))
    assert torch.get_num_threads() == before
    assert json.loads(json.dumps(model.threads)) == 1
