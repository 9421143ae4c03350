"""API compatible with the published ``spine-segmentation`` package (Gliwa 2023).

>>> from spinecensus import SegmentationInference
>>> inf = SegmentationInference(segmentation_device="CPU")        # shipped demo weights
>>> res = inf.segment(volume)                                      # doctest: +SKIP
>>> res.semantic_segmentation, res.instance_segmentation, res.id_to_label   # doctest: +SKIP

Array order
-----------
A numpy ``volume`` is read in the published package's order: ``(sagittal slices, AP,
inferior->superior)`` with the **top of the spine at the end of the last axis**, i.e.
nibabel's RAS voxel order (axis 0 left->right, axis 1 posterior->anterior, axis 2
inferior->superior) — what ``nib.as_closest_canonical(img).get_fdata()`` returns.  Spacing
is 1 mm unless ``spacing=`` (same axis order, mm) is given.  A nibabel image is reoriented
from its affine, which also gives the spacing.  Outputs always come back in the input's
array order and shape (``output_same_shape_as_input``; the network's crop/pad and
resampling are undone internally).

``np.tile(slice2d, (3, 1, 1))`` (one sagittal slice repeated three times) is a valid input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from spinecensus.io import InputError, Scan, scan_from_image, validate_image_array


def resolve_device(name: str | None) -> str:
    """Map the published package's ``"CPU"``/``"GPU"`` (and torch names) to a torch device."""
    if name is None:
        return "cpu"
    n = str(name).strip()
    low = n.lower()
    if low == "cpu":
        return "cpu"
    if low in {"gpu", "cuda"}:
        return "cuda"
    if low.startswith("cuda:") or low.startswith("gpu:"):
        return "cuda:" + low.split(":", 1)[1]
    raise ValueError(f"unknown device {name!r} (use CPU, GPU, cuda or cuda:N)")


@dataclass
class SegmentationResult:
    """Result of :meth:`SegmentationInference.segment`, arrays in the input's order.

    Attributes:
        semantic_segmentation: uint8, 0 background, 1 vertebral body, 2 disc.
        instance_segmentation: uint16 instance ids (1 = most cranial), or None with
            ``only_2class_segmentation=True``.
        id_to_label: ``{1: "C2", 2: "C2-C3", ...}`` (empty when not labelled).
        split_valid / invalid_reason / transitional_status / decided_by / qc_flags: extras
            of this package (the published one has no equivalents).
    """

    semantic_segmentation: np.ndarray
    instance_segmentation: np.ndarray | None
    id_to_label: dict[int, str]
    split_valid: bool | None = None
    invalid_reason: str | None = None
    transitional_status: str | None = None
    decided_by: str | None = None
    qc_flags: list[str] = field(default_factory=list)


