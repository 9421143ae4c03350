"""Segmentation inference speed: shipped demo model vs the thesis-sized resnet152 U-Net, and
the Dice cost of bf16 (synthetic).

Speed (default): per model, seconds per slice and slices per second for

  * torch fp32, the plain network (what the code ran before issue 23),
  * the package's runner in fp32 (BatchNorm folded, channels-last: ``runners.TorchRunner``),
  * the runner under bf16 autocast,
  * ONNX Runtime (CPU execution provider; CUDA when available),

the FLOPs of one slice (``torch.utils.flop_counter.FlopCounterMode``, multiply-add = 2 FLOPs)
and the fraction of a peak each variant reaches: on a CPU the fp32 matmul peak measured in
the same run (a large ``torch.mm``); on CUDA the device's dense bf16 peak, ``--peak-tflops``
(default 989 TFLOP/s: H100 / H200 SXM dense bf16, NVIDIA's datasheet figure without
sparsity), i.e. the fraction of the model's bf16 FLOP bound.

``--precision-dice N``: vertebra / disc Dice of fp32 and bf16 predictions of the shipped
segmentation weights against the ground truth of N fresh synthetic subjects (default preset,
seeds 900000.., anomalies cycling), and their difference; ``--record`` writes it into the
weights' sidecar (``metrics.precision_dice``, marked synthetic).

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/inference.py [--threads 2] [--slices 8]
        [--device cpu|cuda] [--peak-tflops 989] [--skip-resnet152] [--skip-onnx]
    .venv/bin/python benchmarks/inference.py --precision-dice 4 [--record]

Inputs are network-grid batches (the model's ``input_size``; random data - speed does not
depend on content); resnet152 has random weights.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from spinecensus.segment.network import build_network  # noqa: E402
from spinecensus.segment.runners import OnnxRunner, TorchRunner  # noqa: E402
from spinecensus.segment.spec import ModelSpec  # noqa: E402
from spinecensus.segment.weights import (  # noqa: E402
    DEFAULT_SEGMENTATION_WEIGHTS,
    load_network,
    save_weights,
    sidecar_path,
)

#: dense (no sparsity) bf16 tensor-core peak of an H100 / H200 SXM, TFLOP/s (datasheet)
H100_BF16_DENSE_TFLOPS = 989.0


def matmul_peak_gflops(device: str, n: int = 2048, repeat: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_slice(net: torch.nn.Module, size: tuple[int, int]) -> float:
    """FLOPs of one forward pass of one slice (multiply-add = 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, *size)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net.cpu()(x)
    return float(fc.get_total_flops())


