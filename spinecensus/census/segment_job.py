"""The ``segment`` rule: one batch of subjects, the model loaded once.

A batch is a deterministic chunk of the sorted subject list
(:func:`spinecensus.census.batches.make_batches`).  Every subject is read, checked, segmented
and written to ``<batch dir>/<subject>.nii.gz`` (semantic mask 0/1/2 on the input grid and
affine).  ``method="ground_truth"`` (synthetic cohorts and sheets with a ``semantic`` column
only) copies the given mask instead of running a model.

Two kinds of error:

* a subject's bad input (:class:`~spinecensus.io.InputError`: an unreadable, implausible or
  missing image or mask) is recorded in ``<subject>.failed.json`` (``subject``, ``rule``,
  ``error`` in one line, ``traceback``) and the batch goes on;
* everything else (a bug, out-of-memory, a CUDA error, missing or wrong-task weights, an
  unknown method) fails the job with a traceback in its log, so Snakemake stops or the
  cluster profile resubmits it with more memory.  Out of GPU memory first retries the
  subject with half the batch size (down to one slice) inside the job.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus import __version__
from spinecensus.census.environment import one_line, process_age_s
from spinecensus.io import InputError, write_json


def default_weights() -> Path:
    """The shipped segmentation weights, named explicitly (never a glob that could pick a
    labeler or the real-MRI fine-tune)."""
    from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS

    return DEFAULT_SEGMENTATION_WEIGHTS


def _load_segmenter(
    method: str,
    weights: str,
    device: str,
    threads: int,
    batch_size: int | str,
    model_options: Mapping[str, Any] | None,
    precision: str = "auto",
) -> tuple[Any, str, float]:
    """``(model or None, model name, load seconds)``; ``None`` for ``method="ground_truth"``."""
    model = None
    model_name = "ground_truth"
    load_s = 0.0
    if method == "model":
        t = time.perf_counter()
        from spinecensus.segment import weights as weights_mod

        wpath = Path(weights) if weights else default_weights()
        extra = {k: v for k, v in (model_options or {}).items() if v not in (None, "")}
        extra.setdefault("precision", precision)
        model = weights_mod.load_model(
            wpath,
            device=device,
            threads=threads,
            batch_size=batch_size,
            task="segmentation",
            **extra,
        )
        model_name = wpath.name
        load_s = time.perf_counter() - t
    elif method != "ground_truth":
        raise ValueError(f"unknown segmentation method {method!r} (model | ground_truth)")
    return model, model_name, load_s


def _load_labeler(
    labeler_weights: str, device: str, threads: int, batch_size: int | str, precision: str
) -> tuple[Any, str | None, float]:
    """``(labeler, weights file name, load seconds)``; ``(None, None, 0.0)`` without one."""
    if not labeler_weights:
        return None, None, 0.0
    t = time.perf_counter()
    from spinecensus.segment import weights as weights_mod

    lpath = weights_mod.weights_file(labeler_weights, "labeling")
    labeler = weights_mod.load_model(
        lpath,
        device=device,
        threads=threads,
        batch_size=batch_size,
        task="labeling",
        precision=precision,
    )
    return labeler, lpath.name, time.perf_counter() - t


def is_gpu_out_of_memory(exc: BaseException) -> bool:
    """``torch.OutOfMemoryError`` (alias ``torch.cuda.OutOfMemoryError``), which torch raises
    for accelerator memory only; checked by name, since torch may not be imported."""
    return type(exc).__name__ == "OutOfMemoryError"


def halving_batch_on_gpu_oom(model: Any, predict: Any, scan: Any, *args: Any) -> Any:
    """``predict(scan.data, scan.spacing_mm, *args)``; out of GPU memory, retry with half
    ``model.batch_size`` (slices per forward pass) until one slice, then re-raise."""
    while True:
        try:
            return predict(scan.data, scan.spacing_mm, *args)
        except Exception as exc:
            if not is_gpu_out_of_memory(exc) or model.batch_size <= 1:
                raise
            import torch

            torch.cuda.empty_cache()
            model.batch_size = max(1, model.batch_size // 2)
            print(
                f"segment: out of GPU memory; retrying with batch size {model.batch_size}",
                file=sys.stderr,
            )


def _segment_subject(
    subject: str,
    image: str,
    semantic_path: str | None,
    model: Any,
    labeler: Any,
    out: Path,
    gzip_level: int = 1,
) -> dict[str, Any]:
    """Segment one subject into ``out``; its record (``ok``, timings in seconds or ``error``,
    ``input_sha256`` of the image file: the analysis takes its provenance from here).

    A bad input of this subject (:class:`InputError`) is caught here:
    ``out/<subject>.failed.json`` is written instead of the mask and the batch goes on.
    Any other exception propagates and fails the job.
    """
    from spinecensus.census.analyse_job import file_sha256
    from spinecensus.io import load_mask, save_like
    from spinecensus.io.checks import load_checked

    t0 = time.perf_counter()
    rec: dict[str, Any] = {"subject": subject, "ok": False}
    try:
        if not image:
            raise InputError(None, "no image path in the sample sheet")
        # provenance of the analysis (None when missing); the read leaves the bytes in the
        # page cache, where nibabel decodes them from
        rec["input_sha256"] = file_sha256(image)
        # io validation + plausibility checks (spacing, sagittal axis, size)
        scan = load_checked(image)
        t1 = time.perf_counter()
        if model is not None:
            semantic = halving_batch_on_gpu_oom(model, model.predict_semantic, scan)
        else:
            if not semantic_path:
                raise InputError(image, "ground_truth method needs a semantic mask")
            gt = load_mask(semantic_path)
            if gt.data.shape != scan.data.shape:
                raise InputError(
                    semantic_path,
                    f"mask shape {gt.data.shape} differs from the image's {scan.data.shape}",
                )
            semantic = gt.data
        votes = None
        if labeler is not None:
            votes = halving_batch_on_gpu_oom(
                labeler, labeler.predict_structure_classes, scan, np.asarray(semantic) > 0
            )
        t2 = time.perf_counter()
        # the QC background and the vote map first: the mask's presence marks the subject done
        from spinecensus.census.subject_qc import write_qc_slice

        write_qc_slice(out / f"{subject}.qc.npz", scan.data, semantic)
        if votes is not None:
            save_like(votes, scan, out / f"{subject}.labeler.nii.gz", np.uint8, gzip_level)
        mask = np.asarray(semantic, dtype=np.uint8)
        save_like(mask, scan, out / f"{subject}.nii.gz", np.uint8, gzip_level)
        rec.update(ok=True, read_s=t1 - t0, inference_s=t2 - t1, write_s=time.perf_counter() - t2)
    except InputError as exc:  # one subject's bad input must not stop the batch
        rec["error"] = one_line(exc)
        write_json(
            {
                "subject": subject,
                "rule": "segment",
                "error": rec["error"],
                "traceback": traceback.format_exc(limit=5),
            },
            out / f"{subject}.failed.json",
        )
        print(f"segment: {subject}: FAILED: {rec['error']}", file=sys.stderr)
    rec["seconds"] = time.perf_counter() - t0
    print(
        f"segment: {subject}: {'ok' if rec['ok'] else 'failed'} ({rec['seconds']:.2f} s)",
        file=sys.stderr,
    )
    return rec


def segment(
    subjects: Sequence[str],
    images: Sequence[str],
    out_dir: str | os.PathLike[str],
    method: str = "model",
    semantics: Sequence[str] | None = None,
    weights: str = "",
    device: str = "cpu",
    batch_size: int | str = 16,
    threads: int = 1,
    model_options: Mapping[str, Any] | None = None,
    labeler_weights: str = "",
    precision: str = "auto",
    gzip_level: int = 1,
) -> dict[str, Any]:
    """Segment a batch of subjects, loading the model once; per-subject failures captured.

    ``model_options``: extra :func:`spinecensus.segment.weights.load_model` arguments from the
    config (``layout``, ``normalisation``; ``amp``, the former name of ``precision``); empty
    values are left to the weights' sidecar.
    ``precision``: ``auto`` (bf16 where the device runs it natively), ``fp32`` or ``bf16``
    (config ``segmentation.precision``).  ``batch_size``: slices per forward pass or
    ``"auto"`` (from free GPU memory).  ``gzip_level``: of the written masks (0 = stored).

    ``labeler_weights``: the small-FOV multiclass labeler (``"shipped"`` =
    ``spinecensus/weights/labeling.pt``, or a ``.pt``/``.onnx`` path; ``""`` = none).  When
    given, ``out_dir/<subject>.labeler.nii.gz`` holds its per-voxel vote (union class of
    ``labels.all_names()``, 1-based; 0 outside the segmented spine) for the analysis to
    turn into per-instance names (the instances only exist after the split, which needs no
    torch, so the vote map is what crosses from this GPU-side job to the analysis).

    Writes ``out_dir/<subject>.nii.gz`` (uint8 semantic mask on the input's grid and affine)
    and ``out_dir/<subject>.qc.npz`` (the QC picture's image slice,
    :func:`spinecensus.census.subject_qc.write_qc_slice`), or ``out_dir/<subject>.failed.json``
    for each subject, then ``out_dir/batch.json`` with timings (seconds): process age at
    start, model load, per-subject read/inference/write, and each image's sha256.
    Returns the ``batch.json`` content.
    """
    started = time.perf_counter()
    age_at_start = process_age_s()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(images) != len(subjects) or (semantics is not None and len(semantics) != len(subjects)):
        raise ValueError("subjects, images (and semantics) must have the same length")
    model, model_name, load_s = _load_segmenter(
        method, weights, device, threads, batch_size, model_options, precision
    )
    labeler, labeler_name, labeler_load_s = _load_labeler(
        labeler_weights, device, threads, batch_size, precision
    )
    if labeler is not None:
        load_s += labeler_load_s
    records = [
        _segment_subject(
            subject,
            images[i],
            semantics[i] if semantics is not None else None,
            model,
            labeler,
            out,
            gzip_level,
        )
        for i, subject in enumerate(subjects)
    ]
    info = {
        "method": method,
        "model": model_name,
        "labeler": labeler_name,
        "device": device,
        "precision": getattr(model, "precision", None),
        "batch_size": getattr(model, "batch_size", None),
        "pipeline_version": __version__,
        "process_age_at_start_s": age_at_start,
        "model_load_s": load_s,
        "total_s": time.perf_counter() - started,
        "subjects": records,
    }
    write_json(info, out / "batch.json")
    return info
