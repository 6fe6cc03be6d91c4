"""A lever against the recorded default, paired by cell and seed (RESULTS.md (cc)).

Reads accuracy-benchmark rows (``python -m benchmarks accuracy``) from any number of files and
prints, for every (dataset, K, seed) that has a row of ``--recipe`` for ``--method``, its
whole-volume IoU (mean over classes, every slice but the painted ones), the same cell's row of
``--base`` (the default recipe unless told), the supervised run of the default recipe, and the
differences in IoU points; then per set (tuning: lungs, vessels, brain; validation: the organs)
the mean of the lever minus the base and how many runs of each are more than 2 points below
supervised training, the counts a decision rule of (cc) reads. With ``--safeguard`` it adds what
the default safeguard would keep (``engine.safeguard.decide`` on the rows' predicted voxels per
slice, the supervised run as the twin, the painted areas from the labels: no training) and the
same counts for what it keeps. Where a cell has several rows of
the same recipe (a run repeated on another day), the first is used: repeats reproduced to the
third decimal on this machine.

    python -m benchmarks paired --recipe vi-sigma-0.05 [--method segpl-vi] [--base default]
        [--safeguard] FILE.json [FILE.json ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_segpl.engine.safeguard import BAND, decide

VALIDATION = ("abdomen_organs_ct", "abdomen_organs_mri")
#: how far below supervised training a run may fall before it counts as a loss (issue 23)
LOSS_POINTS = 2.0


def mean_whole_iou(row: dict) -> float:
    return statistics.mean(row["whole_iou"].values())


def index(rows: list[dict]) -> dict[tuple, dict]:
    """(dataset, k, seed, method, recipe) -> the first row of that key."""
    out: dict[tuple, dict] = {}
    for r in rows:
        if "whole_iou" in r:
            out.setdefault((r["dataset"], r["k"], r["seed"], r["method"], r["recipe"]), r)
    return out


#: (dataset, k, painted slices) -> mean painted area of each class per painted slice
Areas = Callable[[str, int, list[int]], list[float]]


def kept_iou(row: dict, sup: dict, areas: list[float], lever: str = "") -> tuple[float, str]:
    """(whole-volume IoU, kept method) of what the default safeguard keeps: the semi-supervised
    row unless a class's volume outside the painted slices falls below 1/BAND of the
    supervised twin's (the same decision ``engine.safeguard`` makes on the labels).
    ``lever``: a candidate of RESULTS.md (gg) for when the twin itself lost a class against
    the semi-supervised model (some ratio above BAND): ``symmetric`` (rule 4) never falls back
    then; ``deeper`` (rule 5) keeps the model whose worst class ratio is milder."""
    painted = set(row["labelled"])
    keep = [i for i in range(len(row["slice_voxels"])) if i not in painted]
    semi = np.asarray(row["slice_voxels"], float)[keep].sum(axis=0)
    twin = np.asarray(sup["slice_voxels"], float)[keep].sum(axis=0)
    ratios = [float((a + c) / (b + c)) for a, b, c in zip(semi, twin, areas, strict=True)]
    kept, _ = decide(row["method"], ratios)
    if kept == "supervised" and max(ratios) > BAND:
        if lever == "symmetric" or (lever == "deeper" and max(ratios) * min(ratios) > 1):
            kept = row["method"]
    return mean_whole_iou(sup if kept == "supervised" else row), kept


def painted_areas(name: str, k: int, painted: list[int]) -> list[float]:
    """Mean area of each class per painted slice, from the shared volume's labels."""
    return list(_painted_areas(name, k, tuple(sorted(painted))))


@functools.cache
def _painted_areas(name: str, k: int, painted: tuple[int, ...]) -> tuple[float, ...]:
    from .accuracy import DATASETS, load_case  # reads ../shared/data: only when asked

    axis = DATASETS[name]
    _, truth, chosen, _, _ = load_case(name, axis, k)
    if sorted(chosen) != list(painted):
        raise ValueError(f"{name} K = {k}: the row painted {painted}, the benchmark {chosen}")
    moved = np.moveaxis(truth, axis, 0)[sorted(painted)]
    classes = [int(c) for c in np.unique(truth) if c]
    return tuple(float((moved == c).sum()) / len(painted) for c in classes)


