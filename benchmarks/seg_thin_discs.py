#!/usr/bin/env python3
"""Segmentation weights vs thin discs: whole-spine count labeling on fresh synthetic subjects,
and the fine-tuning run that produced the shipped ``segmentation.pt``.

A missed thin disc (cervical C3-C4/C4-C5, ~5 mm = 2-3 voxels at the model's 2 mm grid, or
L5-S1) merges two vertebrae, shifts the count from C2 and turns a normal spine into
"sacralization".  ``eval`` measures that on **synthetic** subjects (default preset, seeds
900000..900019, anomalies cycling normal / lumbarization / sacralization):
``predict_semantic`` -> ``split.split_instances`` -> ``counting.count_labels``, then per
subject the status (== true anomaly?), whether every ground-truth structure's
majority-overlap instance carries its name, and vertebra / disc Dice.

``finetune`` starts from given weights (same architecture, spacing, input size) and trains
on fresh synthetic subjects (seeds 800000.., disjoint from the evaluation seeds) with the
disc class up-weighted in the cross-entropy, a small learning rate and a wall-clock budget.

Usage::

    .venv/bin/python benchmarks/seg_thin_discs.py eval spinecensus/weights/segmentation.pt
    .venv/bin/python benchmarks/seg_thin_discs.py finetune spinecensus/weights/segmentation.pt \
        /tmp/candidate.pt --seconds 1140 --subjects 30
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
import torch

from spinecensus import synthetic
from spinecensus.naming.counting import count_labels
from spinecensus.segment.weights import load_model, read_spec, save_weights
from spinecensus.split.instances import split_instances
from spinecensus.train import loop, metrics, slice_bank

ANOMALIES = ("normal", "lumbarization", "sacralization")
EVAL_SEEDS = range(900000, 900020)
TRAIN_SEED0 = 800000


def subject(seed: int, i: int) -> synthetic.SyntheticSubject:
    cfg = synthetic.SyntheticConfig.preset("default")
    return synthetic.generate_subject(seed, anomaly=ANOMALIES[i % 3], config=cfg)


def evaluate(weights: str) -> list[dict]:
    model = load_model(weights, amp=None)
    rows = []
    for i, seed in enumerate(EVAL_SEEDS):
        sub = subject(seed, i)
        sem = model.predict_semantic(sub.image, sub.spacing_mm)
        dice = metrics.dice_per_class(sem, np.asarray(sub.semantic), [1, 2])
        split = split_instances(sem, sub.spacing_mm)
        lab = count_labels(split)
        acc = metrics.name_accuracy(split.instances, lab.id_to_name, sub.instances, sub.id_to_name)
        rows.append({
            "seed": seed, "anomaly": sub.anomaly, "status": lab.transitional_status,
            "valid": split.valid, "names_acc": acc, "dice_vertebra": dice[1], "dice_disc": dice[2],
            "gt_discs": sum("-" in n for n in sub.id_to_name.values()),
            "pred_discs": split.kinds.count("disc"),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def finetune(init: str, out: str, seconds: float, n_subjects: int, lr: float, disc_w: float):
    t0 = time.perf_counter()
    spec = read_spec(init)
    seeds = list(range(TRAIN_SEED0, TRAIN_SEED0 + n_subjects))
    vols = []
    for i, s in enumerate(seeds):
        sub = subject(s, i)
        vols.append((sub.image, sub.semantic, sub.spacing_mm))
    bank = slice_bank.to_bank(vols, spec)
    net, losses = loop.train_network(
        spec, bank, steps=100_000, batch_size=8, crop=(192, 96), seed=17, lr=lr,
        log_every=25, log_path=out + ".log.tsv", name="finetune", amp="auto",
        max_seconds=seconds - (time.perf_counter() - t0), init_weights=init,
        class_weights=(1.0, 1.0, disc_w),
    )  # fmt: skip
    spec.training = {**spec.training, "fine_tune": {
        "from_sha256": spec.sha256,
        "data": "fresh synthetic subjects, default preset, anomalies cycling "
        "normal/lumbarization/sacralization",
        "n_subjects": n_subjects, "seeds": [seeds[0], seeds[-1]], "steps": len(losses),
        "batch_size": 8, "crop": [192, 96], "lr": lr, "ce_class_weights": [1.0, 1.0, disc_w],
        "loss": "class-weighted CE + soft Dice", "max_seconds": seconds,
        "threads": torch.get_num_threads(), "train_seconds": round(time.perf_counter() - t0, 1),
    }}  # fmt: skip
    spec.sha256 = spec.git_commit = None
    save_weights(net, spec, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("eval")
    ev.add_argument("weights")
    ev.add_argument("--json", help="write the per-subject rows here")
    ft = sub.add_parser("finetune")
    ft.add_argument("init")
    ft.add_argument("out")
    ft.add_argument("--seconds", type=float, default=1140.0)
    ft.add_argument("--subjects", type=int, default=30)
    ft.add_argument("--lr", type=float, default=3e-4)
    ft.add_argument("--disc-weight", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.cmd == "finetune":
        finetune(args.init, args.out, args.seconds, args.subjects, args.lr, args.disc_weight)
        return
    rows = evaluate(args.weights)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print(
        f"SUMMARY (synthetic) {args.weights}: status == anomaly "
        f"{sum(r['status'] == r['anomaly'] for r in rows)}/{len(rows)}, all names right "
        f"{sum(r['names_acc'] == 1.0 for r in rows)}/{len(rows)}, Dice vertebra "
        f"{np.mean([r['dice_vertebra'] for r in rows]):.4f} disc "
        f"{np.mean([r['dice_disc'] for r in rows]):.4f}"
    )


if __name__ == "__main__":
    main()
