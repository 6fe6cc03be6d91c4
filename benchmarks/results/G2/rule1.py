"""(G2) rule 1 on uncertainty_auroc's records: per set, the mean AUROC of the TTA std and of
the entropy of the TTA mean p, and the share of runs where the entropy is higher.

    python benchmarks/results/G2/rule1.py benchmarks/results/G2/auroc.json
"""

import json
import sys

records = json.load(open(sys.argv[1]))
new, old = "auroc_tta-entropy", "auroc_tta"
higher = 0
for group in ("tuning", "validation"):
    for method in ("segpl-vi", "segpl", None):
        rs = [r for r in records if r["set"] == group and (method is None or r["method"] == method)]
        if not rs:
            continue
        a = sum(r[new] for r in rs) / len(rs)
        b = sum(r[old] for r in rs) / len(rs)
        e = sum(r["auroc_entropy"] for r in rs) / len(rs)
        wins = sum(r[new] > r[old] for r in rs)
        print(
            f"{group:10} {method or 'both':8} runs {len(rs):2}  TTA entropy {a:.3f}  "
            f"TTA std {b:.3f}  entropy of p {e:.3f}  entropy of TTA mean higher in {wins}"
        )
wins = sum(r[new] > r[old] for r in records)
print(
    f"all runs: {len(records)}, entropy of the TTA mean higher in {wins} "
    f"({wins / len(records):.0%}; rule: at least two thirds)"
)
for group in ("tuning", "validation"):
    rs = [r for r in records if r["set"] == group]
    print(group, "mean higher:", sum(r[new] for r in rs) > sum(r[old] for r in rs))
