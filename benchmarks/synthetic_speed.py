"""Synthetic generator speed: seconds per whole-spine subject, one core.

Run:  .venv/bin/python benchmarks/synthetic_speed.py [--n 20] [--preset default|tiny|fine]

``fine`` is the issue's full in-plane range (0.5-1.5 mm) for comparison with the default
(1.0-1.5 mm).  Prints mean / median / max wall and CPU seconds and the mean voxel count (synthetic).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says

import numpy as np  # noqa: E402

from spinecensus.synthetic import SyntheticConfig, generate_subject  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--preset", choices=("default", "tiny", "fine"), default="default")
    args = ap.parse_args()
    if args.preset == "fine":
        cfg = SyntheticConfig(inplane_spacing_mm=(0.5, 1.5))
    else:
        cfg = SyntheticConfig.preset(args.preset)
    generate_subject(10_000, "normal", cfg)  # warm-up (imports, caches)
    secs, cpu, vox, shapes = [], [], [], []
    anomalies = ("normal", "lumbarization", "sacralization")
    for i in range(args.n):
        t0, c0 = time.perf_counter(), time.process_time()
        s = generate_subject(i, anomalies[i % 3], cfg)
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        vox.append(s.image.size)
        shapes.append(s.image.shape)
    a = np.array(secs)
    print(f"preset={args.preset} n={args.n} (synthetic)")
    c = np.array(cpu)
    print(f"wall s/subject: mean {a.mean():.3f}  median {np.median(a):.3f}  max {a.max():.3f}")
    # CPU time is the fairer one-core figure on a shared, busy machine
    print(f"cpu  s/subject: mean {c.mean():.3f}  median {np.median(c):.3f}  max {c.max():.3f}")
    print(f"voxels/subject: mean {np.mean(vox) / 1e6:.2f} M  (e.g. shape {shapes[0]})")
    print(f"throughput: {np.sum(vox) / a.sum() / 1e6:.1f} M voxels/s")


if __name__ == "__main__":
    main()
