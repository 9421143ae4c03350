"""ONNX export of ``.pt`` weights (+ sidecar), optionally in the published thesis layout; the
``spinecensus export-onnx`` command.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path
from typing import Any

from spinecensus.io import atomic_path, write_json
from spinecensus.segment.network import thesis_adapter
from spinecensus.segment.spec import Layout, ModelSpec
from spinecensus.segment.weights import load_network, sha256_file, sidecar_path


def export_onnx(
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str],
    layout: Layout = "spinecensus",
    opset: int = 17,
) -> Path:
    """Export ``.pt`` weights to ONNX (``dynamo=False``, dynamic batch axis) + sidecar.

    With ``layout="thesis"`` the ONNX graph takes ``N x 3 x AP x SI`` with the top of the
    spine at the end of the SI axis, like the published thesis models.
    """
    import torch

    net, spec = load_network(weights)
    if spec.input_size is None:
        raise ValueError("ONNX export needs a fixed input_size in the sidecar")
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
    onnx_spec = ModelSpec.from_dict(spec.to_dict())
    onnx_spec.layout = layout
    onnx_spec.training = {**spec.training, "exported_from": Path(weights).name}
    onnx_spec.sha256 = sha256_file(out)
    write_json(onnx_spec.to_dict(), sidecar_path(out))
    return out


# --------------------------------------------------------------------------- CLI


def _cmd_export(args: argparse.Namespace) -> int:
    out = export_onnx(args.weights, args.out, layout=args.layout, opset=args.opset)
    print(f"wrote {out} and {sidecar_path(out).name}")
    return 0


def register_cli(subparsers: Any) -> None:
    p = subparsers.add_parser("export-onnx", help="export .pt weights (+ sidecar) to ONNX")
    p.add_argument("weights", help="WEIGHTS.pt with its WEIGHTS.json sidecar")
    p.add_argument("out", help="OUT.onnx (a sidecar OUT.json is written beside it)")
    p.add_argument("--layout", choices=("spinecensus", "thesis"), default="spinecensus")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=_cmd_export)