class SegmentationInference:
    """Segment vertebral bodies and discs, split them into instances and name them.

    Args:
        segmentation_device: ``"CPU"``, ``"GPU"``, ``"cuda"``, ``"cuda:N"``.
        instance_segmentation_device: accepted for compatibility; instance splitting here is
            a vectorised numpy step (no second network), so it always runs on the CPU.
        output_same_shape_as_input: must be True (outputs are always mapped back exactly).
        weights: ``.pt`` (+ sidecar) or ``.onnx`` segmentation weights; None = shipped.
        labeler_weights: optional small-FOV labeler (``.pt``/``.onnx``); when given, names
            come from the model + consistent-sequence DP, cross-checked with count labeling.
        threads: CPU threads for torch / ONNX Runtime.
        batch_size: slices per forward pass, or ``"auto"`` (from free GPU memory on CUDA).
        precision: ``"auto"`` (bf16 on CUDA and on CPUs with native bf16, else fp32),
            ``"fp32"`` or ``"bf16"`` (:func:`spinecensus.segment.runners.resolve_precision`).
        field_of_view: ``"whole_spine"`` (count from C2) or ``"lumbar"`` (C2 not in view:
            levels named upward from the sacrum, status withheld; see
            :func:`spinecensus.naming.counting.count_labels`).
    """

    def __init__(
        self,
        segmentation_device: str = "CPU",
        instance_segmentation_device: str | None = None,
        output_same_shape_as_input: bool = True,
        weights: str | os.PathLike[str] | None = None,
        labeler_weights: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        batch_size: int | str = 8,
        field_of_view: str = "whole_spine",
        precision: str = "auto",
    ):
        from spinecensus.naming.labeling import check_field_of_view
        from spinecensus.segment.weights import DEFAULT_SEGMENTATION_WEIGHTS, load_model

        self.field_of_view = check_field_of_view(field_of_view)

        if not output_same_shape_as_input:
            raise ValueError("only output_same_shape_as_input=True is supported")
        self.device = resolve_device(segmentation_device)
        self.instance_segmentation_device = instance_segmentation_device
        opts = {"device": self.device, "threads": threads, "batch_size": batch_size}
        self.model = load_model(
            weights or DEFAULT_SEGMENTATION_WEIGHTS, precision=precision, **opts
        )
        self.labeler = (
            load_model(labeler_weights, precision=precision, **opts)
            if labeler_weights is not None
            else None
        )

    # -- input handling ----------------------------------------------------------------
    @staticmethod
    def _canonical(
        volume: Any, spacing: tuple[float, float, float] | None
    ) -> tuple[np.ndarray, tuple[float, float, float], Any]:
        """Return (canonical array, canonical spacing, function mapping canonical -> input)."""
        import nibabel as nib

        if isinstance(volume, nib.spatialimages.SpatialImage):
            scan: Scan = scan_from_image(volume)  # type: ignore[arg-type]
            return np.asarray(scan.data, dtype=np.float32), scan.spacing_mm, scan.to_stored
        arr = np.asarray(volume)
        sp = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
        arr = validate_image_array(arr, sp, None)  # type: ignore[arg-type]
        # RAS (slice, P->A, I->S) -> canonical (slice, S->I, A->P)
        canon = np.ascontiguousarray(arr[:, ::-1, ::-1].transpose(0, 2, 1), dtype=np.float32)

        def back(c: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(c.transpose(0, 2, 1)[:, ::-1, ::-1])

        return canon, (sp[0], sp[2], sp[1]), back

    # -- main entry ----------------------------------------------------------------------
    def segment(
        self,
        volume: Any,
        only_2class_segmentation: bool = False,
        spacing: tuple[float, float, float] | None = None,
    ) -> SegmentationResult:
        """Segment ``volume`` (numpy array in RAS order or nibabel image); see module doc."""
        canon, sp, back = self._canonical(volume, spacing)
        semantic = self.model.predict_semantic(canon, sp).astype(np.uint8)
        if only_2class_segmentation:
            return SegmentationResult(back(semantic), None, {})
        from spinecensus.naming.labeler import label_split
        from spinecensus.naming.vote import to_union_columns
        from spinecensus.split import instances as split

        res = split.split_instances(semantic, sp)
        logp = None
        if self.labeler is not None and int(np.max(res.instances, initial=0)) > 0:
            # a thesis 45/47-class labeler's columns -> the union's 49 (identity for ours)
            logp = to_union_columns(
                self.labeler.instance_log_probs(canon, sp, res.instances),
                self.labeler.spec.classes[1:],
            )
        lab = label_split(res, logp, self.field_of_view)
        try:
            id_to_label = {int(k): str(v) for k, v in lab.id_to_name.items()}
        except AttributeError as exc:  # pragma: no cover - contract violation
            raise InputError(None, f"labeling returned no names ({exc})") from None
        return SegmentationResult(
            semantic_segmentation=back(semantic),
            instance_segmentation=back(np.asarray(res.instances, dtype=np.uint16)),
            id_to_label=id_to_label,
            split_valid=bool(getattr(res, "valid", True)),
            invalid_reason=getattr(res, "invalid_reason", None),
            transitional_status=getattr(lab, "transitional_status", None),
            decided_by=getattr(lab, "decided_by", None),
            qc_flags=list(getattr(lab, "qc_flags", []) or []),
        )


__all__ = ["SegmentationInference", "SegmentationResult", "resolve_device"]
