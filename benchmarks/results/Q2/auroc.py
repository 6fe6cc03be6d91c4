"""(Q2), read only: issue 25's default uncertainty (the TTA std pooled with the safeguard's
other model) against the kept model's TTA std and the entropy of p, scored on the wrong voxels
of the mask the product exported at seeds 9 and 10 (labels from the trainer's fitted decision,
each class kept where it touches its paint). From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/Q2/auroc.py
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, "benchmarks/results/N2")
from rule import ENT, NEW, OLD, score  # noqa: E402

PREDS, PROBS = Path("benchmarks/results/Q2/preds"), Path("/work/q2/probs")
records = score({9: PREDS, 10: PREDS}, {9: PROBS, 10: PROBS})
Path("benchmarks/results/Q2/auroc.json").write_text(json.dumps(records, indent=1))
for seed in (9, 10):
    for group in ("tuning", "validation"):
        part = [r for r in records if r["set"] == group and r["seed"] == seed]
        if part:
            new, old, ent = (statistics.mean(r[k] for r in part) for k in (NEW, OLD, ENT))
            print(
                f"seed {seed}, {group}: {len(part)} runs, pooled {new:.3f}, kept TTA std "
                f"{old:.3f}, entropy {ent:.3f}; pooled higher in "
                f"{sum(r[NEW] > r[OLD] for r in part)}, under 0.75 in "
                f"{sum(r[NEW] < 0.75 for r in part)}"
            )
