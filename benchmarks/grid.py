"""The accuracy grid of issue 4, run in parallel worker processes (on one GPU, or the CPU).

Every (dataset, K, seed, method, recipe) run of a round, in priority order (``ROUNDS``; round 1
is the issue's grid: K = 1 and 3 with the default, the other affine setting and supervised
training's candidates first, then the paper preset, the bfloat16 check, K = 5, and the explored
levers; round 2 the levers tried where round 1 missed the target; round 3 more seeds). Runs
that have not started by the deadline are skipped, so a time-limited machine returns the most
important rows; each finished row is written to ``--out`` at once (a JSON list, as
``accuracy --table`` reads).

    python -m benchmarks grid --jobs 12 --deadline 480 --out benchmarks/results/accuracy-gpu.json
    python -m benchmarks grid --round 2 --jobs 14 --deadline 400
    python -m benchmarks grid --round 3 --seeds 3 4 --jobs 14 --deadline 120
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
ALL = tuple(sorted(DATASETS))
#: (K values, methods, recipes, datasets), in priority order. A run whose configuration another
#: run of the plan already has (affine on the MRI preset, no-affine on the CT one) is left out.
Group = tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]
ROUNDS: dict[int, list[Group]] = {
    # the grid: the default, the other affine setting and the paper preset first
    1: [
        ((1, 3), ("segpl", "segpl-vi", "supervised"), ("default", "affine", "no-affine"), ALL),
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("paper",), ALL),
        ((3,), ("segpl",), ("amp",), ALL),
        (
            (5,),
            ("segpl", "segpl-vi", "supervised"),
            ("default", "affine", "no-affine", "paper"),
            ALL,
        ),
        ((1,), ("segpl", "supervised"), ("long",), ALL),
        ((1,), ("segpl",), ("near-tight",), ALL),
    ],
    # where round 1 missed the target: 3-slice 3D everywhere (supervised training's best on
    # the brain, SegPL's best on the lungs, one seed each on the CPU), then the brain's levers
    2: [
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("3d",), ALL),
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("3d-affine", "3d-no-affine"), ALL),
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("lr-0.01",), ("brain_tissue_mri",)),
        ((3,), ("supervised", "segpl", "segpl-vi"), ("long",), ("brain_tissue_mri",)),
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("3d-lr-0.01",), ("brain_tissue_mri",)),
        ((1, 3), ("segpl", "segpl-vi"), ("ratio-4",), ("brain_tissue_mri",)),
        ((1, 3), ("segpl", "segpl-vi"), ("lr-0.01",), ("lungs_ct", "abdomen_vessels_ct")),
    ],
    # more seeds (run with --seeds 3 4) for the comparisons the target rests on
    3: [
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("default", "affine", "no-affine"), ALL),
        ((1, 3), ("supervised", "segpl", "segpl-vi"), ("3d",), ALL),
    ],
}
GROUPS = ROUNDS[1]


def suggested_presets() -> dict[str, str]:
    """The preset each dataset gets from its intensities, as a user would."""
    from napari_segpl.engine.config import suggest_preset
    from napari_segpl.volume import read_volume

    return {n: suggest_preset(read_volume(DATA / f"{n}_image.nii.gz").array) for n in DATASETS}


def resolved(name: str, k: int, seed: int, method: str, recipe: str, preset: str) -> str:
    """The whole configuration of one run, as ``accuracy.run_one`` builds it, as a key."""
    named, overrides = RECIPES[recipe]
    config = TrainConfig.from_preset(
        named or preset, method=method, axis=DATASETS[name], seed=seed, preview_every=0,
        **overrides,
    )  # fmt: skip
    return json.dumps([name, k, config.to_dict()], sort_keys=True)


def plan(
    presets: dict[str, str],
    seeds: tuple[int, ...] = SEEDS,
    groups: list[Group] | None = None,
    rows: list[dict] = (),
) -> list[tuple[str, int, int, str, str]]:
    """Every run as (dataset, K, seed, method, recipe) not yet in ``rows``; within a group seed
    by seed, so a cut leaves whole seeds. ``presets``: each dataset's suggested preset. A run
    whose whole configuration a recorded row or an earlier run of the plan already has (under
    another recipe's name) is left out."""
    seen = {json.dumps([r["dataset"], r["k"], r["config"]], sort_keys=True) for r in rows}
    seen |= {(r["dataset"], r["k"], r["seed"], r["method"], r["recipe"]) for r in rows}
    runs: list[tuple[str, int, int, str, str]] = []
    for ks, methods, recipes, names in groups or GROUPS:
        for k in ks:
            for seed in seeds:
                for name in names:
                    for recipe in recipes:
                        for method in methods:
                            task = (name, k, seed, method, recipe)
                            key = resolved(*task, presets[name])
                            if key not in seen and task not in seen:
                                seen.update((key, task))
                                runs.append(task)
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
    parser.add_argument("--round", type=int, default=1, choices=sorted(ROUNDS), help="which plan")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/accuracy-gpu.json"))
    args = parser.parse_args(argv)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    todo = plan(suggested_presets(), tuple(args.seeds), ROUNDS[args.round], rows)
    todo = todo[: args.limit or None]
    done = len(rows)
    deadline = time.time() + args.deadline if args.deadline else float("inf")
    extra = {"steps": args.steps} if args.steps else {}
    print(f"{len(todo)} runs to do, {done} done; {args.jobs} workers", flush=True)
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
