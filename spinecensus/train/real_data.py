"""Reader for ``../shared/data/real``-style manifests: public annotated sagittal spine MRI.

The folder (see its README) holds NIfTI scans with **partial** expert masks:

* ``VB1``, ``VB2``, ``VB3`` — vertebral *bodies* only (no discs, no posterior elements);
  levels T11-L5 (VB2), L1-L5 (VB3), unknown (VB1: ``unknown_k`` names);
* ``IVD`` — intervertebral discs only, L1-L2 .. L5-S1.

Everything here works in the package's canonical voxel order ``[slice, SI, AP]``
(``spinecensus.io``; the files are stored ``(I, P, R)`` and ``load_scan``/``load_mask``
reorient them from the affine).  Our semantic class 1 ("vertebra") is the vertebral body
only, exactly what the VB masks cover, so VB masks are direct class-1 ground truth.

Partial labels are carried explicitly: :attr:`RealSample.labeled_classes` — the semantic
classes the mask annotates (``{1}`` for VB*, ``{2}`` for IVD); what the loss makes of the
rest is ``spinecensus.train.real_codes``.  Patient groups (:attr:`RealSample.group`) feed the
patient-level split of ``spinecensus.train.real_splits``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spinecensus.io import InputError, Scan, load_mask, load_scan

#: default location relative to the repository root (never copied into the repository)
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"

BODY, DISC = 1, 2

#: semantic classes each dataset annotates (by the ``structure`` field of its labels JSON)
STRUCTURE_CLASS: dict[str, int] = {"vertebral_body": BODY, "intervertebral_disc": DISC}

#: exams that the data README lists as probable repeats of one patient (VB1, by exam name
#: and geometry, different sequences); they must land on the same side of the split
SAME_PATIENT: dict[str, str] = {
    "AKa3": "AKa",
    "AKa4": "AKa",
    "AKs6": "AKs",
    "AKs7": "AKs",
    "AKs8": "AKs",
    "DzZ_T1": "DzZ",
    "DzZ_T2": "DzZ",
}


@dataclass(frozen=True)
class RealSample:
    """One annotated scan of the manifest (files are read lazily by :meth:`load`).

    Attributes:
        dataset: ``VB1`` / ``VB2`` / ``VB3`` / ``IVD``.
        subject: subject id within the dataset (``"07"``).
        key: ``"<dataset>_<subject>"``, unique over the manifest.
        group: patient group for the split (``"<dataset>_<patient>"``; repeats share one).
        image, mask, labels: absolute paths.
        labeled_classes: semantic classes the mask annotates (``{1}`` body, ``{2}`` disc).
        level_names: instance id -> level name (``"L3"``, ``"L4-L5"``; ``unknown_k`` for VB1).
        levels_known: False when the names are placeholders (VB1).
        mapping: how certain the names are (labels JSON ``mapping``).
        spacing_mm: stored-order spacing from the manifest (informative; the loaded
            :class:`~spinecensus.io.Scan` carries the canonical spacing).
    """

    dataset: str
    subject: str
    key: str
    group: str
    image: Path
    mask: Path
    labels: Path
    labeled_classes: frozenset[int]
    level_names: dict[int, str] = field(hash=False, compare=False)
    levels_known: bool = True
    mapping: str = ""
    spacing_mm: tuple[float, ...] = ()

    def load(self) -> LoadedSample:
        """Read image and mask in canonical order ``[slice, SI, AP]``."""
        scan = load_scan(self.image)
        inst = load_mask(self.mask)
        if inst.data.shape != scan.data.shape:
            raise InputError(
                self.mask, f"mask shape {inst.data.shape} != image shape {scan.data.shape}"
            )
        instances = np.asarray(inst.data).astype(np.uint16)
        cls = next(iter(self.labeled_classes))
        semantic = np.where(instances > 0, cls, 0).astype(np.uint8)
        return LoadedSample(self, scan, instances, semantic)


@dataclass
class LoadedSample:
    """A :class:`RealSample` in memory, canonical order ``[slice, SI, AP]``.

    ``semantic`` holds our class ids (1 body, 2 disc) for the annotated class only.
    """

    meta: RealSample
    scan: Scan
    instances: np.ndarray
    semantic: np.ndarray

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.scan.spacing_mm


def _patient(dataset: str, subject: str, notes: list[str]) -> str:
    exam = None
    for note in notes:
        if note.startswith("exam name"):
            exam = note.split(":", 1)[1].strip()
    if exam is not None:
        return f"{dataset}_{SAME_PATIENT.get(exam, exam)}"
    return f"{dataset}_{subject}"


def load_manifest(root: str | os.PathLike[str] = DEFAULT_ROOT) -> list[RealSample]:
    """Read ``root/manifest.tsv`` and the per-subject labels JSON.

    Raises :class:`InputError` when the manifest is missing or a row names no file.
    """
    root = Path(root).resolve()
    man = root / "manifest.tsv"
    if not man.exists():
        raise InputError(man, "manifest not found (is ../shared/data/real present?)")
    out: list[RealSample] = []
    with man.open(newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            try:
                image, mask, lab = (root / row[k] for k in ("image", "mask", "labels"))
                dataset, subject = row["dataset"], row["subject"]
            except KeyError as exc:
                raise InputError(man, f"missing column {exc}") from None
            for p in (image, mask, lab):
                if not p.exists():
                    raise InputError(p, f"listed in {man.name} but missing")
            meta = json.loads(lab.read_text())
            structure = meta.get("structure", "")
            if structure not in STRUCTURE_CLASS:
                raise InputError(lab, f"unknown structure {structure!r}")
            names = {int(k): str(v) for k, v in meta["labels"].items()}
            out.append(
                RealSample(
                    dataset=dataset,
                    subject=subject,
                    key=f"{dataset}_{subject}",
                    group=_patient(dataset, subject, list(meta.get("notes", []))),
                    image=image,
                    mask=mask,
                    labels=lab,
                    labeled_classes=frozenset({STRUCTURE_CLASS[structure]}),
                    level_names=names,
                    levels_known=meta.get("mapping") != "unknown"
                    and not any(n.startswith("unknown") for n in names.values()),
                    mapping=str(meta.get("mapping", "")),
                    spacing_mm=tuple(float(s) for s in row.get("spacing_mm", "").split("x") if s),
                )
            )
    return out


def available(root: str | os.PathLike[str] = DEFAULT_ROOT) -> bool:
    """True when the real-data folder (with its manifest) is present."""
    return (Path(root) / "manifest.tsv").exists()


__all__ = [
    "BODY",
    "DEFAULT_ROOT",
    "DISC",
    "LoadedSample",
    "RealSample",
    "available",
    "load_manifest",
]
