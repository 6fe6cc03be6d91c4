"""One table over several merged compares: per method, mean IoU over the seeds and the paired
difference to supervised training seed by seed, and whether the paper's ordering holds.

The ordering (SegPL ahead of every baseline) is read as RESULTS.md (kk) rule 2 wrote it before
its runs: it *holds* on a volume when SegPL's or SegPL-VI's mean IoU over the recorded seeds is
above every baseline's mean, and *holds at every seed* when that is true seed by seed (over the
seeds where the method ran).

    python -m benchmarks compare_summary DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

#: the methods the paper proposes; every other compared method is a baseline
OURS = ("segpl", "segpl-vi")


def per_seed(results: dict) -> dict[str, dict[int, float]]:
    """{method: {seed: mean IoU over the classes}} from a compare's results.json."""
    table: dict[str, dict[int, float]] = defaultdict(dict)
    for run in results["runs"]:
        table[run["method"]][int(run["seed"])] = float(run["mean_iou"])
    return dict(table)


def ordering(scores: dict[str, dict[int, float]]) -> tuple[bool, bool]:
    """(holds on the means, holds at every seed) for (kk) rule 2."""
    ours = [m for m in OURS if m in scores]
    others = [m for m in scores if m not in OURS]
    if not ours or not others:
        return False, False
    means = {m: float(np.mean(list(scores[m].values()))) for m in scores}
    on_means = max(means[m] for m in ours) > max(means[m] for m in others)
    seeds = sorted({s for m in scores for s in scores[m]})
    every = True
    for seed in seeds:
        best_ours = [scores[m][seed] for m in ours if seed in scores[m]]
        best_other = [scores[m][seed] for m in others if seed in scores[m]]
        if best_ours and best_other and max(best_ours) <= max(best_other):
            every = False
    return on_means, every


def table(name: str, scores: dict[str, dict[int, float]]) -> list[str]:
    """Markdown rows for one volume, best mean first; the SD is the compare tables' (ddof 0)."""
    sup = scores.get("supervised", {})
    seeds = sorted({s for m in scores for s in scores[m]})
    head = " / ".join(str(s) for s in seeds)
    lines = [
        f"**{name}** (seeds {head})",
        "",
        f"| method | runs | mean IoU (± SD over seeds) | minus supervised, seeds {head} |",
        "|---|---|---|---|",
    ]
    order = sorted(scores, key=lambda m: -np.mean(list(scores[m].values())))
    for method in order:
        values = np.array([scores[method][s] for s in sorted(scores[method])])
        spread = f" ± {values.std():.3f}" if len(values) > 1 else ""
        diffs = []
        for seed in seeds:
            if seed in scores[method] and seed in sup:
                diffs.append(f"{100 * (scores[method][seed] - sup[seed]):+.1f}")
            else:
                diffs.append("-")
        lines.append(
            f"| {method} | {len(values)} | {values.mean():.3f}{spread} | {' / '.join(diffs)} |"
        )
    on_means, every = ordering(scores)
    verdict = "holds" if on_means else "does not hold"
    verdict += " at every seed" if every else (" (not at every seed)" if on_means else "")
    lines += ["", f"The paper's ordering (SegPL or SegPL-VI ahead of every baseline) {verdict}."]
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare_summary")
    parser.add_argument("folders", nargs="+", type=Path, help="merged compare folders")
    args = parser.parse_args(argv)
    for folder in args.folders:
        results = json.loads((folder / "results.json").read_text())
        print("\n".join(table(folder.name, per_seed(results))) + "\n")
    return 0
