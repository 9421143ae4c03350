"""One subject end to end: semantic mask -> instances, names, volumes, per-subject files.

Used by the ``spinecensus split`` command and by the ``analyse`` rule
(:func:`spinecensus.census.analyse_job.analyse`).  Everything runs in
the canonical voxel order of :mod:`spinecensus.io`; outputs go back onto the input's
stored grid with its affine bit-for-bit.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spinecensus import io as sio
from spinecensus.measure.volumes import structure_table
from spinecensus.naming.labeler import label_split
from spinecensus.naming.labeling import Labeling
from spinecensus.naming.vote import vote_log_probs
from spinecensus.split.instances import SplitResult, split_instances


@dataclass
class SubjectAnalysis:
    """Split, labeling, per-structure rows and the summary of one subject."""

    split: SplitResult
    labeling: Labeling
    structures: list[dict]
    summary: dict


def analyse_semantic(
    semantic: np.ndarray,
    scan: sio.Scan,
    log_probs: np.ndarray | None = None,
    labeler_votes: np.ndarray | None = None,
    field_of_view: str = "whole_spine",
) -> SubjectAnalysis:
    """Split ``semantic`` (canonical order, on ``scan``'s grid), name and measure it.

    Without ``log_probs`` the names come from counting from C2 (whole-spine scans); with
    per-instance model log-probabilities (rows = instance ids, 49 columns, see
    :func:`spinecensus.naming.sequence.consistent_sequence`) the model names them and the count
    is checked against it when C2 and the sacrum are in view.  ``labeler_votes`` (the
    labeler's per-voxel structure class on ``scan``'s grid, see
    ``SegmentationModel.predict_structure_classes``) gives those log-probabilities by
    majority vote per instance (:func:`spinecensus.naming.vote.vote_log_probs`).
    ``field_of_view``: ``"whole_spine"`` (count from C2) or ``"lumbar"`` (no C2 in view:
    named upward from the sacrum, see :func:`spinecensus.naming.counting.count_labels`).

    Raises:
        InputError: labels outside {0, 1, 2} or a mask not shaped like ``scan``.
    """
    sem = np.asarray(semantic)
    if sem.shape != scan.data.shape:
        raise sio.InputError(scan.path, f"mask shape {sem.shape} != scan shape {scan.data.shape}")
    try:
        split = split_instances(sem, scan.spacing_mm)
    except sio.InputError as exc:
        raise sio.InputError(scan.path, exc.problem) from None
    if labeler_votes is not None and log_probs is None and split.n_instances:
        votes = np.asarray(labeler_votes)
        if votes.shape != sem.shape:
            raise sio.InputError(
                scan.path, f"labeler map shape {votes.shape} != mask shape {sem.shape}"
            )
        log_probs = vote_log_probs(split.instances, votes, split.n_instances)
    lab = label_split(split, log_probs, field_of_view)
    rows = structure_table(
        split.instances, lab.id_to_name, scan, confidence=lab.confidence or None, kinds=split.kinds
    )
    return SubjectAnalysis(split, lab, rows, _summary(split, lab, rows))


def _summary(split: SplitResult, lab: Labeling, rows: list[dict]) -> dict:
    named = [lab.id_to_name[i] for i in sorted(lab.id_to_name)]
    return {
        "split_valid": bool(split.valid),
        "invalid_reason": split.invalid_reason,
        "transitional_status": lab.transitional_status,
        "n_vertebrae": split.n_vertebrae,
        "n_discs": split.n_discs,
        "lumbar_count": lab.lumbar_count,
        "volumes_mm3": {r["label"]: r["volume_mm3"] for r in rows if r["label"] is not None},
        "first_visible_label": named[0] if named else None,
        "last_visible_label": named[-1] if named else None,
        "decided_by": lab.decided_by,
        "qc_flags": list(lab.qc_flags),
        "n_instances": split.n_instances,
        "n_unnamed_instances": split.n_instances - len(lab.id_to_name),
        "spacing_mm": list(split.spacing_mm),
    }


def write_subject_outputs(analysis: SubjectAnalysis, scan: sio.Scan, out_dir: Path) -> None:
    """Write ``instances.nii.gz`` (input grid + affine), ``labels.json`` and
    ``summary.json`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sio.save_like(analysis.split.instances, scan, out / "instances.nii.gz", dtype=np.uint16)
    names = {str(i): n for i, n in sorted(analysis.labeling.id_to_name.items())}
    sio.write_json(names, out / "labels.json")
    sio.write_json(analysis.summary, out / "summary.json")


def process_semantic(
    semantic_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> SubjectAnalysis:
    """Load a semantic mask file, analyse it and write the per-subject outputs."""
    scan = sio.load_mask(semantic_path)
    analysis = analyse_semantic(scan.data, scan)
    write_subject_outputs(analysis, scan, Path(out_dir))
    return analysis


def _cmd_split(args: argparse.Namespace) -> int:
    analysis = process_semantic(args.semantic, args.out)
    s = analysis.summary
    print(
        f"{args.semantic}: {s['n_vertebrae']} vertebrae, {s['n_discs']} discs, "
        f"split {'valid' if s['split_valid'] else 'INVALID (' + str(s['invalid_reason']) + ')'}, "
        f"transitional status {s['transitional_status']} -> {args.out}"
    )
    if not s["split_valid"]:
        print(f"warning: {args.semantic}: {s['invalid_reason']}", file=sys.stderr)
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``spinecensus split SEMANTIC.nii.gz --out DIR``."""
    p = sub.add_parser(
        "split",
        help="split a semantic mask into instances, count-label them and measure volumes",
        description=(
            "Split a semantic mask (0 background, 1 vertebral body, 2 disc) into ordered "
            "instances, name them by counting from C2 and write DIR/instances.nii.gz, "
            "DIR/labels.json and DIR/summary.json."
        ),
    )
    p.add_argument("semantic", help="semantic mask NIfTI (0/1/2)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=_cmd_split)
