"""Weights files and loading them: the shipped weights, ``.pt`` + JSON sidecar I/O with sha256
and git commit, and :func:`load_model` (``.pt`` with torch or ``.onnx`` with ONNX Runtime ->
:class:`~spinecensus.segment.predict.SegmentationModel`).

Weights are files: ``NAME.pt`` (torch state dict) + ``NAME.json`` sidecar (:class:`ModelSpec`
fields: architecture, encoder, classes, input size, spacing, normalisation, layout, training
data, git commit, metrics, sha256 of the ``.pt``), or an ``.onnx`` file (with an optional
``.json`` sidecar; without one the thesis layout and defaults are assumed).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from spinecensus.io import InputError, atomic_path, write_json
from spinecensus.review.provenance import git_commit
from spinecensus.segment.network import build_network
from spinecensus.segment.predict import SegmentationModel
from spinecensus.segment.runners import OnnxRunner, TorchRunner, resolve_precision
from spinecensus.segment.spec import SEMANTIC_CLASSES, Layout, ModelSpec, Task, thesis_onnx_spec

if TYPE_CHECKING:  # torch is imported lazily so that the light CLI commands stay fast
    import torch

#: the shipped demo weights (see spinecensus/weights/README.md)
WEIGHTS_DIR = Path(__file__).parents[1] / "weights"
DEFAULT_SEGMENTATION_WEIGHTS = WEIGHTS_DIR / "segmentation.pt"
DEFAULT_LABELING_WEIGHTS = WEIGHTS_DIR / "labeling.pt"


class WeightsTaskError(ValueError):
    """Weights of the wrong task (a labeler given as the segmenter, or the reverse) or with a
    class layout that task cannot use.  Not a subject's bad input: it stops the job."""


def check_task(spec: ModelSpec, path: str | os.PathLike[str], task: Task) -> None:
    """Refuse ``spec`` (the model in ``path``) unless it is a ``task`` model with a usable
    class layout: segmentation = background / vertebra / disc; labeling = structure names of
    the label schema (the 50-channel union, or a thesis 45/47/49-class variant)."""
    if spec.task != task:
        raise WeightsTaskError(
            f"{path}: these are {spec.task} weights ({spec.n_classes} classes), "
            f"but they were given as {task} weights"
        )
    if task == "segmentation" and tuple(spec.classes) != SEMANTIC_CLASSES:
        raise WeightsTaskError(
            f"{path}: segmentation weights must have the classes {SEMANTIC_CLASSES}, "
            f"not {tuple(spec.classes)[:6]} ({spec.n_classes} classes)"
        )
    if task == "labeling":
        from spinecensus.anatomy import labels

        unknown = [c for c in spec.classes[1:] if c not in labels.all_names()]
        if spec.classes[0] != "background" or unknown:
            raise WeightsTaskError(
                f"{path}: labeling weights need 'background' and structure names "
                f"(C2 ... S1) as classes; unknown: {unknown[:5]}"
            )


def check_weights_file(path: str | os.PathLike[str], task: Task) -> None:
    """Cheap check before any job runs: the sidecar of ``path`` (if it has one) names
    ``task``.  Raises :class:`InputError` for a missing file, :class:`WeightsTaskError`
    for the wrong task.  An ``.onnx`` file without sidecar is checked when it is loaded."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{task} weights file does not exist")
    spec = read_spec(path)
    if spec is not None:
        check_task(spec, path, task)


def weights_file(value: str | os.PathLike[str], task: Task) -> Path:
    """A config's weights setting as a file: ``"shipped"`` = the shipped weights of ``task``
    (:data:`DEFAULT_SEGMENTATION_WEIGHTS` / :data:`DEFAULT_LABELING_WEIGHTS`), anything
    else the path itself."""
    if str(value) == "shipped":
        return DEFAULT_LABELING_WEIGHTS if task == "labeling" else DEFAULT_SEGMENTATION_WEIGHTS
    return Path(value)


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(weights: str | os.PathLike[str]) -> Path:
    return Path(weights).with_suffix(".json")


def save_weights(net: torch.nn.Module, spec: ModelSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``path`` (.pt state dict, in ``spec.weights_dtype``) and its JSON sidecar.

    The sidecar records the sha256 of the ``.pt`` file and the git commit.  Both are written
    atomically.
    """
    import torch

    path = Path(path)
    state = net.state_dict()
    if spec.weights_dtype == "float16":
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    spec.sha256 = sha256_file(path)
    if spec.git_commit is None:  # the checkout's commit, "+dirty" when it has edits
        spec.git_commit = git_commit() or None
    write_json(spec.to_dict(), sidecar_path(path))
    return path


