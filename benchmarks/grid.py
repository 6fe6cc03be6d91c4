"""The accuracy grid of issue 4, run in parallel worker processes (on one GPU, or the CPU).

Every (dataset, K, seed, method, recipe) run of the proof, in priority order: K = 1 and 3 with
the default, the other affine setting and supervised training's candidates first, then the paper
preset, the bfloat16 check, K = 5, and the explored levers. Runs that have not started by the
deadline are skipped, so a time-limited machine returns the most important rows; each finished
row is written to ``--out`` at once (a JSON list, as ``accuracy --table`` reads).

    python -m benchmarks grid --jobs 12 --deadline 480 --out benchmarks/results/accuracy-gpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

from napari_segpl.engine import TrainConfig

from .accuracy import DATA, DATASETS, RECIPES, _mean_iou, table

SEEDS = (0, 1, 2)
#: (K values, methods, recipes), in priority order. A recipe that only restates a dataset's
#: default (affine on the MRI preset, no-affine on the CT one) is left out for that dataset.
GROUPS: list[tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...]]] = [
    ((1, 3), ("segpl", "segpl-vi", "supervised"), ("default", "affine", "no-affine")),
    ((1, 3), ("supervised", "segpl", "segpl-vi"), ("paper",)),
    ((3,), ("segpl",), ("amp",)),
    ((5,), ("segpl", "segpl-vi", "supervised"), ("default", "affine", "no-affine", "paper")),
    ((1,), ("segpl", "supervised"), ("long",)),
    ((1,), ("segpl",), ("near-tight",)),
]


def suggested_presets() -> dict[str, str]:
    """The preset each dataset gets from its intensities, as a user would."""
    from napari_segpl.engine.config import suggest_preset
    from napari_segpl.volume import read_volume

    return {n: suggest_preset(read_volume(DATA / f"{n}_image.nii.gz").array) for n in DATASETS}


def restates_default(recipe: str, preset: str) -> bool:
    """True when ``recipe`` only sets values the dataset's own preset already has."""
    named, overrides = RECIPES[recipe]
    if recipe == "default" or named is not None or not overrides:
        return False
    base = TrainConfig.from_preset(preset)
    return all(getattr(base, key) == value for key, value in overrides.items())


def plan(
    presets: dict[str, str], seeds: tuple[int, ...] = SEEDS
) -> list[tuple[str, int, int, str, str]]:
    """Every run as (dataset, K, seed, method, recipe); within a group seed by seed, so a cut
    leaves whole seeds. ``presets``: each dataset's suggested preset."""
    runs = []
    for ks, methods, recipes in GROUPS:
        for k in ks:
            for seed in seeds:
                for name in sorted(DATASETS):
                    for recipe in recipes:
                        if not restates_default(recipe, presets[name]):
                            runs.extend((name, k, seed, m, recipe) for m in methods)
    return runs


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run(task: tuple[tuple[str, int, int, str, str], float, dict]) -> dict | None:
    (name, k, seed, method, recipe), deadline, extra = task
    if time.time() > deadline:
        return None
    from .accuracy import run_one

    preset, overrides = RECIPES[recipe]
    try:
        row = run_one(name, DATASETS[name], method, seed, k, {**overrides, **extra}, preset)
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
        return {"task": [name, k, seed, method, recipe], "error": repr(exc)}
    row.update(k=k, recipe=recipe)
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks grid")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--deadline", type=float, default=0, help="seconds; 0: none")
    parser.add_argument("--steps", type=int, default=0, help="override steps (a dry run)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy-gpu.json"))
    args = parser.parse_args(argv)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["dataset"], r["k"], r["seed"], r["method"], r["recipe"]) for r in rows}
    todo = [t for t in plan(suggested_presets()) if t not in done][: args.limit or None]
    deadline = time.time() + args.deadline if args.deadline else float("inf")
    extra = {"steps": args.steps} if args.steps else {}
    print(f"{len(todo)} runs to do, {len(done)} done; {args.jobs} workers", flush=True)
    errors, t0 = [], time.time()
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked workers
    with ctx.Pool(args.jobs, _init, (args.threads,)) as pool:
        tasks = [(t, deadline, extra) for t in todo]
        for row in pool.imap_unordered(_run, tasks):
            if row is None:
                continue
            if "error" in row:
                errors.append(row)
                print(json.dumps(row), flush=True)
                continue
            rows.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=1))
            keys = ("dataset", "k", "recipe", "method", "seed")
            print(
                f"{time.time() - t0:6.0f}s {json.dumps([row[x] for x in keys])} "
                f"IoU {_mean_iou(row):.3f} ({row['train_seconds']:.0f} s, {row['device']})",
                flush=True,
            )
    print(f"{len(rows)} rows, {len(errors)} errors, {time.time() - t0:.0f} s")
    print(table(rows))
    return 1 if errors else 0
