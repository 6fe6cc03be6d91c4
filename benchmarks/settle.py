"""Stopping when the pseudo labels have settled (issue 26): where a run would stop, what that
saves and what it costs, seen in one run.

Each run trains the default method (SegPL) with ``settle`` set but ``stop_when_settled`` off, so
it runs every step; at the first check that finds it settled a copy of the model is taken (and
finished as the trainer would finish it). Then the safeguard's supervised twin trains the same
way. Both pairs (settled, full) are predicted over the whole volume, the safeguard's choice is
made for each pair (``volume_ratios``, ``decide``), and the kept masks are scored as a user
exports them: IoU per class on every slice but the painted ones, empty slices included. Seconds
are the training's own from its start to the settled check, and to the end; the checks' cost
(the probe slices' E-steps) is reported apart, since a run without ``settle`` does not pay it.

Cases: ``ct``, ``mri``, ``generated`` (as ``time_to_mask``) and any shared dataset name (3
painted slices, ``spread_slices``; needs ``SEGPL_DATA``). Rows are appended to ``--out``.

    python -m benchmarks settle --cases ct mri generated --seeds 0 1 2 --settle 0.02
        [--threads 1] [--out FILE.json]
    python -m benchmarks settle --explore --out FILE.json   # other values' stopping steps
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.time_to_mask import (
    CASES,
    GENERATED_SHAPE,
    mask_ious,
    sample_case,
    write_generated,
)
from napari_segpl.engine import TrainConfig, Trainer, predict_volume, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.safeguard import BAND, _mask, decide, volume_ratios
from napari_segpl.engine.settle import SettleEvent, SettleMonitor
from napari_segpl.volume import read_labels, read_volume


def load(case: str, work: Path) -> dict:
    """image, sparse labels, truth (arrays), painted slices, axis."""
    if case in CASES:
        files = write_generated(work, GENERATED_SHAPE) if case == "generated" else sample_case(case)
        image = read_volume(files["image"])
        return {
            "image": image.array,
            "sparse": read_labels(files["label_sparse"], like=image).array,
            "truth": read_labels(files["label_full"], like=image).array,
            "painted": list(files["painted"]),
            "axis": files["axis"],
        }
    from benchmarks.accuracy import DATASETS, load_case

    axis = DATASETS[case]
    image, truth, chosen, sparse, _ = load_case(case, axis, 3)
    return {"image": image.array, "sparse": sparse, "truth": truth, "painted": chosen, "axis": axis}


def train_watched(config: TrainConfig, data) -> dict:
    """One run to the end, the model copied where it first settled; the checks' series."""
    trainer = Trainer(config, data)
    trainer.stop_when_settled = False
    start = last = time.perf_counter()
    checks, check_s, settled, settled_s, copy_s = [], 0.0, None, None, 0.0
    for event in trainer.run():
        now = time.perf_counter()
        if isinstance(event, SettleEvent):
            check_s += now - last  # the probe's E-step, run since the event before
            checks.append([event.step, event.change, event.loss_change, event.settled])
            if event.settled and settled is None:
                settled_s = now - start  # the checks so far included: a stopping run pays them
                settled = copy.deepcopy(trainer.model)
                settled.method.finish()
                settled.steps_done = event.step
                copy_s = time.perf_counter() - now
        last = time.perf_counter()
    full_s = time.perf_counter() - start - copy_s - check_s  # as a run without checks
    return {
        "model": trainer.model,
        "settled": settled,
        "config": trainer.config,
        "steps": trainer.model.steps_done,
        "settled_step": None if settled is None else settled.steps_done,
        "seconds": full_s,
        "settled_seconds": settled_s,
        "check_seconds": check_s,
        "checks": checks,
    }


def kept(method: str, semi: np.ndarray, sup: np.ndarray, case: dict, data) -> str:
    """The safeguard's choice between two whole-volume label maps, as ``GuardedTrainer``."""
    areas = [
        float(np.mean([_mask(data.labels[s], c, data.nested).sum() for s in data.labelled]))
        for c in range(1, data.num_classes + 1)
    ]
    ratios = volume_ratios(semi, sup, case["painted"], case["axis"], areas, data.nested)
    return decide(method, ratios, BAND)[0]


