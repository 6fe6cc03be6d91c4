"""(c) Accuracy on the real volumes in ../shared/data (or $SEGPL_DATA): supervised, segpl and
segpl-vi trained on K labelled slices spread through the structures, scored on every other slice
holding foreground.

Slices are chosen at evenly spaced percentiles from the 25th to the 75th of the slices that hold
any foreground along the axis (K = 3: the 25th, 50th and 75th); one slice is the median, or
the slice nearest it that shows every class (``spread_slices``; from 2026-11-27). IoU is
foreground IoU per class, pooled over the voxels of all test slices (background excluded). Each
(method, seed) pair shares its seed, so differences are paired. Rows from 2026-12-01 also hold
the score of what a user exports (``whole_iou``, ``whole_dice``: every slice but the painted
ones, empty slices included) and the predicted-to-true volume ratio per class. (Rows in
``accuracy.json`` from before 2026-11-26 used linspace's first point for K = 1: the 25th
percentile.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from napari_segpl.engine import (
    CollapseWarning,
    StepEvent,
    TrainConfig,
    Trainer,
    exported_scores,
    labelled_slices,
    overlap_scores,
    painted_slices,
    predict_volume,
    prepare_data,
)
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.guard import labelled_fractions
from napari_segpl.volume import Volume, read_labels, read_volume

from .recipes import RECIPES

DATA = Path(
    os.environ.get("SEGPL_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
#: the tuning set (recipes and defaults are chosen on it) and the validation set (reported beside
#: it, never tuned on); dataset -> the axis painted along
TUNING = {"abdomen_vessels_ct": 2, "brain_tissue_mri": 2, "lungs_ct": 2}
VALIDATION = {"abdomen_organs_ct": 2, "abdomen_organs_mri": 2}
DATASETS = {**TUNING, **VALIDATION}
METHODS = ("supervised", "segpl", "segpl-vi")


def spread_slices(labels: np.ndarray, axis: int, k: int) -> list[int]:
    """k slices at evenly spaced percentiles of the foreground-holding slices; one slice is the
    median (the slice a user painting only one would pick), not linspace's first point.

    With one slice, a user paints one that shows every class: if a class holds under a quarter
    of its median per-slice voxel count on the median slice, the nearest slice where every
    class reaches that quarter is taken instead (ties: the one whose scarcest class, relative
    to its median, is larger). Only the abdominal vessels are affected: their median slice, 57,
    holds 3 vein voxels against a median of 40 (slice 58: 22); before 2026-11-27 K = 1 used
    slice 57 there."""
    fg = labelled_slices(labels, axis)
    quantiles = [0.5] if k == 1 else np.linspace(0.25, 0.75, k)
    picks = [fg[int(round(q * (len(fg) - 1)))] for q in quantiles]
    if k == 1:
        picks = [_showing_every_class(labels, axis, fg, picks[0])]
    return sorted(set(picks))


def _showing_every_class(labels: np.ndarray, axis: int, fg: list[int], start: int) -> int:
    """The slice nearest ``start`` (itself if it qualifies) in which every class holds at
    least a quarter of its median count over the foreground-holding slices."""
    classes = [int(c) for c in np.unique(labels) if c]
    counts = np.array([[(np.take(labels, s, axis=axis) == c).sum() for c in classes] for s in fg])
    median = np.maximum(np.median(counts, axis=0), 1.0)
    relative = (counts / median).min(axis=1)
    ok = [i for i in range(len(fg)) if relative[i] >= 0.25]
    if not ok:
        return start
    i0 = fg.index(start)
    best = min(ok, key=lambda i: (abs(i - i0), -relative[i]))
    return fg[best]


class Case(NamedTuple):
    """A dataset with k painted slices, as every accuracy benchmark sets it up."""

    image: Volume
    truth: np.ndarray
    chosen: list[int]  # the painted slices
    sparse: np.ndarray  # the truth on the painted slices, 0 elsewhere
    test: list[int]  # every other slice holding foreground


def load_case(name: str, axis: int, k: int) -> Case:
    """Reads a dataset and paints k slices of its truth (``spread_slices``)."""
    image = read_volume(DATA / f"{name}_image.nii.gz")
    truth = read_labels(DATA / f"{name}_label.nii.gz", like=image).array
    chosen = spread_slices(truth, axis, k)
    sparse = np.zeros_like(truth)
    index = [slice(None)] * 3
    index[axis] = chosen
    sparse[tuple(index)] = truth[tuple(index)]
    test = [s for s in labelled_slices(truth, axis) if s not in chosen]
    return Case(image, truth, chosen, sparse, test)


def run_one(
    name: str, axis: int, method: str, seed: int, k: int, config: dict, preset: str | None = None
) -> dict:
    """One training and its scores. ``preset`` None: what a user gets, the preset suggested by
    the image (``ct`` or ``mri``); ``config`` overrides the preset."""
    image, truth, chosen, sparse, test = load_case(name, axis, k)
    preset = preset or suggest_preset(image.array)
    cfg = TrainConfig.from_preset(
        preset, method=method, axis=axis, seed=seed, preview_every=0, **config
    )
    t0 = time.perf_counter()
    trainer = Trainer(cfg, prepare_data(image.array, sparse, cfg, labelled=chosen))
    warnings, trace, fg_trace, window = [], [], [], []
    for event in trainer.run():
        if isinstance(event, CollapseWarning):
            warnings.append(event.message)
        elif isinstance(event, StepEvent):
            if event.mu is not None and event.step % 20 == 0:
                trace.append([event.step, round(event.mu, 4), round(event.sigma, 4)])
            if event.fg_fraction is not None:  # pseudo labels' foreground, per 10-step window
                window.append(event.fg_fraction)
                if event.step % 10 == 0:
                    means = np.mean(window, axis=0)
                    fg_trace.append([event.step, *(round(float(f), 5) for f in means)])
                    window = []
    model = trainer.model
    seconds = time.perf_counter() - t0
    # with SEGPL_SAVE_PROB, SegPL-VI's MC std over 16 thresholds in the same pass (drawn with
    # inference's own generator: the labels are the same as without)
    mc = 16 if os.environ.get("SEGPL_SAVE_PROB") and model.method.learns_threshold else 0
    # ... and, from 2026-12-02 08:25, the TTA std over 8 small affine maps (with flips until
    # 12:30; its own seeded transforms: labels unchanged too)
    tta = 8 if os.environ.get("SEGPL_SAVE_PROB") else 0
    # scored as exported: each class kept where it touches its paint (since (rr), 2026-12-05)
    paint = painted_slices(sparse, chosen, axis)
    pred = predict_volume(
        model,
        image.array,
        device=cfg.device,
        mc_samples=mc,
        tta_samples=tta,
        paint=paint,
        tta_mean=bool(tta),  # (I2): pooled with the twin's TTA moments
    )
    scores = overlap_scores(pred.labels, truth, axis=axis, slices=test)
    # what the user exports: every slice but the painted ones, empty slices included
    whole = exported_scores(pred.labels, truth, chosen, axis=axis, classes=list(scores))
    sweep = {}  # (vv): the same probabilities cut at other thresholds (issue 25)
    if os.environ.get("SEGPL_CUT_SWEEP") and pred.probabilities is not None:
        from .cut_sweep import cut_sweep

        sweep = cut_sweep(pred.probabilities, truth, chosen, paint, axis, cfg.nested)
    per_slice = []  # where along the axis a method gains or loses: [slice, IoU per class]
    for s in test:
        p_s, t_s = np.take(pred.labels, s, axis=axis), np.take(truth, s, axis=axis)
        ious = []
        for c in scores:
            union = np.logical_or(p_s == c, t_s == c).sum()
            ious.append(
                round(float(np.logical_and(p_s == c, t_s == c).sum() / union), 3) if union else None
            )
        per_slice.append([int(s), *ious])
    # predicted voxels per class on every slice along the axis: where a mask grows
    moved = np.moveaxis(pred.labels, axis, 0).reshape(pred.labels.shape[axis], -1)
    slice_voxels = [[int((m == c).sum()) for c in scores] for m in moved]
    if os.environ.get("SEGPL_SAVE_PRED"):  # the labels, for rules computed after the runs
        folder = Path(os.environ["SEGPL_SAVE_PRED"])
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{name}-k{k}-{method}-s{seed}"
        np.savez_compressed(folder / f"{stem}.npz", labels=pred.labels.astype(np.uint8))
    if os.environ.get("SEGPL_SAVE_PROB"):  # probabilities, MC and TTA std (issue 25's AUROC)
        folder = Path(os.environ["SEGPL_SAVE_PROB"])
        folder.mkdir(parents=True, exist_ok=True)
        from .uncertainty_auroc import saved_arrays  # (it imports this module)

        np.savez_compressed(folder / f"{name}-k{k}-{method}-s{seed}.npz", **saved_arrays(pred))
    learnt = {}  # SegPL-VI: the labels cut at the head's mu too, and mu per class (bb)
    if model.method.learns_threshold:
        from .threshold_signal import learnt_cut

        learnt = learnt_cut(
            model, image.array, truth, chosen, axis, list(scores), cfg.device, paint=paint
        )
    return {
        **learnt,
        **sweep,
        "dataset": name,
        "axis": axis,
        "method": method,
        "seed": seed,
        "labelled": chosen,
        "test_slices": len(test),
        "iou": {str(c): s["iou"] for c, s in scores.items()},
        "voxels": {str(c): [s["pred_voxels"], s["true_voxels"]] for c, s in scores.items()},
        "whole_iou": {str(c): s["iou"] for c, s in whole.items()},
        "whole_dice": {str(c): s["dice"] for c, s in whole.items()},
        "volume_ratio": {str(c): s["volume_ratio"] for c, s in whole.items()},
        "slice_iou": per_slice,
        "slice_voxels": slice_voxels,
        "preset": preset,
        "collapse_warnings": warnings,
        "threshold_trace": trace,
        "fg_trace": fg_trace,
        "painted_fractions": [round(f, 5) for f in labelled_fractions(trainer.data)],
        "train_seconds": seconds,
        "config": cfg.to_dict(),
        "device": _device_name(trainer.device),
        "torch": torch.__version__,
    }


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def _mean_iou(row: dict) -> float:
    return statistics.mean(row["iou"].values())


def _best_supervised(rows: list[dict], name: str, k: int) -> tuple[str, dict[int, float]]:
    """The supervised recipe with the highest mean IoU on a dataset and K, and its per-seed
    scores: "supervised at its own best settings"."""
    best: tuple[float, str, dict[int, float]] = (-1.0, "", {})
    for recipe in sorted({r["recipe"] for r in rows}):
        runs = [
            r
            for r in rows
            if (r["dataset"], r["k"], r["recipe"], r["method"]) == (name, k, recipe, "supervised")
        ]
        if runs:
            per_seed = {r["seed"]: _mean_iou(r) for r in runs}
            best = max(best, (statistics.mean(per_seed.values()), recipe, per_seed))
    return best[1], best[2]


def _diffs(runs: list[dict], sup: dict[int, float]) -> str:
    diffs = [_mean_iou(r) - sup[r["seed"]] for r in runs if r["seed"] in sup]
    if not diffs:
        return ""
    text = ", ".join(f"{d:+.3f}" for d in diffs)
    return f"{text} (mean {statistics.mean(diffs):+.3f})"


def _whole(runs: list[dict]) -> str:
    """Mean whole-volume IoU and mean volume ratio per class, for rows that hold them."""
    held = [r for r in runs if "whole_iou" in r]
    if not held:
        return " |"
    iou = statistics.mean(statistics.mean(r["whole_iou"].values()) for r in held)
    ratio = ", ".join(
        f"{c}: {statistics.mean(r['volume_ratio'][c] for r in held):.2f}"
        for c in sorted(held[0]["volume_ratio"])
    )
    return f"{iou:.3f} | {ratio}"


def table(rows: list[dict]) -> str:
    """One line per dataset, K, recipe and method: IoU per class, mean, per seed, the paired
    difference to supervised training of the same recipe (same seeds), and to supervised
    training with the best recipe measured for that dataset and K."""
    lines = [
        "| dataset | K | recipe | method | IoU per class (mean of seeds) | mean IoU | per seed "
        "| minus supervised (same recipe), per seed | minus best supervised, per seed "
        "| seeds with a class < 0.01 | whole-volume mean IoU | volume ratio per class |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = dict.fromkeys((r["dataset"], r["k"], r["recipe"]) for r in rows)
    for name, k, recipe in sorted(keys):
        group = [r for r in rows if (r["dataset"], r["k"], r["recipe"]) == (name, k, recipe)]
        sup = {r["seed"]: _mean_iou(r) for r in group if r["method"] == "supervised"}
        best_recipe, best = _best_supervised(rows, name, k)
        for method in METHODS:
            runs = sorted((r for r in group if r["method"] == method), key=lambda r: r["seed"])
            if not runs:
                continue
            classes = sorted(runs[0]["iou"])
            per_class = {c: statistics.mean(r["iou"].get(c, 0.0) for r in runs) for c in classes}
            seeds = [_mean_iou(r) for r in runs]
            pc = ", ".join(f"{c}: {v:.3f}" for c, v in per_class.items())
            ps = ", ".join(f"{v:.3f}" for v in seeds)
            same = "" if method == "supervised" else _diffs(runs, sup)
            against = "" if method == "supervised" else _diffs(runs, best)
            if against:
                against += f" vs {best_recipe}"
            zeros = sum(min(r["iou"].values()) < 0.01 for r in runs)
            lines.append(
                f"| {name} | {k} | {recipe} | {method} | {pc} | {statistics.mean(seeds):.3f} "
                f"| {ps} | {same} | {against} | {zeros} | {_whole(runs)} |"
            )
    return "\n".join(lines)


def summary(rows: list[dict], recipes: tuple[str, ...] = ("default", "paper")) -> str:
    """The target's view: per dataset and K, supervised training at its best recipe, then
    segpl and segpl-vi of each recipe as mean IoU and mean paired difference in IoU points
    (with the number of seeds whose difference is positive, and of seeds with a class under
    0.01 IoU)."""
    head = "| dataset | K | best supervised |"
    for recipe in recipes:
        head += f" segpl ({recipe}) | segpl-vi ({recipe}) |"
    lines = [head, "|---" * (3 + 2 * len(recipes)) + "|"]
    for name, k in sorted({(r["dataset"], r["k"]) for r in rows}):
        best_recipe, best = _best_supervised(rows, name, k)
        if not best:
            continue
        line = f"| {name} | {k} | {statistics.mean(best.values()):.3f} ({best_recipe}) |"
        for recipe in recipes:
            for method in ("segpl", "segpl-vi"):
                runs = [
                    r
                    for r in rows
                    if (r["dataset"], r["k"], r["recipe"], r["method"]) == (name, k, recipe, method)
                    and r["seed"] in best
                ]
                if not runs:
                    line += " |"
                    continue
                diffs = [_mean_iou(r) - best[r["seed"]] for r in runs]
                wins = sum(d > 0 for d in diffs)
                low = sum(min(r["iou"].values()) < 0.01 for r in runs)
                mean = statistics.mean(_mean_iou(r) for r in runs)
                line += (
                    f" {mean:.3f}, {100 * statistics.mean(diffs):+.1f} "
                    f"({wins}/{len(runs)} up{f', {low} low' if low else ''}) |"
                )
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks accuracy")
    parser.add_argument("--datasets", nargs="+", default=sorted(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labelled", type=int, nargs="+", default=[1, 3])
    parser.add_argument(
        "--recipe", default="default", choices=sorted(RECIPES),
        help="default: the preset a user gets (ct or mri from the image); paper: --preset "
        "paper; affine: the default with labelled slices moved by random affine maps (the "
        "best supervised setting found for the CT volumes)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy.json"))
    parser.add_argument("--table", action="store_true", help="only print the table")
    parser.add_argument(
        "--summary", nargs="*", metavar="RECIPE",
        help="only print the target's summary for these recipes (default: default paper)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    if args.summary is not None:
        print(summary(rows, tuple(args.summary) or ("default", "paper")))
        return 0
    if not args.table:
        preset, overrides = RECIPES[args.recipe]
        done = {(r["dataset"], r["method"], r["seed"], r["k"], r["recipe"]) for r in rows}
        for k in args.labelled:
            for seed in args.seeds:
                for name in args.datasets:
                    for method in args.methods:
                        if (name, method, seed, k, args.recipe) in done:
                            continue
                        row = run_one(name, DATASETS[name], method, seed, k, overrides, preset)
                        row.update(k=k, recipe=args.recipe)
                        # re-read: another process may have added rows meanwhile
                        rows = json.loads(args.out.read_text()) if args.out.exists() else []
                        rows.append(row)
                        keys = ("dataset", "k", "recipe", "method", "seed", "iou")
                        print(json.dumps({key: row[key] for key in keys}), flush=True)
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                        args.out.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0
