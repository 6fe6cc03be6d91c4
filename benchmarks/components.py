"""(rr) Keep only the predicted parts of a class that connect to its paint, on saved labels.

For every (dataset, K, seed) whose runs saved their labels (``SEGPL_SAVE_PRED``): each method's
whole-volume IoU (every slice but the painted ones) as predicted and after lever P (per class,
only the 26-connected components holding a voxel painted that class are kept: the engine's
``keep_painted_parts``, as every export applies it), and issue 23's
statistic with P on both sides: the semi-supervised run after the default safeguard (deciding
on the same labels) minus supervised training. No training.

    python -m benchmarks components DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path

import numpy as np

from napari_segpl.engine import keep_painted_parts, painted_slices
from napari_segpl.engine.safeguard import decide, volume_ratios

from . import safeguard as safeguard_bench
from .accuracy import DATASETS, TUNING, load_case
from .paired import LOSS_POINTS, painted_areas

SEMI = ("segpl", "segpl-vi")
FILE = re.compile(r"(?P<name>.+)-k(?P<k>\d+)-(?P<method>segpl-vi|segpl|supervised)-s(?P<seed>\d+)")


def _points(pred: np.ndarray, truth: np.ndarray, chosen: list[int], axis: int) -> float:
    """Whole-volume mean IoU in points, as benchmarks/safeguard.py scores it."""
    return 100 * safeguard_bench._whole(pred, truth, chosen, axis)


def saved_runs(folders: list[Path]) -> dict[tuple, Path]:
    """(folder name, dataset, K, seed, method) -> the saved labels' file, for every file of
    ``folders`` named as ``SEGPL_SAVE_PRED`` names them."""
    runs: dict[tuple, Path] = {}
    for folder in folders:
        for f in sorted(folder.glob("*.npz")):
            m = FILE.fullmatch(f.stem)
            if m and m["name"] in DATASETS:
                runs[(folder.name, m["name"], int(m["k"]), int(m["seed"]), m["method"])] = f
    return runs


def evaluate(folders: list[Path]) -> list[dict]:
    """One record per saved run: whole-volume IoU raw and with P; for semi-supervised runs
    with a supervised pair in the same folder, the safeguard's kept IoU both ways."""
    runs = saved_runs(folders)
    cases: dict = {}
    out = []
    for (src, name, k, seed, method), f in sorted(runs.items()):
        axis = DATASETS[name]
        if (name, k) not in cases:
            _, truth, chosen, sparse, _ = load_case(name, axis, k)
            paint = painted_slices(sparse, chosen, axis)
            cases[name, k] = (truth, chosen, paint, painted_areas(name, k, chosen))
        truth, chosen, paint, areas = cases[name, k]
        raw = np.load(f)["labels"]
        post = raw.copy()
        keep_painted_parts(post, paint, axis)
        rec = {
            "src": src, "dataset": name, "k": k, "seed": seed, "method": method,
            "set": "tuning" if name in TUNING else "validation",
            "raw": _points(raw, truth, chosen, axis), "p": _points(post, truth, chosen, axis),
            "removed": int((raw != post).sum()),
        }  # fmt: skip
        sup_file = runs.get((src, name, k, seed, "supervised"))
        if method in SEMI and sup_file is not None:
            sup_raw = np.load(sup_file)["labels"]
            sup_post = sup_raw.copy()
            keep_painted_parts(sup_post, paint, axis)
            for tag, semi, sup in (("raw", raw, sup_raw), ("p", post, sup_post)):
                kept, _ = decide(method, volume_ratios(semi, sup, chosen, axis, areas))
                sup_score = _points(sup, truth, chosen, axis)
                rec[f"gain_{tag}"] = (rec[tag] if kept == method else sup_score) - sup_score
                rec[f"kept_{tag}"] = kept
        out.append(rec)
    return out


def _line(label: str, values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{label}: n {len(values)}, mean {statistics.mean(values):+.2f} (SD {sd:.2f}), " + (
        f"worst {min(values):+.1f}, best {max(values):+.1f}"
    )


def report(records: list[dict]) -> str:
    lines = [
        "| src | set | dataset | K | seed | method | raw | P | P - raw | removed voxels "
        "| kept - sup raw | kept - sup P |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        g = [f"{r[k]:+.1f}" if k in r else "" for k in ("gain_raw", "gain_p")]
        lines.append(
            f"| {r['src']} | {r['set']} | {r['dataset']} | {r['k']} | {r['seed']} | "
            f"{r['method']} | {r['raw']:.1f} | {r['p']:.1f} | {r['p'] - r['raw']:+.1f} | "
            f"{r['removed']} | {g[0]} | {g[1]} |"
        )
    lines.append("")
    sources = sorted({r["src"] for r in records})
    for src in [*sources, *(["all given folders"] if len(sources) > 1 else [])]:
        for group in ("tuning", "validation"):
            part = [
                r for r in records if src in (r["src"], "all given folders") and r["set"] == group
            ]
            if not part:
                continue
            lines.append(f"**{src}, {group}**")
            semi = [r for r in part if r["method"] in SEMI]
            sup = [r for r in part if r["method"] == "supervised"]
            if semi:
                lines.append("- " + _line("semi P - raw", [r["p"] - r["raw"] for r in semi]))
            for name in sorted({r["dataset"] for r in semi}):
                d = [r["p"] - r["raw"] for r in semi if r["dataset"] == name]
                lines.append(f"  - {name}: mean {statistics.mean(d):+.2f} over {len(d)}")
            if sup:
                lines.append("- " + _line("supervised P - raw", [r["p"] - r["raw"] for r in sup]))
            lines.append("- " + _line("all methods P - raw", [r["p"] - r["raw"] for r in part]))
            for name in sorted({r["dataset"] for r in part}):
                d = [r["p"] - r["raw"] for r in part if r["dataset"] == name]
                lines.append(
                    f"  - {name}, all methods: mean {statistics.mean(d):+.2f} over {len(d)}"
                )
            for method in SEMI:
                paired = [r for r in part if r["method"] == method and "gain_raw" in r]
                if not paired:
                    continue
                for tag in ("raw", "p"):
                    gains = [r[f"gain_{tag}"] for r in paired]
                    below = sum(g < -LOSS_POINTS for g in gains)
                    lines.append(
                        f"- {method}, kept - sup ({'P on both' if tag == 'p' else 'as saved'}): "
                        + _line("", gains)[2:]
                        + f", {below} more than {LOSS_POINTS:g} below"
                    )
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks components")
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print(report(evaluate(args.folders)))
    return 0
