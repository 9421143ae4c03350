"""Workflow-facing functions: one per Snakemake rule, plus sample-sheet handling.

Rules call these through ``python -m spinecensus.census.cohort <command>`` (one process per job):

* ``segment`` — a *batch* of subjects (a deterministic chunk of the sorted subject list,
  :func:`make_batches`): the model is loaded once per batch, then every subject is read,
  segmented and written to ``<batch dir>/<subject>.nii.gz`` (semantic mask 0/1/2 on the
  input grid and affine).  ``method="ground_truth"`` (synthetic cohorts and sheets with a
  ``semantic`` column only) copies the generated mask instead of running a model.
* ``analyse`` — one subject: instance splitting + labeling + volumes (no torch import),
  writing NIfTI/JSON/Parquet outputs and the QC PNG into ``results/subjects/<subject>/``.
* ``aggregate`` — the cohort tables (:mod:`spinecensus.census.tables`).
* ``cohort-qc`` — the cohort figures (:mod:`spinecensus.census.qc`).

Failure handling: every per-subject step catches *any* exception of that subject
(:class:`~spinecensus.io.InputError` and everything else), records ``subject, rule, error``
(one line) and carries on with the next subject; the job still exits 0 so Snakemake does not
stop the cohort.  A subject whose segmentation failed gets a ``<subject>.failed.json`` in the
batch directory; ``analyse`` propagates it into ``results/subjects/<subject>/failed.json`` and a
``summary.json`` with ``"status": "failed"``, and the aggregate collects those into
``failures.parquet``.  Configuration errors (bad weights file, bad sheet) are *not* caught:
they concern every subject and must stop the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spinecensus import __version__
from spinecensus.io import InputError, atomic_path, write_json

#: a subject ID must be usable as a directory name on any file system and in a shell:
#: letters, digits, ``.``, ``_``, ``-``; starting with a letter or digit; at most 64 chars
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

#: per-subject files written by :func:`analyse_subject` besides its declared outputs; removed
#: before every run so a subject that now fails never keeps stale results of an earlier run
SIDE_FILES = ("semantic.nii.gz", "instances.nii.gz", "labels.nii.gz", "labels.json", "failed.json")


class SampleSheetError(ValueError):
    """A problem with the sample sheet as a whole (stops the run before any job)."""


# --------------------------------------------------------------------------- sample sheet


def _delimiter(path: Path, head: str) -> str:
    """Tab or comma: the one that occurs in the header line (extension breaks ties)."""
    first = head.splitlines()[0] if head else ""
    tabs, commas = first.count("\t"), first.count(",")
    if tabs != commas:
        return "\t" if tabs > commas else ","
    return "," if path.suffix.lower() == ".csv" else "\t"


def read_sheet(path: str | os.PathLike[str]) -> Any:
    """Read a sample sheet (TSV or CSV, UTF-8) as a pandas DataFrame, IDs checked.

    ``subject`` and ``image`` are read as strings; covariates keep pandas' inferred types.
    Raises :class:`SampleSheetError` naming the file (and row) for unreadable sheets, missing
    columns, empty/duplicate/unsafe subject IDs.  Row numbers count the header as row 1, so
    they match what a spreadsheet shows.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise SampleSheetError(f"sample sheet {p}: file does not exist")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SampleSheetError(
            f"sample sheet {p}: not UTF-8 text (invalid byte at row {line}); save it as UTF-8"
        ) from None
    sep = _delimiter(p, text[:4096])
    try:
        import io as _io

        df = pd.read_csv(
            _io.StringIO(text),
            sep=sep,
            dtype={"subject": "string", "image": "string", "semantic": "string"},
            comment=None,
            skip_blank_lines=True,
        )
    except Exception as exc:  # pandas raises ParserError, EmptyDataError, ...
        raise SampleSheetError(f"sample sheet {p}: cannot be parsed ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("subject", "image"):
        if col not in df.columns:
            raise SampleSheetError(
                f"sample sheet {p}: missing column {col!r} (columns: {', '.join(df.columns)})"
            )
    check_subject_ids(df["subject"].tolist(), p)
    df["subject"] = df["subject"].astype(str)
    return df


def check_subject_ids(subjects: Sequence[Any], sheet: str | os.PathLike[str] = "<sheet>") -> None:
    """Raise :class:`SampleSheetError` for an empty, unsafe or duplicate subject ID.

    The message names the row (header = row 1) and the ID.
    """
    seen: dict[str, int] = {}
    for i, sid in enumerate(subjects):
        row = i + 2
        if sid is None or (isinstance(sid, float) and np.isnan(sid)) or str(sid).strip() == "":
            raise SampleSheetError(f"sample sheet {sheet}: row {row}: empty subject ID")
        s = str(sid)
        if s == "<NA>" or not SAFE_ID.match(s):
            raise SampleSheetError(
                f"sample sheet {sheet}: row {row}: subject ID {s!r} is not filesystem-safe "
                "(allowed: letters, digits, '.', '_', '-', starting with a letter or digit, "
                "at most 64 characters)"
            )
        if s in seen:
            raise SampleSheetError(
                f"sample sheet {sheet}: row {row}: duplicate subject ID {s!r} "
                f"(first seen in row {seen[s]})"
            )
        seen[s] = row


def resolve_paths(df: Any, sheet: str | os.PathLike[str], columns=("image", "semantic")) -> Any:
    """Return a copy of ``df`` with path columns made absolute (relative to the sheet's folder)."""
    import pandas as pd

    base = Path(sheet).resolve().parent
    out = df.copy()
    for col in columns:
        if col in out.columns:
            # object dtype: pandas' string dtype would turn None back into NaN (a float),
            # which breaks `path or ""` in the Snakefile for an empty cell
            out[col] = pd.Series(
                [
                    None if v is None or str(v) in ("", "<NA>", "nan") else str(base / str(v))
                    for v in out[col].tolist()
                ],
                index=out.index,
                dtype=object,
            )
    return out


def make_batches(subjects: Sequence[str], per_job: int) -> dict[str, list[str]]:
    """Deterministic batches: consecutive chunks of the *sorted* subject list.

    Names are ``b00000``, ``b00001``, ...  Deterministic, so the DAG is static (no
    checkpoint); note that inserting a subject shifts the chunks after it (those batches
    rerun).
    """
    per_job = max(1, int(per_job))
    ordered = sorted(subjects)
    return {
        f"b{i // per_job:05d}": ordered[i : i + per_job] for i in range(0, len(ordered), per_job)
    }


def batch_of(batches: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Inverse of :func:`make_batches`: subject -> batch name."""
    return {s: b for b, subs in batches.items() for s in subs}


def synthetic_subject_ids(n: int) -> list[str]:
    """Subject IDs of a synthetic cohort of ``n`` (as ``spinecensus.synthetic`` names them)."""
    try:
        from spinecensus.synthetic import generator as synthetic

        fn = getattr(synthetic, "subject_ids", None) or getattr(synthetic, "subject_id", None)
        if fn is not None and fn.__name__ == "subject_ids":
            return list(fn(n))
        if fn is not None:
            return [fn(i) for i in range(n)]
    except ImportError:
        pass
    return [f"S{i:04d}" for i in range(n)]


# --------------------------------------------------------------------------- helpers


def prepare_job_environment(repo: str | os.PathLike[str]) -> None:
    """Make jobs' ``python -m spinecensus.census.cohort`` find this interpreter and package.

    Called by the Snakefile at parse time: puts the running interpreter's ``bin`` first on
    ``PATH`` (so ``.venv/bin/snakemake`` works without activating the venv) and ``repo`` on
    ``PYTHONPATH`` (so conda environments, which only hold the dependencies, import the
    checkout's sources).  A conda environment activated per job prepends its own ``bin``.
    """
    env = os.environ
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(p for p in (str(repo), env.get("PYTHONPATH", "")) if p),
    )


def one_line(exc: BaseException) -> str:
    """An exception as one clear line (InputError already names file and problem)."""
    msg = str(exc).strip().replace("\n", " | ")
    if isinstance(exc, InputError):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _process_age_s() -> float | None:
    """Seconds since this process started (interpreter start-up + imports included).

    Linux: ``/proc/uptime`` minus the process start in clock ticks since boot (both 10 ms
    resolution).  ``psutil.Process().create_time()`` is not used first: it adds the boot time,
    which the kernel reports in whole seconds, so its ages are off by up to a second.
    """
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:  # psutil missing or restricted /proc: timing is informative only
        return None


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


def default_weights() -> Path:
    """The shipped segmentation weights (``spinecensus/weights/``)."""
    from spinecensus.segment import model

    shipped = getattr(model, "DEFAULT_SEGMENTATION_WEIGHTS", None)
    if shipped is not None and Path(shipped).exists():
        return Path(shipped)
    wdir = Path(__file__).parents[1] / "weights"
    cands = sorted(wdir.glob("*seg*.pt")) + sorted(wdir.glob("*.pt")) + sorted(wdir.glob("*.onnx"))
    if not cands:
        raise FileNotFoundError(
            f"no shipped segmentation weights in {wdir}; set segmentation.weights in the config "
            "or segmentation.method: ground_truth for synthetic cohorts"
        )
    return cands[0]


# --------------------------------------------------------------------------- synthetic


def _synth_one(args: tuple) -> dict[str, Any]:
    """Generate and write synthetic subject ``index`` (a worker of :func:`synthesize`)."""
    from spinecensus.synthetic import generator as synthetic

    out, index, seed, lumbarization, sacralization, cfg = args
    anomaly, sub_seed = synthetic._cohort_draw(seed, index, lumbarization, sacralization)
    sub = synthetic.generate_subject(sub_seed, anomaly, cfg, subject=synthetic.subject_id(index))
    row = synthetic.write_subject(sub, out, cfg.storage_axcodes)
    for key in ("image", "semantic", "instances", "labels"):
        row[key] = Path(row[key]).relative_to(out).as_posix()
    return row


def synthesize(
    out_dir: str | os.PathLike[str],
    n: int,
    seed: int,
    lumbarization: float = 0.066,
    sacralization: float = 0.036,
    preset: str = "default",
    workers: int = 1,
) -> Path:
    """Generate the synthetic demo cohort (``spinecensus synth`` layout) and check that
    its subject IDs are the ones the workflow planned (:func:`synthetic_subject_ids`).

    With ``workers > 1`` subjects are generated in a process pool: subject ``i`` depends only
    on (seed, i, prevalences, config) (``synthetic.generate_cohort``), so the cohort is
    identical to ``synthetic.write_cohort``'s, only faster on several cores.
    """
    from spinecensus.synthetic import generator as synthetic

    cfg = synthetic.SyntheticConfig()
    if preset != "default":
        factory = getattr(synthetic.SyntheticConfig, preset, None)
        if factory is None:
            raise ValueError(f"spinecensus.synthetic.generator has no {preset!r} preset")
        cfg = factory()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parallel_api = all(
        hasattr(synthetic, f) for f in ("_cohort_draw", "generate_subject", "write_subject")
    ) and hasattr(synthetic, "SAMPLE_COLUMNS")
    if workers > 1 and n > 1 and parallel_api:
        from concurrent.futures import ProcessPoolExecutor

        jobs = [(out, i, seed, lumbarization, sacralization, cfg) for i in range(n)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_synth_one, jobs, chunksize=max(1, n // (4 * workers))))
        sheet = out / "samples.tsv"
        with atomic_path(sheet) as tmp, open(tmp, "w", newline="") as fh:
            import csv

            wr = csv.DictWriter(
                fh, fieldnames=synthetic.SAMPLE_COLUMNS, delimiter="\t", lineterminator="\n"
            )
            wr.writeheader()
            wr.writerows(rows)
    else:
        sheet = Path(
            synthetic.write_cohort(
                out,
                n=n,
                seed=seed,
                lumbarization=lumbarization,
                sacralization=sacralization,
                config=cfg,
            )
        )
    got = sorted(read_sheet(sheet)["subject"])
    want = sorted(synthetic_subject_ids(n))
    if got != want:
        raise RuntimeError(
            f"{sheet}: synthetic subject IDs {got[:3]}... differ from the planned {want[:3]}..."
        )
    return sheet


# --------------------------------------------------------------------------- segment


def segment_batch(
    subjects: Sequence[str],
    images: Sequence[str],
    out_dir: str | os.PathLike[str],
    method: str = "model",
    semantics: Sequence[str] | None = None,
    weights: str = "",
    device: str = "cpu",
    batch_size: int = 16,
    threads: int = 1,
    model_options: Mapping[str, Any] | None = None,
    labeler_weights: str = "",
) -> dict[str, Any]:
    """Segment a batch of subjects, loading the model once; per-subject failures captured.

    ``model_options``: extra :func:`spinecensus.segment.model.load_model` arguments from the config
    (``amp``, ``layout``, ``normalisation``); empty values are left to the weights' sidecar.

    ``labeler_weights``: the small-FOV multiclass labeler (``"shipped"`` =
    ``spinecensus/weights/labeling.pt``, or a ``.pt``/``.onnx`` path; ``""`` = none).  When
    given, ``out_dir/<subject>.labeler.nii.gz`` holds its per-voxel vote (union class of
    ``labels.all_names()``, 1-based; 0 outside the segmented spine) for the analysis to
    turn into per-instance names (the instances only exist after the split, which needs no
    torch, so the vote map is what crosses from this GPU-side job to the analysis).

    Writes ``out_dir/<subject>.nii.gz`` (uint8 semantic mask on the input's grid and affine)
    or ``out_dir/<subject>.failed.json`` for each subject, then ``out_dir/batch.json`` with
    timings (seconds): process age at start, model load, per-subject read/inference/write.
    Returns the ``batch.json`` content.
    """
    from spinecensus.io import load_mask, save_like
    from spinecensus.io.checks import load_checked

    started = time.perf_counter()
    age_at_start = _process_age_s()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(images) != len(subjects) or (semantics is not None and len(semantics) != len(subjects)):
        raise ValueError("subjects, images (and semantics) must have the same length")
    model = None
    model_name = "ground_truth"
    load_s = 0.0
    if method == "model":
        t = time.perf_counter()
        from spinecensus.segment import model as model_mod

        wpath = Path(weights) if weights else default_weights()
        extra = {k: v for k, v in (model_options or {}).items() if v not in (None, "")}
        model = model_mod.load_model(
            wpath, device=device, threads=threads, batch_size=batch_size, **extra
        )
        model_name = wpath.name
        load_s = time.perf_counter() - t
    elif method != "ground_truth":
        raise ValueError(f"unknown segmentation method {method!r} (model | ground_truth)")
    labeler = None
    labeler_name = None
    if labeler_weights:
        t = time.perf_counter()
        from spinecensus.segment import model as model_mod

        lpath = model_mod.weights_file(labeler_weights, "labeling")
        labeler = model_mod.load_model(lpath, device=device, threads=threads, batch_size=batch_size)
        if labeler.spec.task != "labeling":
            raise ValueError(
                f"{lpath}: labeling.weights must be a labeler, not {labeler.spec.task}"
            )
        labeler_name = lpath.name
        load_s += time.perf_counter() - t

    records = []
    for i, subject in enumerate(subjects):
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"subject": subject, "ok": False}
        try:
            if not images[i]:
                raise InputError(None, "no image path in the sample sheet")
            # io validation + plausibility checks (spacing, sagittal axis, size)
            scan = load_checked(images[i])
            t1 = time.perf_counter()
            if model is not None:
                semantic = model.predict_semantic(scan.data, scan.spacing_mm)
            else:
                if semantics is None or not semantics[i]:
                    raise InputError(images[i], "ground_truth method needs a semantic mask")
                gt = load_mask(semantics[i])
                if gt.data.shape != scan.data.shape:
                    raise InputError(
                        semantics[i],
                        f"mask shape {gt.data.shape} differs from the image's {scan.data.shape}",
                    )
                semantic = gt.data
            votes = None
            if labeler is not None:
                votes = labeler.predict_structure_classes(
                    scan.data, scan.spacing_mm, np.asarray(semantic) > 0
                )
            t2 = time.perf_counter()
            # the vote map first: the semantic mask's presence marks the subject as done
            if votes is not None:
                save_like(votes, scan, out / f"{subject}.labeler.nii.gz", np.uint8)
            save_like(
                np.asarray(semantic, dtype=np.uint8), scan, out / f"{subject}.nii.gz", np.uint8
            )
            rec.update(
                ok=True, read_s=t1 - t0, inference_s=t2 - t1, write_s=time.perf_counter() - t2
            )
        except Exception as exc:  # one bad subject must not stop the batch
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
        records.append(rec)
        print(
            f"segment: {subject}: {'ok' if rec['ok'] else 'failed'} ({rec['seconds']:.2f} s)",
            file=sys.stderr,
        )
    info = {
        "method": method,
        "model": model_name,
        "labeler": labeler_name,
        "device": device,
        "pipeline_version": __version__,
        "process_age_at_start_s": age_at_start,
        "model_load_s": load_s,
        "total_s": time.perf_counter() - started,
        "subjects": records,
    }
    write_json(info, out / "batch.json")
    return info


# --------------------------------------------------------------------------- analyse


class _Failed(Exception):
    def __init__(self, rule: str, error: str):
        super().__init__(error)
        self.rule = rule
        self.error = error


def _link_or_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _label_volume(instances: np.ndarray, id_to_name: Mapping[int, str]) -> np.ndarray:
    """Instance mask -> label-class mask (ids of :func:`label_ids`), by a lookup table."""
    ids = label_ids()
    lut = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.uint8)
    for iid, name in id_to_name.items():
        if 0 < int(iid) < len(lut):
            lut[int(iid)] = ids.get(name, 0)
    return lut[instances]


def label_ids() -> dict[str, int]:
    """Class ids of ``labels.nii.gz``: every name of every variant, cranio-caudal, from 1."""
    from spinecensus.anatomy import labels

    names = sorted({n for v in labels.VARIANTS for n in labels.structures(v)}, key=labels.sort_key)
    return {n: i + 1 for i, n in enumerate(names)}


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


def analyse_subject(
    subject: str,
    seg_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    image: str | None = None,
    qc_png: bool = True,
    field_of_view: str = "whole_spine",
) -> dict[str, Any]:
    """Split, label and measure one subject's semantic mask; never raises for subject errors.

    ``field_of_view``: ``"whole_spine"`` (count from C2) or ``"lumbar"`` (no C2 in view:
    levels named upward from the sacrum; see ``labeling.count_labels``).

    Reads ``seg_dir/<subject>.nii.gz`` (or propagates ``seg_dir/<subject>.failed.json``).
    Always writes the declared outputs ``out_dir/summary.json`` (``"status": "ok"`` or
    ``"failed"``), ``out_dir/structures.parquet`` (empty on failure) and ``out_dir/qc.png``
    (a failure card on failure); on success also ``semantic.nii.gz``, ``instances.nii.gz``,
    ``labels.nii.gz`` (label class per voxel, :func:`label_ids`) and ``labels.json``, on
    failure ``failed.json`` (``subject``, ``rule``, ``error``).  Returns the summary.
    """
    from spinecensus.census import tables

    t_start = time.perf_counter()
    age_at_start = _process_age_s()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (*SIDE_FILES, "summary.json"):
        (out / name).unlink(missing_ok=True)
    seg = Path(seg_dir)
    batch_info: dict[str, Any] = {}
    if (seg / "batch.json").exists():
        try:
            batch_info = json.loads((seg / "batch.json").read_text())
        except (OSError, ValueError):
            batch_info = {}
    base = {
        "subject": subject,
        "pipeline_version": __version__,
        "segmentation_method": batch_info.get("method"),
        "model": batch_info.get("model"),
        "labeler": batch_info.get("labeler"),
        "image": image,
        "input_sha256": file_sha256(image) if image and Path(image).exists() else None,
    }
    compute_s = 0.0
    try:
        failed = seg / f"{subject}.failed.json"
        if failed.exists():
            rec = json.loads(failed.read_text())
            raise _Failed(rec.get("rule", "segment"), rec.get("error", "segmentation failed"))
        sem_path = seg / f"{subject}.nii.gz"
        if not sem_path.exists():
            raise _Failed("segment", f"{sem_path}: no segmentation output for this subject")
        from spinecensus.census import pipeline
        from spinecensus.io import load_mask, save_like

        sem = load_mask(sem_path)
        votes_path = seg / f"{subject}.labeler.nii.gz"
        votes = load_mask(votes_path).data if votes_path.exists() else None
        t0 = time.perf_counter()
        analysis = pipeline.analyse_semantic(
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
        # instances + labels.json as pipeline.write_subject_outputs writes them, but the
        # summary only once at the end: summary.json present <=> the subject is complete
        save_like(analysis.split.instances, sem, out / "instances.nii.gz", np.uint16)
        write_json(
            {str(i): n for i, n in sorted(analysis.labeling.id_to_name.items())},
            out / "labels.json",
        )
        _link_or_copy(sem_path, out / "semantic.nii.gz")
        inst, names = _analysis_arrays(analysis, out)
        save_like(_label_volume(inst, names), sem, out / "labels.nii.gz", np.uint8)
        tables.write_subject_structures(subject, analysis.structures, out / "structures.parquet")
        summary = dict(analysis.summary)
        summary.update(base, status="ok")
        if qc_png:
            from spinecensus.census import qc
            from spinecensus.io import load_scan

            img = None
            if image and Path(image).exists():
                try:
                    img = load_scan(image, check=False).data
                except Exception:  # the QC picture falls back to the mask alone
                    img = None
            qc.subject_png(
                out / "qc.png",
                inst,
                names,
                sem.spacing_mm,
                image=img,
                title=f"{subject}: {summary.get('transitional_status', '?')}",
            )
    except Exception as exc:
        rule = exc.rule if isinstance(exc, _Failed) else "analyse"
        error = exc.error if isinstance(exc, _Failed) else one_line(exc)
        for name in SIDE_FILES:
            (out / name).unlink(missing_ok=True)
        record = {"subject": subject, "rule": rule, "error": error}
        write_json(record, out / "failed.json")
        tables.write_subject_structures(subject, [], out / "structures.parquet")
        if qc_png:
            from spinecensus.census import qc

            qc.failure_png(out / "qc.png", subject, rule, error)
        summary = dict(base, status="failed", rule=rule, error=error)
        print(f"analyse: {subject}: FAILED in {rule}: {error}", file=sys.stderr)
        if not isinstance(exc, _Failed):
            traceback.print_exc(file=sys.stderr)
    summary["seconds"] = time.perf_counter() - t_start
    summary["compute_s"] = compute_s
    summary["process_age_at_start_s"] = age_at_start
    write_json(summary, out / "summary.json")
    return summary


# --------------------------------------------------------------------------- aggregate


def load_cohort_sheet(path: str | os.PathLike[str]) -> Any:
    """The sample sheet with absolute paths (for the aggregate's covariates)."""
    return resolve_paths(read_sheet(path), path)


def aggregate_cohort(
    subjects_dir: str | os.PathLike[str],
    subjects: Sequence[str],
    out_dir: str | os.PathLike[str],
    sheet: str | os.PathLike[str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Cohort tables from ``subjects_dir/<subject>/{summary.json,structures.parquet}``."""
    from spinecensus.census import tables

    base = Path(subjects_dir)
    df = read_sheet(sheet) if sheet else None
    if df is not None:
        df = df[df["subject"].isin(set(subjects))]
    extra = {}
    if config and config.get("samples", "") == "" and "synthetic" in config:
        extra["planted"] = {
            "lumbarization": config["synthetic"].get("lumbarization"),
            "sacralization": config["synthetic"].get("sacralization"),
        }
    return tables.aggregate(
        [base / s / "summary.json" for s in subjects],
        [base / s / "structures.parquet" for s in subjects],
        out_dir,
        sheet=df,
        config=config,
        extra_metadata=extra,
    )


def run_summary(tables_dir: str | os.PathLike[str], max_listed: int = 20) -> str | None:
    """The end-of-run summary: subjects analysed/failed and each failure (one line each).

    Read from the cohort tables (``subjects.parquet``, ``failures.parquet``); ``None`` when
    they do not exist (e.g. a run that stopped before the aggregate).
    """
    import pyarrow.parquet as pq

    tdir = Path(tables_dir)
    if not (tdir / "subjects.parquet").exists() or not (tdir / "failures.parquet").exists():
        return None
    n_subjects = pq.read_metadata(tdir / "subjects.parquet").num_rows
    fails = pq.read_table(tdir / "failures.parquet").to_pylist()
    lines = [
        f"spinecensus: {n_subjects} subjects, {n_subjects - len(fails)} analysed, "
        f"{len(fails)} failed" + (f" (listed in {tdir / 'failures.parquet'}):" if fails else ".")
    ]
    for row in fails[:max_listed]:
        lines.append(f"  {row['subject']} [{row['rule']}]: {row['error']}")
    if len(fails) > max_listed:
        lines.append(f"  ... and {len(fails) - max_listed} more")
    lines.append(f"Tables: {tdir}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _cmd_segment(a: argparse.Namespace) -> int:
    # "-" stands for "no path in the sheet" (an empty shell argument would vanish)
    segment_batch(
        a.subjects,
        ["" if p == "-" else p for p in a.images],
        a.out,
        method=a.method,
        semantics=["" if p == "-" else p for p in a.semantics] if a.semantics else None,
        weights=a.weights,
        device=a.device,
        batch_size=a.batch_size,
        threads=a.threads,
        model_options=json.loads(a.model_options) if a.model_options else None,
        labeler_weights=a.labeler_weights,
    )
    return 0


def _cmd_analyse(a: argparse.Namespace) -> int:
    analyse_subject(
        a.subject,
        a.seg_dir,
        a.out,
        image=a.image or None,
        qc_png=not a.no_qc,
        field_of_view=a.field_of_view,
    )
    return 0


def _cmd_aggregate(a: argparse.Namespace) -> int:
    config = json.loads(a.config) if a.config else None
    subjects = read_sheet(a.sheet)["subject"].tolist()
    aggregate_cohort(a.subjects_dir, subjects, a.out, sheet=a.sheet, config=config)
    return 0


def _cmd_synth(a: argparse.Namespace) -> int:
    synthesize(a.out, a.n, a.seed, a.lumbarization, a.sacralization, a.preset, a.workers)
    return 0


def _cmd_cohort_qc(a: argparse.Namespace) -> int:
    from spinecensus.census import qc

    qc.cohort_figures(a.tables, a.prevalence_png, a.volumes_png)
    return 0


def _cmd_check_sheet(a: argparse.Namespace) -> int:
    df = read_sheet(a.sheet)
    print(f"{a.sheet}: {len(df)} subjects, columns: {', '.join(df.columns)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from spinecensus.naming.labeling import FIELDS_OF_VIEW

    p = argparse.ArgumentParser(
        prog="python -m spinecensus.census.cohort", description=__doc__.splitlines()[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("segment", help="segment a batch of subjects (model loaded once)")
    s.add_argument("--subjects", nargs="+", required=True)
    s.add_argument("--images", nargs="+", required=True)
    s.add_argument("--semantics", nargs="*", default=None)
    s.add_argument("--out", required=True)
    s.add_argument("--method", default="model", choices=("model", "ground_truth"))
    s.add_argument("--weights", default="")
    s.add_argument("--device", default="cpu")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--model-options", default="", help="JSON: amp, layout, normalisation")
    s.add_argument(
        "--labeler-weights", default="", help='small-FOV labeler: "shipped", a path, or ""'
    )
    s.set_defaults(func=_cmd_segment)
    s = sub.add_parser("analyse", help="split + label + measure one subject")
    s.add_argument("--subject", required=True)
    s.add_argument("--seg-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--image", default="")
    s.add_argument("--no-qc", action="store_true")
    s.add_argument(
        "--field-of-view",
        default="whole_spine",
        choices=FIELDS_OF_VIEW,
        help="lumbar: C2 not in view, name levels upward from the sacrum",
    )
    s.set_defaults(func=_cmd_analyse)
    s = sub.add_parser("aggregate", help="build the cohort tables")
    s.add_argument("--subjects-dir", required=True)
    s.add_argument("--sheet", required=True, help="sample sheet: the cohort's subjects")
    s.add_argument("--config", default="", help="the workflow config as JSON (metadata)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_cmd_aggregate)
    s = sub.add_parser("synth", help="generate the synthetic demo cohort")
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--lumbarization", type=float, default=0.066)
    s.add_argument("--sacralization", type=float, default=0.036)
    s.add_argument("--preset", default="default", choices=("default", "tiny"))
    s.add_argument("--workers", type=int, default=1, help="processes (Snakemake threads)")
    s.set_defaults(func=_cmd_synth)
    s = sub.add_parser("cohort-qc", help="cohort QC figures from the tables")
    s.add_argument("--tables", required=True)
    s.add_argument("--prevalence-png", required=True)
    s.add_argument("--volumes-png", required=True)
    s.set_defaults(func=_cmd_cohort_qc)
    s = sub.add_parser("check-sheet", help="validate a sample sheet")
    s.add_argument("sheet")
    s.set_defaults(func=_cmd_check_sheet)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, SampleSheetError) as exc:
        print(f"spinecensus.census.cohort {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