def time_call(fn, n_slices: int, repeat: int, device: str) -> float:
    """Best seconds per slice over ``repeat`` runs (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best / n_slices


def _variants(net, spec, args, x) -> list[tuple[str, object]]:
    """(name, zero-argument callable running one batch) of every variant measured."""
    dev = args.device
    plain = net.to(dev).eval()
    xd = x.to(dev)

    def fp32_plain() -> None:
        with torch.inference_mode():
            plain(xd)

    # the package's path: pinned host batch, asynchronous copy, folded BN, channels-last
    xp = x.pin_memory() if dev.startswith("cuda") else x
    runners = {p: TorchRunner(net, spec, dev, p) for p in ("fp32", "bf16")}
    out = [("torch fp32 (plain network)", fp32_plain)]
    for p, r in runners.items():
        out.append((f"runner {p} (folded BN, channels-last)", lambda r=r: r(xp)))
    return out


def bench_model(
    name: str, net: torch.nn.Module, spec: ModelSpec, args: argparse.Namespace, peak: float
) -> list[dict]:
    """Rows of the table for one network; ``peak`` in GFLOP/s."""
    size = spec.input_size or (512, 160)
    x = torch.randn(args.slices, 3, *size)
    flops = flops_per_slice(net, size)
    variants = _variants(net, spec, args, x)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_onnx:
            from spinecensus.segment.onnx_export import export_onnx

            pt = Path(tmp) / "m.pt"
            save_weights(copy.deepcopy(net).cpu(), spec, pt)  # the timed net stays put
            onx = export_onnx(pt, Path(tmp) / "m.onnx")
            runner = OnnxRunner(onx, spec, args.device, args.threads)
            feed = {runner.input_name: x.numpy()}
            variants.append(("ONNX Runtime", lambda: runner.session.run(None, feed)))
        for vname, fn in variants:
            s = time_call(fn, args.slices, args.repeat, args.device)
            rows.append({
                "model": name, "variant": vname, "s_per_slice": s, "slices_per_s": 1 / s,
                "gflop_per_slice": flops / 1e9, "gflops": flops / s / 1e9,
                "peak_fraction": flops / s / 1e9 / peak,
            })  # fmt: skip
            print(f"  {name:28s} {vname:40s} {s:8.4f} s/slice {1 / s:9.1f} slices/s", flush=True)
    return rows


def precision_dice(n: int, weights: Path, threads: int) -> dict:
    """Dice (vertebra, disc) of fp32 and bf16 predictions on ``n`` fresh synthetic subjects."""
    from spinecensus import synthetic
    from spinecensus.segment.weights import load_model
    from spinecensus.train.metrics import dice_per_class

    anomalies = ("normal", "lumbarization", "sacralization")
    cfg = synthetic.SyntheticConfig.preset("default")
    models = {p: load_model(weights, precision=p, threads=threads) for p in ("fp32", "bf16")}
    per = {p: [] for p in models}
    agree = []
    for i in range(n):
        sub = synthetic.generate_subject(900000 + i, anomaly=anomalies[i % 3], config=cfg)
        preds = {p: m.predict_semantic(sub.image, sub.spacing_mm) for p, m in models.items()}
        for p, pred in preds.items():
            per[p].append(dice_per_class(pred, np.asarray(sub.semantic), [1, 2]))
        agree.append(float(np.mean(preds["fp32"] == preds["bf16"])))
        print(f"  subject {i}: voxels equal {agree[-1]:.5f}", flush=True)
    out: dict = {"synthetic": True, "n_subjects": n, "seeds": [900000, 900000 + n - 1]}
    for p, dices in per.items():
        out[p] = {
            "dice_vertebra": float(np.nanmean([d[1] for d in dices])),
            "dice_disc": float(np.nanmean([d[2] for d in dices])),
        }
    out["bf16_minus_fp32"] = {k: out["bf16"][k] - out["fp32"][k] for k in out["fp32"]}
    out["voxels_equal_min"] = min(agree)
    out["eval"] = (
        "benchmarks/inference.py --precision-dice: predict_semantic on fresh synthetic "
        "subjects (default preset, anomalies cycling normal/lumbarization/sacralization)"
    )
    return out


def _record(weights: Path, result: dict) -> None:
    """Write ``result`` into the sidecar's ``metrics.precision_dice`` (the .pt's sha256 is
    unchanged, so the sidecar still describes the same weights)."""
    from spinecensus.io import write_json

    side = sidecar_path(weights)
    spec = json.loads(side.read_text())
    spec.setdefault("metrics", {})["precision_dice"] = result
    write_json(spec, side)
    print(f"recorded in {side}")


def _print_table(rows: list[dict], args: argparse.Namespace, peak: float) -> None:
    cuda = args.device.startswith("cuda")
    of = "of bf16 FLOP bound" if cuda else "of fp32 matmul peak"
    print(f"\n| model | variant | s/slice | slices/s | GFLOP/slice | GFLOP/s | {of} |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['variant']} | {r['s_per_slice']:.4f} | {r['slices_per_s']:.1f} "
            f"| {r['gflop_per_slice']:.2f} | {r['gflops']:.1f} | {100 * r['peak_fraction']:.1f} % |"
        )
    if cuda:
        print(f"\nbf16 FLOP bound: {peak / 1e3:.0f} TFLOP/s dense (--peak-tflops; default = "
              f"H100/H200 SXM datasheet) on {torch.cuda.get_device_name()}")  # fmt: skip
    else:
        print(f"\nfp32 matmul peak measured: {peak:.1f} GFLOP/s ({args.threads} threads)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--slices", type=int, default=8, help="batch = slices per forward")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS,
                    help="CUDA: the device's dense bf16 peak (default H100/H200: 989)")  # fmt: skip
    ap.add_argument("--skip-resnet152", action="store_true")
    ap.add_argument("--skip-onnx", action="store_true")
    ap.add_argument("--precision-dice", type=int, default=0, metavar="N")
    ap.add_argument("--record", action="store_true", help="write --precision-dice to the sidecar")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.precision_dice:
        result = precision_dice(args.precision_dice, DEFAULT_SEGMENTATION_WEIGHTS, args.threads)
        print(json.dumps(result, indent=2))
        if args.record:
            _record(DEFAULT_SEGMENTATION_WEIGHTS, result)
        return
    cuda = args.device.startswith("cuda")
    peak = args.peak_tflops * 1e3 if cuda else matmul_peak_gflops(args.device)
    print(f"device {args.device}, threads {args.threads}: peak {peak:.1f} GFLOP/s "
          f"({'bf16 datasheet' if cuda else 'fp32 matmul, measured'})")  # fmt: skip
    net, spec = load_network(DEFAULT_SEGMENTATION_WEIGHTS)
    name = f"shipped ({spec.encoder}, d{spec.encoder_depth}, {spec.input_size})"
    rows = bench_model(name, net, spec, args, peak)
    if not args.skip_resnet152:
        big = ModelSpec(encoder="resnet152", encoder_depth=5,
                        decoder_channels=(256, 128, 64, 32, 16), target_spacing_mm=None,
                        input_size=(896, 320))  # fmt: skip
        rows += bench_model("resnet152 U-Net 896x320 (random)", build_network(big), big, args, peak)
    _print_table(rows, args, peak)


if __name__ == "__main__":
    main()