def run_one(case_name: str, seed: int, settle: float, work: Path) -> dict:
    case = load(case_name, work)
    preset = suggest_preset(case["image"])
    config = TrainConfig.from_preset(preset, axis=case["axis"], seed=seed, settle=settle)
    data = prepare_data(case["image"], case["sparse"], config, labelled=case["painted"])
    semi = train_watched(config, data)
    twin_config = dataclasses.replace(config, method="supervised", preview_every=0, extra={})
    twin = train_watched(twin_config, data)

    def labels(model) -> np.ndarray:
        return predict_volume(model, case["image"], device="cpu", probabilities=False).labels

    def score(pred: np.ndarray) -> float:
        return round(float(np.nanmean(mask_ious(pred, case["truth"], *key))), 4)

    key = (case["painted"], case["axis"])
    row = {"case": case_name, "seed": seed, "settle": settle, "preset": preset,
           "dims": semi["config"].dims, "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    preds = {}
    for when in ("full", "settled"):
        pair = {}
        for name, run in (("segpl", semi), ("supervised", twin)):
            model = run["model"] if when == "full" else (run["settled"] or run["model"])
            pair[name] = labels(model)
            row[f"{name}_{when}_iou"] = score(pair[name])
        row[f"kept_{when}"] = kept("segpl", pair["segpl"], pair["supervised"], case, data)
        row[f"kept_{when}_iou"] = row[f"{row[f'kept_{when}']}_{when}_iou"]
        preds[when] = pair
    for name, run in (("segpl", semi), ("supervised", twin)):
        row[name] = {k: run[k] for k in ("steps", "settled_step", "seconds", "settled_seconds",
                                         "check_seconds", "checks")}  # fmt: skip
    full = semi["seconds"] + twin["seconds"]
    # a run that never settles pays its checks and runs every step
    stop = sum(r["settled_seconds"] or r["seconds"] + r["check_seconds"] for r in (semi, twin))
    row["train_seconds_full"], row["train_seconds_settled"] = round(full, 1), round(stop, 1)
    row["time_ratio"] = round(stop / full, 3)
    return row


def table(rows: list[dict]) -> str:
    head = ("| case | seed | SegPL stops at | twin stops at | kept IoU full | kept IoU settled | "
            "diff | seconds full | settled | ratio |")  # fmt: skip
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        s, t = r["segpl"], r["supervised"]
        lines.append(
            f"| {r['case']} | {r['seed']} | {s['settled_step'] or '-'} / {s['steps']} | "
            f"{t['settled_step'] or '-'} / {t['steps']} | {r['kept_full_iou']:.3f} "
            f"({r['kept_full']}) | {r['kept_settled_iou']:.3f} ({r['kept_settled']}) | "
            f"{r['kept_settled_iou'] - r['kept_full_iou']:+.3f} | {r['train_seconds_full']:.0f} | "
            f"{r['train_seconds_settled']:.0f} | {r['time_ratio']:.2f} |"
        )
    for case in dict.fromkeys(r["case"] for r in rows):
        group = [r for r in rows if r["case"] == case]
        diff = [r["kept_settled_iou"] - r["kept_full_iou"] for r in group]
        ratio = statistics.fmean(r["time_ratio"] for r in group)
        mean = statistics.fmean(diff)
        lines.append(f"| **{case}** | mean of {len(group)} | | | | | **{mean:+.3f}** "
                     f"(worst {min(diff):+.3f}) | | | **{ratio:.2f}** |")  # fmt: skip
    return "\n".join(lines)


def would_stop(checks: list, settle: float, tolerance: float) -> int | None:
    """Where a run would have settled with other values, its recorded checks replayed through
    the engine's own monitor (where it would stop, not what it would score)."""
    monitor = SettleMonitor(settle, loss_tolerance=tolerance)
    for step, change, moved, _ in checks:
        monitor.record(step, change, moved)
    return monitor.settled_at


def explore(rows: list[dict], values=(0.02, 0.05, 0.1), tolerances=(0.05, 0.25)) -> str:
    """Per run and network, the settled step under each (settle, loss tolerance) pair."""
    pairs = [(v, t) for v in values for t in tolerances]
    head = "| case | seed | network | steps | " + " | ".join(f"{v:g} / {t:g}" for v, t in pairs)
    lines = [head + " |", "|" + "---|" * (4 + len(pairs))]
    for r in rows:
        for name in ("segpl", "supervised"):
            run = r[name]
            stops = [would_stop(run["checks"], v, t) or "-" for v, t in pairs]
            lines.append(f"| {r['case']} | {r['seed']} | {name} | {run['steps']} | "
                         + " | ".join(str(x) for x in stops) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks settle")
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settle", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--explore", action="store_true", help="replay --out's checks only")
    args = parser.parse_args(argv)
    if args.explore:
        print(explore(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    rows = json.loads(args.out.read_text()) if args.out and args.out.exists() else []
    fresh = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            for seed in args.seeds:
                row = run_one(case, seed, args.settle, Path(tmp))
                row["threads"] = args.threads
                rows.append(row)
                fresh.append(row)
                if args.out:
                    args.out.write_text(json.dumps(rows, indent=1))
                print(table([row]).splitlines()[-2], flush=True)
    print(table(fresh))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
