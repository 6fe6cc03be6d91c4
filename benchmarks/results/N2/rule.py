"""(N2) rule 1: (M2)'s comparison over seeds 3 and 4 together, and seed 4 alone. Run from the
repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/N2/rule.py M2_PROBS N2_PROBS

Same computation as (M2)'s ``rule.py``: the safeguard recomputed (margin -1), the exported
mask's wrong voxels in the band, the pooled std against the kept model's TTA std.
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.intensity_arbiter import evaluate as arbiter
from benchmarks.uncertainty_auroc import evaluate

HERE = Path("benchmarks/results/N2")
NEW, OLD, ENT = "auroc_tta-twin", "auroc_tta", "auroc_entropy"


def score(preds: dict[int, Path], probs: dict[int, Path], only: str | None = None) -> list[dict]:
    """One record per semi-supervised run; ``preds`` and ``probs``: folders by seed; ``only``:
    one dataset."""
    records, cases = [], {}
    for r in arbiter(list(dict.fromkeys(preds.values())), margin=-1.0):
        kept, seed = r["kept_i"], r["seed"]
        if seed not in probs or (only and r["dataset"] != only):
            continue
        other = "supervised" if kept != "supervised" else r["method"]
        base = f"{r['dataset']}-k{r['k']}-%s-s{seed}.npz"
        own, twin = probs[seed] / (base % kept), probs[seed] / (base % other)
        if not own.exists() or not twin.exists():
            print(f"- {r['dataset']} s{seed} {r['method']}: probabilities missing")
            continue
        if r["dataset"] not in cases:
            cases[r["dataset"]] = load_case(r["dataset"], DATASETS[r["dataset"]], r["k"])
        row = {"dataset": r["dataset"], "k": r["k"], "seed": seed, "method": kept,
               "axis": DATASETS[r["dataset"]]}  # fmt: skip
        labels = np.load(preds[seed] / (base % kept))["labels"]
        e = evaluate(row, labels, dict(np.load(own)), cases[r["dataset"]], dict(np.load(twin)))
        e.update({"run": r["method"], "kept": kept, "gain": r["gain_i"]})
        records.append(e)
        print(
            f"- {r['set']} {r['dataset']} s{seed} {r['method']}: keeps {kept} "
            f"(kept - supervised {r['gain_i']:+.1f}); pooled {e[NEW]:.3f}, TTA std "
            f"{e[OLD]:.3f}, entropy {e[ENT]:.3f}"
        )
    return records


def decide(records: list[dict], label: str, minimum: int, per_set: int) -> bool:
    ok = len(records) >= minimum
    for group in ("tuning", "validation"):
        part = [r for r in records if r["set"] == group]
        ok &= len(part) >= per_set
        if part:
            new, old = (statistics.mean(r[k] for r in part) for k in (NEW, OLD))
            ok &= new > old
            higher = sum(r[NEW] > r[OLD] for r in part)
            print(f"- {label} {group}: {len(part)} runs, pooled {new:.3f}, TTA std {old:.3f}, "
                  f"higher in {higher}")  # fmt: skip
    higher = sum(r[NEW] > r[OLD] for r in records)
    ok &= 3 * higher >= 2 * len(records)
    under = sum(r[NEW] < 0.75 for r in records)
    ahead = sum(r[NEW] >= r[ENT] + 0.02 for r in records)
    print(f"- {label}: higher in {higher} of {len(records)}; under 0.75 in {under}; "
          f"0.02 over the entropy in {ahead}")  # fmt: skip
    return ok


if __name__ == "__main__":
    preds = {3: Path("benchmarks/results/M2/preds"), 4: HERE / "preds"}
    records = score(preds, {3: Path(sys.argv[1]), 4: Path(sys.argv[2])})
    (HERE / "auroc.json").write_text(json.dumps(records, indent=1))
    decide([r for r in records if r["seed"] == 4], "seed 4 (reported)", 0, 0)
    ok = decide(records, "seeds 3-4", 12, 5)
    print(f"- decision: the pooled std {'stays' if ok else 'is removed'}")
