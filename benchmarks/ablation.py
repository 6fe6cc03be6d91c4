"""Ablation of the levers beyond the paper: named variants of TrainConfig on the shared data.

    python -m benchmarks ablation --dataset abdomen_vessels_ct --seeds 0 1 2 \\
        --variant sup-lr3e-3:method=supervised,lr=0.003 \\
        --variant segpl-levers:method=segpl,lr=0.003,burn_in=0.3,unsup_dice=batch

Each variant is ``name:key=value,...`` over TrainConfig fields; results are appended to a JSON
file (runs already there are skipped) and summarised as a Markdown table. Labelled slices and
scoring are those of ``accuracy.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from napari_segpl.engine import TrainConfig

from .accuracy import DATASETS, run_one


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    fields = {f.name: f.type for f in TrainConfig.__dataclass_fields__.values()}
    values: dict = {}
    for item in filter(None, body.split(",")):
        key, _, raw = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown TrainConfig field {key!r} in variant {name!r}")
        default = getattr(TrainConfig(), key)
        if isinstance(default, bool):
            values[key] = raw.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            values[key] = int(raw)
        elif isinstance(default, float):
            values[key] = float(raw)
        elif isinstance(default, tuple):  # e.g. ct_window=-300;1600
            values[key] = tuple(float(v) for v in raw.split(";"))
        else:
            values[key] = raw
    return name, values


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ablation")
    parser.add_argument("--dataset", default="abdomen_vessels_ct", choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--labelled", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], required=True)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ablation.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    for text in args.variant:
        name, values = parse_variant(text)
        method = values.pop("method", "segpl")
        for seed in args.seeds:
            key = (args.dataset, name, seed, args.labelled)
            if any((r["dataset"], r["variant"], r["seed"], r["k"]) == key for r in rows):
                continue
            row = run_one(args.dataset, DATASETS[args.dataset], method, seed, args.labelled, values)
            row.update(variant=name, k=args.labelled)
            rows.append(row)
            print(json.dumps({"variant": name, "seed": seed, "iou": row["iou"]}), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
    print("| dataset | K | variant | mean IoU per seed | mean |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(r["variant"] for r in rows):
        for ds in dict.fromkeys(r["dataset"] for r in rows):
            for k in sorted({r["k"] for r in rows}):
                runs = [r for r in rows if (r["variant"], r["dataset"], r["k"]) == (name, ds, k)]
                if runs:
                    per = [statistics.mean(r["iou"].values()) for r in runs]
                    seeds = ", ".join(f"{v:.3f}" for v in per)
                    print(f"| {ds} | {k} | {name} | {seeds} | {statistics.mean(per):.3f} |")
    return 0
