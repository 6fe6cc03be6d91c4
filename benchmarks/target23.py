"""Issue 23's proof table: the defaults a user gets, on the whole grid, against the target.

For every cell of the issue's grid (each shared volume x K = 1 and 3 x seeds 0-2) and each
default method (SegPL: recipe ``default``; SegPL-VI: ``vi-sigma-0.05``, the engine's prior
since cd86db5), from accuracy-benchmark rows: supervised training's and the method's
whole-volume IoU (every slice but the painted ones), the foreground-slice IoU beside it, the
volume ratios, the guard's warnings, what the default safeguard keeps (``paired.kept_iou``:
the engine's decision on the rows' voxels per slice) and the kept model minus supervised
training. Then, per set and method, the issue's target: never more than 2 points below
supervised training, at least 3 above on average, and the grid's cells still missing.

With ``--reruns``, rows that re-ran cells of the grid are set beside the first recorded run
of each (how far a re-run moves a cell).

    python -m benchmarks target23 FILE.json [FILE.json ...] [--reruns FILE.json ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from .accuracy import TUNING, VALIDATION
from .paired import LOSS_POINTS, Areas, index, kept_iou, mean_whole_iou, painted_areas

#: the default of each method: its accuracy-benchmark recipe
DEFAULTS = {"segpl": "default", "segpl-vi": "vi-sigma-0.05"}
KS = (1, 3)
SEEDS = (0, 1, 2)
#: the issue's target: at least this many points above supervised training on average
MEAN_POINTS = 3.0


def cells(rows: list[dict], areas: Areas, lever: str = "") -> list[dict]:
    """One dict per grid cell and default method; ``semi`` None where the run is missing.
    ``lever``: a candidate safeguard of RESULTS.md (gg) (``paired.kept_iou``)."""
    runs = index(rows)
    out = []
    for name in (*sorted(TUNING), *sorted(VALIDATION)):
        for k in KS:
            for seed in SEEDS:
                sup = runs.get((name, k, seed, "supervised", "default"))
                for method, recipe in DEFAULTS.items():
                    row = runs.get((name, k, seed, method, recipe)) or runs.get(
                        (name, k, seed, method, "default")  # SegPL-VI's since (cc): the same
                    )
                    cell = {"dataset": name, "k": k, "seed": seed, "method": method,
                            "set": "validation" if name in VALIDATION else "tuning",
                            "semi": None, "supervised": None}  # fmt: skip
                    if row is not None and sup is not None:
                        kept, choice = kept_iou(row, sup, areas(name, k, row["labelled"]), lever)
                        cell.update(
                            semi=mean_whole_iou(row), supervised=mean_whole_iou(sup),
                            semi_fg=statistics.mean(row["iou"].values()),
                            supervised_fg=statistics.mean(sup["iou"].values()),
                            ratios=[round(v, 2) for v in row["volume_ratio"].values()],
                            warnings=len(row.get("collapse_warnings", [])),
                            kept=kept, choice=choice,
                        )  # fmt: skip
                    out.append(cell)
    return out


def verdict(part: list[dict]) -> str:
    """The target's line for one set and method."""
    done = [c for c in part if c["semi"] is not None]
    missing = [f"{c['dataset']} K{c['k']} s{c['seed']}" for c in part if c["semi"] is None]
    if not done:
        return f"no runs; missing {len(missing)}"
    gains = [100 * (c["kept"] - c["supervised"]) for c in done]
    raw = [100 * (c["semi"] - c["supervised"]) for c in done]
    below = sum(g < -LOSS_POINTS for g in gains)
    mean = statistics.mean(gains)
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    met = below == 0 and mean >= MEAN_POINTS and not missing
    return (
        f"{len(done)} runs, with the safeguard {mean:+.1f} (SD {spread:.1f}, worst "
        f"{min(gains):+.1f}, {below} more than {LOSS_POINTS:g} below); raw "
        f"{statistics.mean(raw):+.1f} (worst {min(raw):+.1f}); target "
        f"{'met' if met else 'not met'}"
        + (f"; missing {len(missing)}: {', '.join(missing)}" if missing else "")
    )


