"""One subject's analysis: semantic mask -> instances, names, volumes, QC PNG.

Runs without torch; the workflow's ``analyse_<batch>`` rules call it for every subject of a
segmentation batch in one process (:mod:`spinecensus.census.analyse_batch`), and
``python -m spinecensus.census analyse`` for one subject.  Reads the subject's mask (and the
labeler's vote map, if any) from its batch's segmentation folder and writes
``results/subjects/<subject>/``: the declared outputs ``summary.json``, ``structures.parquet``,
``morphometrics.parquet`` and ``qc.png`` always, the NIfTI/JSON side files on success,
``failed.json`` on failure.

Failure handling: a subject's bad input (:class:`~spinecensus.io.InputError`) and a failure
recorded by the ``segment`` job become ``failed.json`` (``subject``, ``rule``, ``error``) and a
``summary.json`` with ``"status": "failed"``; the job exits 0 so Snakemake does not stop the
cohort, and the aggregate lists the failure in ``failures.parquet``.  Any other exception (a
bug, out-of-memory) is a fault of the program or the machine, not of the subject: it fails
the job with its traceback in the log.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus import __version__
from spinecensus.census.environment import one_line, process_age_s
from spinecensus.io import InputError, atomic_path, write_json

#: per-subject files written by :func:`analyse` besides its declared outputs; removed
#: before every run so a subject that now fails never keeps stale results of an earlier run
SIDE_FILES = ("semantic.nii.gz", "instances.nii.gz", "labels.nii.gz", "labels.json", "failed.json")


class _Failed(Exception):
    def __init__(self, rule: str, error: str):
        super().__init__(error)
        self.rule = rule
        self.error = error


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """sha256 of a file, or of a folder's files (sorted names + contents, e.g. DICOM)."""
    p = Path(path)
    h = hashlib.sha256()
    try:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            if p.is_dir():
                h.update(str(q.relative_to(p)).encode())
            with open(q, "rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _link_or_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def label_ids() -> dict[str, int]:
    """Class ids of ``labels.nii.gz``: every name of every variant, cranio-caudal, from 1."""
    from spinecensus.anatomy import labels

    names = sorted({n for v in labels.VARIANTS for n in labels.structures(v)}, key=labels.sort_key)
    return {n: i + 1 for i, n in enumerate(names)}


def _label_volume(instances: np.ndarray, id_to_name: Mapping[int, str]) -> np.ndarray:
    """Instance mask -> label-class mask (ids of :func:`label_ids`), by a lookup table."""
    ids = label_ids()
    lut = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.uint8)
    for iid, name in id_to_name.items():
        if 0 < int(iid) < len(lut):
            lut[int(iid)] = ids.get(name, 0)
    return lut[instances]


def _analysis_arrays(analysis: Any, out: Path) -> tuple[np.ndarray, dict[int, str]]:
    """Canonical instance array and ``{id: name}`` of an analysis (read back if not exposed)."""
    from spinecensus.io import load_mask

    inst = None
    for obj in (analysis.split, analysis):
        for attr in ("instances", "instance_mask"):
            if inst is None and getattr(obj, attr, None) is not None:
                inst = np.asarray(getattr(obj, attr))
    if inst is None:
        inst = load_mask(out / "instances.nii.gz").data
    names = None
    for obj in (analysis.labeling, analysis):
        for attr in ("id_to_name", "names"):
            if names is None and isinstance(getattr(obj, attr, None), Mapping):
                names = {int(k): str(v) for k, v in getattr(obj, attr).items()}
    if names is None:
        names = {int(k): v for k, v in json.loads((out / "labels.json").read_text()).items()}
    return inst, names


def read_batch_info(seg: Path) -> dict[str, Any]:
    """``seg/batch.json`` (the segment job's record), or ``{}`` when absent or unreadable."""
    try:
        return json.loads((seg / "batch.json").read_text())
    except (OSError, ValueError):
        return {}


def image_sha256(batch_info: Mapping[str, Any], subject: str, image: str | None) -> str | None:
    """The sha256 of ``subject``'s image as the segment job recorded it (``batch.json``);
    hashed here only for a batch written before the segment job recorded it."""
    for rec in batch_info.get("subjects") or []:
        if rec.get("subject") == subject and "input_sha256" in rec:
            return rec["input_sha256"]
    return file_sha256(image) if image and Path(image).exists() else None


def _provenance(
    subject: str, batch_info: Mapping[str, Any], image: str | None, sha256: str | None
) -> dict[str, Any]:
    """The summary fields every outcome carries: versions, the segmentation batch's method,
    model and labeler (``seg/batch.json``), the input image and its sha256."""
    return {
        "subject": subject,
        "pipeline_version": __version__,
        "segmentation_method": batch_info.get("method"),
        "model": batch_info.get("model"),
        "labeler": batch_info.get("labeler"),
        "image": image,
        "input_sha256": sha256,
    }


