"""(H2): the augmented-signal SegPL-VI runs against (G2)'s default ones, paired by seed.

python benchmarks/results/H2/paired.py benchmarks/results/H2   # paired.txt
"""

import glob
import json
import statistics
import sys


def mean(values: dict) -> float:
    return statistics.mean(values.values())


folder = sys.argv[1]
new = [r for f in glob.glob(folder + "/segpl-vi-*.json") for r in json.load(open(f))]
old = {
    (r["dataset"], r["seed"]): r
    for f in glob.glob("benchmarks/results/G2/segpl-vi-*.json")
    for r in json.load(open(f))
}
for r in sorted(new, key=lambda r: (r["dataset"], r["seed"])):
    o = old[(r["dataset"], r["seed"])]
    diff = 100 * (mean(r["whole_iou"]) - mean(o["whole_iou"]))
    print(
        f"{r['dataset']} seed {r['seed']}: mu {r['mu_per_class']} (default {o['mu_per_class']}); "
        f"IoU {mean(r['whole_iou']):.4f} (default {mean(o['whole_iou']):.4f}, {diff:+.2f}); "
        f"cut at mu {mean(r['mu_whole_iou']):.4f}"
    )
for d in sorted({r["dataset"] for r in new}):
    runs = [r for r in new if r["dataset"] == d]
    mu_new = statistics.mean(statistics.mean(r["mu_per_class"]) for r in runs)
    mu_old = statistics.mean(statistics.mean(old[(d, r["seed"])]["mu_per_class"]) for r in runs)
    diffs = [100 * (mean(r["whole_iou"]) - mean(old[(d, r["seed"])]["whole_iou"])) for r in runs]
    print(
        f"{d}: mu {mu_new:.4f} against {mu_old:.4f} ({mu_new - mu_old:+.4f}); IoU change "
        f"{statistics.mean(diffs):+.2f} (SD {statistics.stdev(diffs):.2f}, runs "
        f"{', '.join(f'{x:+.2f}' for x in diffs)})"
    )
