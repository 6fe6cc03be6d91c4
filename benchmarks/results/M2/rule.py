"""(M2): the pooled std against the kept model's TTA std, on the errors of the mask the
product exports (the safeguard recomputed, margin -1). Run from the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/M2/rule.py PROBS_DIR

(a second argument, another folder of saved labels, scores that folder instead and writes
nothing: the check against (K2)'s reading of I2's runs)
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.intensity_arbiter import evaluate as arbiter
from benchmarks.uncertainty_auroc import evaluate

HERE = Path("benchmarks/results/M2")
NEW, OLD = "auroc_tta-twin", "auroc_tta"
probs = Path(sys.argv[1])
preds = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "preds"
records = []
for r in arbiter([preds], margin=-1.0):
    kept = r["kept_i"]
    other = "supervised" if kept != "supervised" else r["method"]
    stem = f"{r['dataset']}-k{r['k']}-{kept}-s{r['seed']}.npz"
    twin_stem = f"{r['dataset']}-k{r['k']}-{other}-s{r['seed']}.npz"
    if not (probs / stem).exists() or not (probs / twin_stem).exists():
        print(f"- {r['dataset']} s{r['seed']} {r['method']}: probabilities missing")
        continue
    case = load_case(r["dataset"], DATASETS[r["dataset"]], r["k"])
    row = {
        "dataset": r["dataset"], "k": r["k"], "seed": r["seed"], "method": kept,
        "axis": DATASETS[r["dataset"]],
    }  # fmt: skip
    labels = np.load(preds / stem)["labels"]
    own, twin = dict(np.load(probs / stem)), dict(np.load(probs / twin_stem))
    e = evaluate(row, labels, own, case, twin)
    e.update({"run": r["method"], "kept": kept, "gain": r["gain_i"]})
    records.append(e)
    print(
        f"- {r['set']} {r['dataset']} s{r['seed']} {r['method']}: keeps {kept} "
        f"(kept - supervised {r['gain_i']:+.1f}); pooled {e[NEW]:.3f}, TTA std {e[OLD]:.3f}, "
        f"entropy {e['auroc_entropy']:.3f}"
    )
if len(sys.argv) == 2:
    (HERE / "auroc.json").write_text(json.dumps(records, indent=1))
ok = len(records) >= 6
for group in ("tuning", "validation"):
    part = [r for r in records if r["set"] == group]
    ok &= len(part) >= 3
    if part:
        new, old = statistics.mean(r[NEW] for r in part), statistics.mean(r[OLD] for r in part)
        ok &= new > old
        higher = sum(r[NEW] > r[OLD] for r in part)
        print(
            f"- {group}: {len(part)} runs, pooled {new:.3f}, TTA std {old:.3f}, higher in {higher}"
        )
higher = sum(r[NEW] > r[OLD] for r in records)
ok &= 3 * higher >= 2 * len(records)
print(f"- higher in {higher} of {len(records)}")
print(f"- decision: {'ADOPTED' if ok else 'not adopted'}")
