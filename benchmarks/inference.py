"""Segmentation inference speed: shipped demo model vs the thesis-sized resnet152 U-Net.

One run measures, per model, seconds per slice and slices per second for
  * torch fp32,
  * torch bf16 autocast + channels_last,
  * ONNX Runtime (CPU execution provider; CUDA when available),
the FLOPs of one slice (``torch.utils.flop_counter.FlopCounterMode``, multiply-add = 2 FLOPs)
and the fraction of this machine's measured fp32 matmul peak that each variant reaches
(the peak is measured in the same run: a large ``torch.mm``).

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inference.py [--threads 2] [--slices 8]
        [--device cpu|cuda] [--skip-resnet152]

Inputs are network-grid batches (the model's ``input_size``; random data - speed does not
depend on content); random weights are fine for resnet152.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from spinecensus.segment.network import build_network  # noqa: E402
from spinecensus.segment.onnx_export import export_onnx  # noqa: E402
from spinecensus.segment.runners import OnnxRunner  # noqa: E402
from spinecensus.segment.spec import ModelSpec  # noqa: E402
from spinecensus.segment.weights import (  # noqa: E402
    DEFAULT_SEGMENTATION_WEIGHTS,
    load_network,
    save_weights,
)


def matmul_peak_gflops(device: str, n: int = 2048, repeat: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_slice(net: torch.nn.Module, size: tuple[int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *size)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x)
    return float(fc.get_total_flops())


def time_call(fn, n_slices: int, repeat: int, device: str) -> float:
    """Best seconds per slice over ``repeat`` runs (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best / n_slices


def bench_model(
    name: str, net: torch.nn.Module, spec: ModelSpec, args: argparse.Namespace, peak: float
) -> list[dict]:
    size = spec.input_size or (384, 160)
    dev = args.device
    x = torch.randn(args.slices, 3, *size)
    flops = flops_per_slice(net, size)
    rows = []
    net = net.to(dev).eval()
    xd = x.to(dev)

    def fp32() -> None:
        with torch.inference_mode():
            net(xd)

    net_cl = net.to(memory_format=torch.channels_last)
    x_cl = xd.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16

    def bf16() -> None:
        with (
            torch.inference_mode(),
            torch.autocast(device_type=torch.device(dev).type, dtype=dtype),
        ):
            net_cl(x_cl)

    variants = [("torch fp32", fp32), ("torch bf16 + channels_last", bf16)]
    with tempfile.TemporaryDirectory() as tmp:
        pt = Path(tmp) / "m.pt"
        save_weights(net.to("cpu").to(memory_format=torch.contiguous_format), spec, pt)
        onx = export_onnx(pt, Path(tmp) / "m.onnx")
        runner = OnnxRunner(onx, spec, dev, args.threads)
        xn = x.numpy()

        def ort_run() -> None:
            runner.session.run(None, {runner.input_name: xn})

        variants.append(("ONNX Runtime", ort_run))
        net = net.to(dev)
        for vname, fn in variants:
            s = time_call(fn, args.slices, args.repeat, dev)
            rows.append({
                "model": name, "variant": vname, "s_per_slice": s, "slices_per_s": 1 / s,
                "gflop_per_slice": flops / 1e9, "gflops": flops / s / 1e9,
                "peak_fraction": flops / s / 1e9 / peak,
            })  # fmt: skip
            print(f"  {name:28s} {vname:28s} {s:8.4f} s/slice", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=8, help="batch = slices per forward")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-resnet152", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak_gflops(args.device)
    print(f"device {args.device}, threads {args.threads}: fp32 matmul {peak:.1f} GFLOP/s")
    rows = []
    if DEFAULT_SEGMENTATION_WEIGHTS.exists():
        net, spec = load_network(DEFAULT_SEGMENTATION_WEIGHTS)
        name = f"shipped ({spec.encoder}, d{spec.encoder_depth}, {spec.input_size})"
    else:
        spec = ModelSpec.from_config({}, "segmentation")
        net, name = build_network(spec), "demo architecture (random)"
    rows += bench_model(name, net, spec, args, peak)
    if not args.skip_resnet152:
        big = ModelSpec(
            encoder="resnet152",
            encoder_depth=5,
            decoder_channels=(256, 128, 64, 32, 16),
            target_spacing_mm=None,
            input_size=(896, 320),
        )
        rows += bench_model("resnet152 U-Net 896x320 (random)", build_network(big), big, args, peak)
    print()
    print("| model | variant | s/slice | slices/s | GFLOP/slice | GFLOP/s | of matmul peak |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['variant']} | {r['s_per_slice']:.4f} | {r['slices_per_s']:.1f} "
            f"| {r['gflop_per_slice']:.2f} | {r['gflops']:.1f} | {100 * r['peak_fraction']:.0f} % |"
        )
    print(
        f"\nfp32 matmul peak measured: {peak:.1f} GFLOP/s ({args.device}, {args.threads} threads)"
    )


if __name__ == "__main__":
    main()
