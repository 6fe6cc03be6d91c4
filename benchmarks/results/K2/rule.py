"""(K2) rules A and B over (I2)'s grid with its nine missing runs added (run from the
repository root; ``auroc.json`` here is (I2)'s records and the new runs' records,
``uncertainty_auroc --rows benchmarks/results/I2/*-[CD].json``, in one list):

    SEGPL_DATA=../shared/data python benchmarks/results/K2/rule.py PROBS_DIR
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.intensity_arbiter import evaluate as arbiter
from benchmarks.uncertainty_auroc import evaluate

I2 = Path("benchmarks/results/I2")
K2 = Path("benchmarks/results/K2")
NEW, OLD, FREE = "auroc_tta-twin", "auroc_tta", "auroc_entropy"
DEADLINE_NEW = {(d, m, 2) for d in DATASETS for m in ("segpl", "segpl-vi")}
DEADLINE_NEW.add(("abdomen_organs_mri", "segpl-vi", 0))


def fresh(r: dict) -> bool:
    return (r["dataset"], r["method"], r["seed"]) in DEADLINE_NEW


def rule_one(records: list[dict], label: str) -> bool:
    higher = sum(r[NEW] > r[OLD] for r in records)
    print(f"{label} ({len(records)} runs):")
    means_ok = True
    for group in ("tuning", "validation"):
        part = [r for r in records if r["set"] == group]
        if not part:
            print(f"- {group}: no runs")
            means_ok = False
            continue
        new, old = statistics.mean(r[NEW] for r in part), statistics.mean(r[OLD] for r in part)
        means_ok &= new > old
        print(
            f"- {group}: {len(part)} runs, with twin {new:.3f}, TTA std {old:.3f}, "
            f"higher in {sum(r[NEW] > r[OLD] for r in part)}"
        )
    share = higher / len(records)
    print(f"- higher in {higher} of {len(records)} ({100 * share:.0f} %)")
    return means_ok and 3 * higher >= 2 * len(records)


records = [r for r in json.loads((K2 / "auroc.json").read_text()) if r["method"] != "supervised"]
ok = rule_one(records, "rule A, every run")
verdict = "the pooled std stays the default" if ok else "the pooled std stops being a default"
print(f"- rule A: {verdict}")
rule_one([r for r in records if fresh(r)], "\nthe new runs alone (reported)")

print("\nissue 25's targets on the new runs (reported):")
for r in sorted((r for r in records if fresh(r)), key=lambda r: (r["dataset"], r["method"])):
    print(
        f"- {r['dataset']} {r['method']} s{r['seed']}: with twin {r[NEW]:.3f}, TTA std "
        f"{r[OLD]:.3f}, entropy {r[FREE]:.3f}"
        f"{'' if r[NEW] >= 0.75 else ' (under 0.75)'}"
        f"{'' if r[NEW] - r[FREE] >= 0.02 else ' (not 0.02 ahead of the entropy)'}"
    )

probs = Path(sys.argv[1])
kept = arbiter([I2 / "preds"], margin=-1.0)
print("\nrule B, every twin-kept run (safeguard recomputed, margin -1):")
pooled, own = [], []
for r in kept:
    tag = " (new)" if fresh(r) else ""
    line = (
        f"- {r['dataset']} s{r['seed']} {r['method']}{tag}: keeps {r['kept_i']}, "
        f"gain {r['gain_i']:+.1f}"
    )
    if r["kept_i"] == "supervised":
        stem = f"{r['dataset']}-k{r['k']}-supervised-s{r['seed']}.npz"
        semi = stem.replace("-supervised-", f"-{r['method']}-")
        if not (probs / semi).exists():
            print(line + "; no probabilities saved")
            continue
        case = load_case(r["dataset"], DATASETS[r["dataset"]], r["k"])
        row = {
            "dataset": r["dataset"], "k": r["k"], "seed": r["seed"], "method": "supervised",
            "axis": DATASETS[r["dataset"]],
        }  # fmt: skip
        labels = np.load(I2 / "preds" / stem)["labels"]
        twin, mine = dict(np.load(probs / semi)), dict(np.load(probs / stem))
        e = evaluate(row, labels, mine, case, twin)
        pooled.append(e[NEW])
        own.append(e[OLD])
        line += f"; on the twin's mask: with twin {e[NEW]:.3f}, its TTA std {e[OLD]:.3f}"
    print(line)
if pooled:
    a, b = statistics.mean(pooled), statistics.mean(own)
    print(f"- {len(pooled)} twin-kept runs: pooled {a:.3f}, the twin's TTA std {b:.3f}")
    print(f"- rule B: {'pooled after twin-kept runs too' if a > b else 'nothing changes'}")
