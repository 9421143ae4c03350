"""ONNX export of ``.pt`` weights (+ sidecar), optionally in the published thesis layout; the
``spinecensus export-onnx`` command.

A file without a sidecar is read as a published thesis model
(:func:`spinecensus.segment.spec.thesis_onnx_spec`: thesis layout, native spacing, the
thesis crop, per-volume min-max normalisation); ``sidecar=False`` therefore only exports
weights whose description says exactly that, so a bare file is never fed other inputs than
it was trained on.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

from spinecensus.io import atomic_path, write_json
from spinecensus.segment.network import thesis_adapter
from spinecensus.segment.spec import Layout, ModelSpec, thesis_onnx_spec
from spinecensus.segment.weights import load_network, sha256_file, sidecar_path


def export_onnx(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: Layout = "spinecensus",
    opset: int = 17,
    sidecar: bool = True,
) -> Path:
    """Export ``.pt`` weights to ONNX (``dynamo=False``, dynamic batch axis) + sidecar.

    With ``layout="thesis"`` the ONNX graph takes ``N x 3 x AP x SI`` with the top of the
    spine at the end of the SI axis and the front at the end of the AP axis, like the
    published thesis models.  ``sidecar=False`` writes the bare ``.onnx`` of a published
    thesis model (no ``.json``); the weights must then be described as one (see the module
    docstring), else ``ValueError``.
    """
    import torch

    net, spec = load_network(weights)
    if spec.input_size is None:
        raise ValueError("ONNX export needs a fixed input_size in the sidecar")
    if not sidecar:
        _check_bare_export(spec, layout, Path(weights))
    si, ap = spec.input_size
    module = thesis_adapter(net) if layout == "thesis" else net
    dummy = torch.zeros((1, spec.in_channels, ap, si) if layout == "thesis" else (1, 3, si, ap))
    out = Path(out)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # dynamo=False is deliberate (the brief's choice: stable, dynamic batch axis);
        # silence the legacy-exporter deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module.eval(),
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    if not sidecar:
        return out
    onnx_spec = ModelSpec.from_dict(spec.to_dict())
    onnx_spec.layout = layout
    onnx_spec.training = {**spec.training, "exported_from": Path(weights).name}
    onnx_spec.sha256 = sha256_file(out)
    write_json(onnx_spec.to_dict(), sidecar_path(out))
    return out


def _check_bare_export(spec: ModelSpec, layout: str, weights: Path) -> None:
    """Refuse a sidecar-less export that a reader would misread (its spec would be
    :func:`thesis_onnx_spec`'s)."""
    bare = thesis_onnx_spec(spec.n_classes)
    wrong = [
        f"{name} {have!r} (a bare file is read as {want!r})"
        for name, have, want in (
            ("layout", layout, bare.layout),
            ("normalisation", spec.normalisation, bare.normalisation),
            ("crop", spec.crop, bare.crop),
            ("target_spacing_mm", spec.target_spacing_mm, bare.target_spacing_mm),
        )
        if have != want
    ]
    if wrong:
        raise ValueError(f"{weights}: cannot export without a sidecar: " + "; ".join(wrong))


# --------------------------------------------------------------------------- CLI


def _cmd_export(args: argparse.Namespace) -> int:
    sidecar = not args.no_sidecar
    out = export_onnx(args.weights, args.out, args.layout, args.opset, sidecar=sidecar)
    print(f"wrote {out}" + (f" and {sidecar_path(out).name}" if sidecar else " (no sidecar)"))
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("export-onnx", help="export .pt weights (+ sidecar) to ONNX")
    p.add_argument("weights", help="WEIGHTS.pt with its WEIGHTS.json sidecar")
    p.add_argument("out", help="OUT.onnx (a sidecar OUT.json is written beside it)")
    p.add_argument("--layout", choices=("spinecensus", "thesis"), default="spinecensus")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-sidecar", action="store_true",
                   help="write a bare .onnx read as a published thesis model (needs weights "
                   "trained as one: thesis layout and crop, min-max, native spacing)")  # fmt: skip
    p.set_defaults(func=_cmd_export)