def read_spec(path: str | os.PathLike[str]) -> ModelSpec | None:
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        return ModelSpec.from_dict(json.loads(side.read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(side, f"invalid model sidecar ({exc})") from None


def load_network(
    path: str | os.PathLike[str], verify: bool = True
) -> tuple[torch.nn.Module, ModelSpec]:
    """Load a ``.pt`` state dict + sidecar as an fp32 torch network (CPU)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(path, "weights file does not exist")
    spec = read_spec(path)
    if spec is None:
        raise InputError(path, f"missing sidecar {sidecar_path(path).name} (model description)")
    if verify and spec.sha256 and sha256_file(path) != spec.sha256:
        raise InputError(path, "sha256 does not match the sidecar (corrupt or replaced file)")
    net = build_network(spec)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"not a readable torch state dict ({exc})") from None
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return net.eval(), spec


def _onnx_file_spec(path: Path) -> ModelSpec:
    """An ``.onnx`` file's spec: its sidecar, else :func:`thesis_onnx_spec` with the graph's
    number of classes and, when fixed, its input size."""
    spec = read_spec(path)
    if spec is None:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        n_cls = graph.output[0].type.tensor_type.shape.dim[1].dim_value
        spec = thesis_onnx_spec(int(n_cls))
        dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[2] > 0 and dims[3] > 0:
            spec.input_size = (int(dims[3]), int(dims[2]))  # thesis: (AP, SI) -> (SI, AP)
    return spec


def load_model(
    path: str | os.PathLike[str],
    device: str = "cpu",
    threads: int | None = None,
    precision: str | None = "auto",
    batch_size: int | str = 8,
    layout: Layout | None = None,
    normalisation: str | None = None,
    task: Task | None = None,
    amp: str | None = "unset",
) -> SegmentationModel:
    """Load weights from a file: ``.pt`` (+ sidecar) with torch, ``.onnx`` with ONNX Runtime.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (from the config; never hard-coded).
        threads: CPU threads (Snakemake's ``threads``): of the ONNX Runtime session, or
            torch's while the model predicts (set and restored around each volume; torch's
            count is process-wide, so loading leaves it alone).
        precision: ``"fp32"``, ``"bf16"`` (autocast), or ``"auto"`` = bf16 on CUDA and on
            CPUs with native bf16 (AVX512-BF16 / AMX), else fp32
            (:func:`~spinecensus.segment.runners.resolve_precision`; config
            ``segmentation.precision``).  ONNX Runtime always runs the file's fp32 graph.
        batch_size: slices per forward pass, or ``"auto"`` (from free GPU memory on CUDA).
        layout: override the sidecar's layout (e.g. ``"thesis"`` for a published ONNX file).
        normalisation: override the sidecar's intensity normalisation.
        task: ``"segmentation"`` or ``"labeling"``: refuse weights of the other task or of a
            class layout that task cannot use (:class:`WeightsTaskError`, naming the file).
        amp: the former name of ``precision`` (None = fp32), still accepted.
    """
    if amp != "unset":
        precision = "fp32" if amp is None else amp
    path = Path(path)
    if path.suffix == ".onnx":
        if not path.exists():
            raise InputError(path, "ONNX file does not exist")
        spec = _onnx_file_spec(path)
        if task is not None:
            check_task(spec, path, task)
        if layout is not None:
            spec.layout = layout
        if normalisation is not None:
            spec.normalisation = normalisation
        runner = OnnxRunner(path, spec, device, threads)
        return SegmentationModel(spec, runner, batch_size, threads)
    if task is not None:
        check_weights_file(path, task)  # before building the network
    net, spec = load_network(path)
    if layout is not None:
        spec.layout = layout
    if normalisation is not None:
        spec.normalisation = normalisation
    runner = TorchRunner(net, spec, device, resolve_precision(precision, device))
    return SegmentationModel(spec, runner, batch_size, threads)