def _segmentation_path(seg: Path, subject: str) -> Path:
    """The subject's semantic mask in its batch folder; :class:`_Failed` when the
    ``segment`` job recorded a failure or wrote nothing for it."""
    failed = seg / f"{subject}.failed.json"
    if failed.exists():
        rec = json.loads(failed.read_text())
        raise _Failed(rec.get("rule", "segment"), rec.get("error", "segmentation failed"))
    sem_path = seg / f"{subject}.nii.gz"
    if not sem_path.exists():
        raise _Failed("segment", f"{sem_path}: no segmentation output for this subject")
    return sem_path


def _write_instances_and_labels(
    analysis: Any, sem: Any, sem_path: Path, out: Path, gzip_level: int
) -> tuple[np.ndarray, dict[int, str]]:
    """``instances.nii.gz``, ``labels.json``, ``semantic.nii.gz`` and ``labels.nii.gz`` on the
    mask's stored grid; returns the canonical instance array and ``{id: name}``."""
    from spinecensus.io import save_like

    # instances + labels.json as subject_analysis.write_subject_outputs writes them, but the
    # summary only once at the end: summary.json present <=> the subject is complete
    save_like(analysis.split.instances, sem, out / "instances.nii.gz", np.uint16, gzip_level)
    write_json(
        {str(i): n for i, n in sorted(analysis.labeling.id_to_name.items())},
        out / "labels.json",
    )
    _link_or_copy(sem_path, out / "semantic.nii.gz")
    inst, names = _analysis_arrays(analysis, out)
    save_like(_label_volume(inst, names), sem, out / "labels.nii.gz", np.uint8, gzip_level)
    return inst, names


def _write_morphometrics(
    out: Path,
    subject: str,
    inst: np.ndarray,
    names: dict[int, str],
    spacing_mm: tuple[float, float, float],
    boxes: list[tuple[slice, ...] | None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, int]]:
    """``morphometrics.parquet`` of the canonical instances (mm, degrees;
    :func:`spinecensus.measure.morphometrics.measure_columns`, with the split's ``boxes`` of
    ``inst``: no pandas, no second search for the instances); returns the alignment
    (lordosis, kyphosis, segment angles, degrees) for ``summary.json``, and the measured
    points (mm, canonical axes) and the Genant grades >= 1 for the QC picture.
    An exception here is a fault of the program (the masks already passed the split), so
    it propagates."""
    from spinecensus.census.morphometrics_tables import write_subject_morphometrics
    from spinecensus.measure.morphometrics import columns_arrow, measure_columns

    sp = tuple(float(v) for v in spacing_mm)
    col, spine, points = measure_columns(inst, names, sp, boxes)
    write_subject_morphometrics(subject, columns_arrow(col), out / "morphometrics.parquet")
    g = col["genant_grade"]
    graded = np.flatnonzero(np.ma.filled(g, 0) > 0).tolist()
    grades = {str(col["label"][k]): int(g[k]) for k in graded}
    return {k: v for k, v in spine.items() if k != "definitions"}, points, grades


def _write_subject_qc(
    out: Path,
    subject: str,
    image: str | None,
    inst: np.ndarray,
    names: dict[int, str],
    spacing_mm: tuple[float, float, float],
    summary: Mapping[str, Any],
    seg: Path,
    landmarks: Mapping[str, np.ndarray] | None = None,
    grades: Mapping[str, int] | None = None,
) -> None:
    """``qc.png``: the mid-sagittal overlay on the image slice the segment job stored while
    it had the image in memory (``seg/<subject>.qc.npz``); without that file (batches of
    older runs) the image is decoded here, and without a readable image the mask alone.
    ``landmarks``: the measured bodies' points (mm), drawn as heights and endplates;
    ``grades``: Genant grades, shown beside the names of fractured bodies."""
    from spinecensus.census import subject_qc
    from spinecensus.io import load_scan

    qc_slice = subject_qc.read_qc_slice(seg / f"{subject}.qc.npz")
    img = None
    if qc_slice is None and image and Path(image).exists():
        try:
            img = load_scan(image, check=False).data
        except InputError:  # the QC picture falls back to the mask alone
            img = None
    subject_qc.subject_png(
        out / "qc.png",
        inst,
        names,
        spacing_mm,
        image=img,
        title=f"{subject}: {summary.get('transitional_status', '?')}",
        qc_slice=qc_slice,
        landmarks=landmarks,
        grades=grades,
    )


def _record_failure(
    out: Path, subject: str, exc: Exception, base: Mapping[str, Any], qc_png: bool
) -> dict[str, Any]:
    """Replace the subject's outputs by its failure (called while ``exc`` is handled):
    ``failed.json``, an empty ``structures.parquet``, a failure card; returns the summary."""
    from spinecensus.census import morphometrics_tables, tables

    rule = exc.rule if isinstance(exc, _Failed) else "analyse"
    error = exc.error if isinstance(exc, _Failed) else one_line(exc)
    for name in SIDE_FILES:
        (out / name).unlink(missing_ok=True)
    record = {"subject": subject, "rule": rule, "error": error}
    write_json(record, out / "failed.json")
    tables.write_subject_structures(subject, [], out / "structures.parquet")
    morphometrics_tables.write_subject_morphometrics(subject, None, out / "morphometrics.parquet")
    if qc_png:
        from spinecensus.census import subject_qc

        subject_qc.failure_png(out / "qc.png", subject, rule, error)
    summary = dict(base, status="failed", rule=rule, error=error)
    print(f"analyse: {subject}: FAILED in {rule}: {error}", file=sys.stderr)
    if not isinstance(exc, _Failed):
        traceback.print_exc(file=sys.stderr)
    return summary