def report(grid: list[dict]) -> str:
    lines = []
    for label in ("tuning", "validation"):
        lines += [
            f"### {label} set",
            "",
            "| dataset | K | seed | method | supervised | semi | semi - sup | fg slices: sup, "
            "semi | volume ratios | warnings | safeguard keeps | kept - sup |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        part = [c for c in grid if c["set"] == label]
        for c in part:
            if c["semi"] is None:
                continue
            lines.append(
                f"| {c['dataset']} | {c['k']} | {c['seed']} | {c['method']} "
                f"| {c['supervised']:.3f} | {c['semi']:.3f} "
                f"| {100 * (c['semi'] - c['supervised']):+.1f} "
                f"| {c['supervised_fg']:.3f}, {c['semi_fg']:.3f} "
                f"| {', '.join(map(str, c['ratios']))} | {c['warnings']} | {c['choice']} "
                f"| {100 * (c['kept'] - c['supervised']):+.1f} |"
            )
        lines.append("")
        for method in DEFAULTS:
            lines.append(
                f"- {label}, {method}: {verdict([c for c in part if c['method'] == method])}"
            )
        lines.append("")
    return "\n".join(lines)


def reruns(first: list[dict], again: list[dict]) -> str:
    """How far a re-run moves a cell: each re-run beside the first recorded run of the same
    cell and method (IoU points), and the mean absolute move of each column."""
    before = {
        (c["dataset"], c["k"], c["seed"], c["method"]): c for c in first if c["semi"] is not None
    }
    lines = [
        "| dataset | K | seed | method | supervised: first, re-run | semi: first, re-run "
        "| kept - sup: first, re-run |",
        "|---|---|---|---|---|---|---|",
    ]
    moves: dict[str, list[float]] = {"supervised": [], "semi": [], "gain": []}
    for c in again:
        b = before.get((c["dataset"], c["k"], c["seed"], c["method"]))
        if c["semi"] is None or b is None:
            continue
        gain_b, gain_c = (100 * (x["kept"] - x["supervised"]) for x in (b, c))
        moves["supervised"].append(abs(c["supervised"] - b["supervised"]) * 100)
        moves["semi"].append(abs(c["semi"] - b["semi"]) * 100)
        moves["gain"].append(abs(gain_c - gain_b))
        lines.append(
            f"| {c['dataset']} | {c['k']} | {c['seed']} | {c['method']} "
            f"| {b['supervised']:.3f}, {c['supervised']:.3f} | {b['semi']:.3f}, {c['semi']:.3f} "
            f"| {gain_b:+.1f}, {gain_c:+.1f} |"
        )
    if moves["gain"]:
        lines.append(
            f"\n{len(moves['gain'])} re-run cells; mean absolute move (points): supervised "
            f"{statistics.mean(moves['supervised']):.1f}, semi {statistics.mean(moves['semi']):.1f}"
            f", kept - sup {statistics.mean(moves['gain']):.1f} (largest {max(moves['gain']):.1f})"
        )
    return "\n".join(lines)


def _stats(part: list[dict]) -> tuple[int, float, float]:
    gains = [100 * (c["kept"] - c["supervised"]) for c in part]
    return sum(g < -LOSS_POINTS for g in gains), min(gains), statistics.mean(gains)


def compare_rules(default: list[dict], lever: list[dict]) -> str:
    """(gg) rule 4's reading: per set and method, the lever's safeguard against the default on
    the same runs (runs more than 2 below, worst, mean of kept minus supervised), the
    decisions it changed, and whether (a), (b) and (c) hold."""
    lines = []
    for label in ("tuning", "validation"):
        for method in DEFAULTS:
            pick = [
                (a, b)
                for a, b in zip(default, lever, strict=True)
                if a["set"] == label and a["method"] == method and a["semi"] is not None
            ]
            if not pick:
                continue
            (nd, wd, md), (nl, wl, ml) = (_stats([p[i] for p in pick]) for i in (0, 1))
            changed = [
                f"{a['dataset']} K{a['k']} s{a['seed']}"
                for a, b in pick
                if a["choice"] != b["choice"]
            ]
            ok = nl <= nd and wl >= wd - 1e-9 and ml >= md - 1e-9
            lines.append(
                f"- {label}, {method}, {len(pick)} runs: default {nd} below, worst {wd:+.1f}, "
                f"mean {md:+.1f}; lever {nl} below, worst {wl:+.1f}, mean {ml:+.1f}; changed "
                f"{len(changed)}{': ' + ', '.join(changed) if changed else ''}; (a)-(c) "
                f"{'hold' if ok else 'fail'}"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks target23")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "--reruns", nargs="+", type=Path, default=[],
        help="rows re-running cells of FILES: each beside the first recorded run of its cell",
    )  # fmt: skip
    parser.add_argument(
        "--symmetric", action="store_const", const="symmetric", dest="lever",
        help="(gg) rule 4: the default safeguard against one that ignores a twin that lost a class",
    )  # fmt: skip
    parser.add_argument(
        "--deeper", action="store_const", const="deeper", dest="lever",
        help="(gg) rule 5: where both models lost a class, the milder worst ratio is kept",
    )  # fmt: skip
    args = parser.parse_args(argv)

    def load(files: list[Path]) -> list[dict]:
        return [r for f in files for r in json.loads(f.read_text(encoding="utf-8"))]

    first, again = load(args.files), load(args.reruns)
    grid = cells(first, painted_areas)
    print(report(grid))
    rerun_grid = cells(again, painted_areas) if again else []
    if again:
        print(reruns(grid, rerun_grid))
    if args.lever:  # each sample's default cells are the ones printed above
        for name, rows, default in (("S1, the grid", first, grid),
                                    ("S2, the re-runs", again, rerun_grid)):  # fmt: skip
            if rows:
                print(f"\n{name}:")
                print(compare_rules(default, cells(rows, painted_areas, args.lever)))
    return 0
