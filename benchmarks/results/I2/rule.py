"""(I2) rules 1 and 2 from the scored runs (run from the repository root, after
``uncertainty_auroc --out benchmarks/results/I2/auroc.json``):

    SEGPL_DATA=../shared/data python benchmarks/results/I2/rule.py PROBS_DIR
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.intensity_arbiter import evaluate as arbiter
from benchmarks.uncertainty_auroc import evaluate

HERE = Path("benchmarks/results/I2")
NEW, OLD, FREE = "auroc_tta-twin", "auroc_tta", "auroc_entropy"
records = [r for r in json.loads((HERE / "auroc.json").read_text()) if r["method"] != "supervised"]
print(f"rule 1 ({len(records)} runs):")
higher = sum(r[NEW] > r[OLD] for r in records)
for group in ("tuning", "validation"):
    part = [r for r in records if r["set"] == group]
    new, old = statistics.mean(r[NEW] for r in part), statistics.mean(r[OLD] for r in part)
    print(
        f"- {group}: {len(part)} runs, with twin {new:.3f}, TTA std {old:.3f}, "
        f"higher in {sum(r[NEW] > r[OLD] for r in part)}"
    )
print(f"- higher in {higher} of {len(records)} ({100 * higher / len(records):.0f} %)")
ok = (
    all(
        statistics.mean(r[NEW] for r in records if r["set"] == g)
        > statistics.mean(r[OLD] for r in records if r["set"] == g)
        for g in ("tuning", "validation")
    )
    and 3 * higher >= 2 * len(records)
    and len(records) >= 12
    and all(sum(r["set"] == g for r in records) >= 3 for g in ("tuning", "validation"))
)
print(f"- rule 1: {'ADOPTED' if ok else 'not adopted'}")

print("\nrule 2 (reported):")
for name in sorted({r["dataset"] for r in records}):
    part = [r for r in records if r["dataset"] == name]
    for key in (NEW, OLD, FREE):
        vals = [r[key] for r in part]
        print(
            f"- {name} {key}: mean {statistics.mean(vals):.3f}, min {min(vals):.3f}, "
            f"under 0.75 in {sum(v < 0.75 for v in vals)} of {len(vals)}"
        )
for key in (NEW, OLD):
    ahead = [r[key] - r[FREE] for r in records]
    print(
        f"- {key} ahead of the entropy by >= 0.02 in {sum(a >= 0.02 for a in ahead)} "
        f"of {len(ahead)} (mean {statistics.mean(ahead):+.3f})"
    )

# what the user exports: where the safeguard (product margin, -1 nat) keeps the twin, the
# twin's labels are the mask; the pooled map is the same, the TTA std would be the twin's own
probs = Path(sys.argv[1])
kept = arbiter([HERE / "preds"], margin=-1.0)
print("\nexported masks (safeguard recomputed, margin -1):")
for r in kept:
    line = (
        f"- {r['dataset']} s{r['seed']} {r['method']}: keeps {r['kept_i']}, gain {r['gain_i']:+.1f}"
    )
    if r["kept_i"] == "supervised":
        stem = f"{r['dataset']}-k{r['k']}-supervised-s{r['seed']}.npz"
        semi = stem.replace("-supervised-", f"-{r['method']}-")
        case = load_case(r["dataset"], DATASETS[r["dataset"]], r["k"])
        row = {
            "dataset": r["dataset"],
            "k": r["k"],
            "seed": r["seed"],
            "method": "supervised",
            "axis": DATASETS[r["dataset"]],
        }
        labels = np.load(HERE / "preds" / stem)["labels"]
        twin, own = dict(np.load(probs / semi)), dict(np.load(probs / stem))
        e = evaluate(row, labels, own, case, twin)
        line += (
            f"; on the twin's mask: with twin {e[NEW]:.3f}, its TTA std {e[OLD]:.3f}, "
            f"entropy {e[FREE]:.3f}"
        )
    print(line)
