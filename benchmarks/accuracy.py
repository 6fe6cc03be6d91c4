"""(c) Accuracy on the real volumes in ../shared/data: supervised, segpl and segpl-vi trained on
3 labelled slices spread through the structures, scored on every other slice holding foreground.

Slices are chosen at the 25th, 50th and 75th percentile of the slices that hold any foreground
along the axis. IoU is foreground IoU per class, pooled over the voxels of all test slices
(background excluded). Each (method, seed) pair shares its seed, so differences are paired.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from napari_segpl.engine import (
    CollapseWarning,
    StepEvent,
    TrainConfig,
    Trainer,
    labelled_slices,
    overlap_scores,
    predict_volume,
    prepare_data,
)
from napari_segpl.volume import read_labels, read_volume

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {"abdomen_vessels_ct": 2, "brain_tissue_mri": 2, "lungs_ct": 2}
METHODS = ("supervised", "segpl", "segpl-vi")


def spread_slices(labels: np.ndarray, axis: int, k: int) -> list[int]:
    """k slices at evenly spaced percentiles of the foreground-holding slices."""
    fg = labelled_slices(labels, axis)
    picks = [fg[int(round(q * (len(fg) - 1)))] for q in np.linspace(0.25, 0.75, k)]
    return sorted(set(picks))


def run_one(name: str, axis: int, method: str, seed: int, k: int, config: dict) -> dict:
    image = read_volume(DATA / f"{name}_image.nii.gz")
    truth = read_labels(DATA / f"{name}_label.nii.gz", like=image).array
    chosen = spread_slices(truth, axis, k)
    cfg = TrainConfig(method=method, axis=axis, seed=seed, preview_every=0, **config)
    sparse = np.zeros_like(truth)
    index = [slice(None)] * 3
    index[axis] = chosen
    sparse[tuple(index)] = truth[tuple(index)]
    t0 = time.perf_counter()
    trainer = Trainer(cfg, prepare_data(image.array, sparse, cfg, labelled=chosen))
    warnings, trace = [], []
    for event in trainer.run():
        if isinstance(event, CollapseWarning):
            warnings.append(event.message)
        elif isinstance(event, StepEvent) and event.mu is not None and event.step % 20 == 0:
            trace.append([event.step, round(event.mu, 4), round(event.sigma, 4)])
    model = trainer.model
    seconds = time.perf_counter() - t0
    pred = predict_volume(model, image.array, device=cfg.device)
    test = [s for s in labelled_slices(truth, axis) if s not in chosen]
    scores = overlap_scores(pred.labels, truth, axis=axis, slices=test)
    return {
        "dataset": name,
        "axis": axis,
        "method": method,
        "seed": seed,
        "labelled": chosen,
        "test_slices": len(test),
        "iou": {str(c): s["iou"] for c, s in scores.items()},
        "voxels": {str(c): [s["pred_voxels"], s["true_voxels"]] for c, s in scores.items()},
        "collapse_warnings": warnings,
        "threshold_trace": trace,
        "train_seconds": seconds,
        "config": cfg.to_dict(),
    }


def table(rows: list[dict]) -> str:
    lines = ["| dataset | method | IoU per class (mean of seeds) | mean IoU | per seed |"]
    lines.append("|---|---|---|---|---|")
    for name in dict.fromkeys(r["dataset"] for r in rows):
        for method in METHODS:
            runs = [r for r in rows if r["dataset"] == name and r["method"] == method]
            if not runs:
                continue
            classes = sorted(runs[0]["iou"])
            per_class = {c: statistics.mean(r["iou"].get(c, 0.0) for r in runs) for c in classes}
            seeds = [statistics.mean(r["iou"].values()) for r in runs]
            pc = ", ".join(f"{c}: {v:.3f}" for c, v in per_class.items())
            ps = ", ".join(f"{v:.3f}" for v in seeds)
            lines.append(f"| {name} | {method} | {pc} | {statistics.mean(seeds):.3f} | {ps} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks accuracy")
    parser.add_argument("--datasets", nargs="+", default=["abdomen_vessels_ct", "brain_tissue_mri"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labelled", type=int, default=3)
    parser.add_argument("--steps", type=int, help="override the default number of steps")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    args = parser.parse_args(argv)
    config = {} if args.steps is None else {"steps": args.steps}
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["dataset"], r["method"], r["seed"]) for r in rows}
    for name in args.datasets:
        for seed in args.seeds:
            for method in args.methods:
                if (name, method, seed) in done:
                    continue
                row = run_one(name, DATASETS[name], method, seed, args.labelled, config)
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("dataset", "method", "seed", "iou")}))
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0