def paired_rows(
    rows: list[dict], method: str, recipe: str, base: str, areas: Areas | None = None
) -> list[dict]:
    """One dict per cell with a run of the lever: IoU of lever, base and supervised (None where
    missing) and the lever's volume ratios; with ``areas``, also ``new_kept`` and
    ``base_kept``: the IoU of what the safeguard keeps for each."""
    runs = index(rows)
    out = []
    for (name, k, seed, m, r), row in sorted(runs.items()):
        if (m, r) != (method, recipe):
            continue
        other = runs.get((name, k, seed, method, base))
        sup = runs.get((name, k, seed, "supervised", "default"))
        cell = {
            "dataset": name,
            "k": k,
            "seed": seed,
            "new": mean_whole_iou(row),
            "base": mean_whole_iou(other) if other else None,
            "supervised": mean_whole_iou(sup) if sup else None,
            "ratios": [round(v, 2) for v in row["volume_ratio"].values()],
        }
        if areas is not None and sup is not None:
            painted_areas = areas(name, k, row["labelled"])
            cell["new_kept"], cell["new_choice"] = kept_iou(row, sup, painted_areas)
            if other is not None:
                cell["base_kept"], cell["base_choice"] = kept_iou(other, sup, painted_areas)
        out.append(cell)
    return out


def summary(cells: list[dict]) -> list[str]:
    """Per set: mean(new - base) over cells with both, and the runs below supervised."""
    lines = []
    for label, inside in (("tuning", False), ("validation", True)):
        part = [c for c in cells if (c["dataset"] in VALIDATION) == inside]
        both = [c for c in part if c["base"] is not None]
        if not both:
            continue
        diffs = [100 * (c["new"] - c["base"]) for c in both]
        scored = [c for c in both if c["supervised"] is not None]

        def losses(key: str, scored: list[dict] = scored) -> int:
            return sum(100 * (c[key] - c["supervised"]) < -LOSS_POINTS for c in scored)

        spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        lines.append(
            f"- {label}: {len(both)} paired runs, new - base {statistics.mean(diffs):+.1f} "
            f"(SD {spread:.1f}, worst {min(diffs):+.1f}); runs more than {LOSS_POINTS:g} "
            f"below supervised: new {losses('new')}, base {losses('base')} "
            f"(of {len(scored)} with a supervised run)"
        )
        guarded = [c for c in scored if "new_kept" in c and "base_kept" in c]
        if guarded:
            parts = []
            for key in ("new", "base"):
                gains = [100 * (c[f"{key}_kept"] - c["supervised"]) for c in guarded]
                below = sum(g < -LOSS_POINTS for g in gains)
                parts.append(
                    f"{key} {statistics.mean(gains):+.1f} (worst {min(gains):+.1f}, "
                    f"{below} below -{LOSS_POINTS:g})"
                )
            lines.append(
                f"  - with the safeguard, minus supervised over {len(guarded)} runs: "
                + "; ".join(parts)
            )
    return lines


def table(cells: list[dict], recipe: str, base: str) -> str:
    def points(a: float | None, b: float | None) -> str:
        return "" if a is None or b is None else f"{100 * (a - b):+.1f}"

    def value(v: float | None) -> str:
        return "" if v is None else f"{v:.3f}"

    lines = [
        f"| dataset | K | seed | supervised | {base} | {recipe} | new - base | new - sup. "
        "| new's volume ratios | safeguard keeps (new / base) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c['dataset']} | {c['k']} | {c['seed']} | {value(c['supervised'])} | "
            f"{value(c['base'])} | {value(c['new'])} | {points(c['new'], c['base'])} | "
            f"{points(c['new'], c['supervised'])} | {', '.join(map(str, c['ratios']))} | "
            f"{c.get('new_choice', '')} / {c.get('base_choice', '')} |"
        )
    return "\n".join(lines + [""] + summary(cells))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks paired")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--recipe", required=True, help="the lever's recipe")
    parser.add_argument("--method", default="segpl-vi")
    parser.add_argument("--base", default="default", help="the recipe it is paired with")
    parser.add_argument(
        "--safeguard", action="store_true",
        help="add what the safeguard keeps (reads the labels of the shared volumes)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rows = [r for f in args.files for r in json.loads(f.read_text(encoding="utf-8"))]
    areas = painted_areas if args.safeguard else None
    cells = paired_rows(rows, args.method, args.recipe, args.base, areas)
    if not cells:
        print(f"no {args.method} rows of recipe {args.recipe!r}")
        return 1
    print(table(cells, args.recipe, args.base))
    return 0