def analyse(
    subject: str,
    seg_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    image: str | None = None,
    qc_png: bool = True,
    field_of_view: str = "whole_spine",
    gzip_level: int = 1,
    batch_info: Mapping[str, Any] | None = None,
    analysis_key: str | None = None,
    startup_s: float | None = None,
    input_sha256: str | None = None,
) -> dict[str, Any]:
    """Split, label and measure one subject's semantic mask.

    A subject's bad input (its segmentation failed, an :class:`InputError` such as an
    unreadable mask or an image without a spine) is recorded as that subject's failure; any
    other exception (a bug, out-of-memory) propagates and fails the job.

    ``field_of_view``: ``"whole_spine"`` (count from C2) or ``"lumbar"`` (no C2 in view:
    levels named upward from the sacrum; see ``counting.count_labels``).  ``gzip_level``:
    of the NIfTI side files (``io.save_like``).  ``batch_info``: ``seg_dir/batch.json``
    already read (a batch of subjects reads it once).  ``analysis_key`` is recorded in the
    summary (:func:`spinecensus.census.analyse_batch.analysis_key`).  ``startup_s``: the
    process start-up (interpreter + imports, s) to record as this subject's
    ``process_age_at_start_s``; None = this process's age now (one subject per process).
    ``input_sha256``: the image's, when the caller has it (else :func:`image_sha256`).

    Reads ``seg_dir/<subject>.nii.gz`` (or propagates ``seg_dir/<subject>.failed.json``).
    Always writes the declared outputs ``out_dir/summary.json`` (``"status": "ok"`` or
    ``"failed"``; on success with the spine's ``alignment``), ``out_dir/structures.parquet``
    and ``out_dir/morphometrics.parquet`` (both empty on failure) and ``out_dir/qc.png``
    (a failure card on failure); on success also ``semantic.nii.gz``, ``instances.nii.gz``,
    ``labels.nii.gz`` (label class per voxel, :func:`label_ids`) and ``labels.json``, on
    failure ``failed.json`` (``subject``, ``rule``, ``error``).  Returns the summary.
    """
    from spinecensus.census import tables

    t_start = time.perf_counter()
    age_at_start = process_age_s() if startup_s is None else startup_s
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (*SIDE_FILES, "summary.json"):
        (out / name).unlink(missing_ok=True)
    seg = Path(seg_dir)
    info = read_batch_info(seg) if batch_info is None else batch_info
    sha = input_sha256 if input_sha256 is not None else image_sha256(info, subject, image)
    base = _provenance(subject, info, image, sha)
    compute_s = measure_s = 0.0
    try:
        sem_path = _segmentation_path(seg, subject)
        from spinecensus.census.subject_analysis import analyse_semantic
        from spinecensus.io import load_mask

        sem = load_mask(sem_path)
        votes_path = seg / f"{subject}.labeler.nii.gz"
        votes = load_mask(votes_path).data if votes_path.exists() else None
        t0 = time.perf_counter()
        analysis = analyse_semantic(
            np.asarray(sem.data), sem, labeler_votes=votes, field_of_view=field_of_view
        )
        compute_s = time.perf_counter() - t0
        if analysis.split.n_instances == 0:
            # nothing found (a non-spine image, an empty segmentation): no result to
            # tabulate, so it is a per-subject failure listed in failures.parquet
            raise InputError(
                image or sem_path,
                f"{analysis.split.invalid_reason}; no vertebrae or discs found "
                "(not a spine MRI, or the segmentation found nothing)",
            )
        inst, names = _write_instances_and_labels(analysis, sem, sem_path, out, gzip_level)
        tables.write_subject_structures(subject, analysis.structures, out / "structures.parquet")
        t1 = time.perf_counter()
        # the split's boxes describe its own instance array (not one read back from disk)
        boxes = analysis.split.boxes if inst is analysis.split.instances else None
        alignment, points, grades = _write_morphometrics(
            out, subject, inst, names, sem.spacing_mm, boxes or None
        )
        measure_s = time.perf_counter() - t1
        summary = dict(analysis.summary)
        summary.update(base, status="ok", alignment=alignment)
        if qc_png:
            _write_subject_qc(
                out, subject, image, inst, names, sem.spacing_mm, summary, seg, points, grades
            )
    except (_Failed, InputError) as exc:  # a subject's bad input; anything else fails the job
        summary = _record_failure(out, subject, exc, base, qc_png)
    summary["seconds"] = time.perf_counter() - t_start
    summary["compute_s"] = compute_s
    summary["measure_s"] = measure_s
    summary["process_age_at_start_s"] = age_at_start
    if analysis_key is not None:
        summary["analysis_key"] = analysis_key
    write_json(summary, out / "summary.json")
    return summary
