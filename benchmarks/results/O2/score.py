"""(O2): the pooled std on the vessels, every run saved with probabilities (seeds 0-7). Run from
the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/O2/score.py \
        I2_PROBS M2_PROBS N2_PROBS O2_PROBS

Scored as (N2) rule 1 (``N2/rule.py``'s ``score``); writes ``O2/auroc.json``.
"""

import importlib.util
import json
import sys
from pathlib import Path

RESULTS = Path("benchmarks/results")
spec = importlib.util.spec_from_file_location("n2_rule", RESULTS / "N2" / "rule.py")
n2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(n2)

folders = {0: "I2", 1: "I2", 2: "I2", 3: "M2", 4: "N2", 5: "O2", 6: "O2", 7: "O2"}
probs_by = dict(zip(("I2", "M2", "N2", "O2"), map(Path, sys.argv[1:5]), strict=True))
preds = {s: RESULTS / f / "preds" for s, f in folders.items()}
probs = {s: probs_by[f] for s, f in folders.items()}
records = n2.score(preds, probs, only="abdomen_vessels_ct")
(RESULTS / "O2" / "auroc.json").write_text(json.dumps(records, indent=1))
fresh = [r for r in records if r["seed"] >= 5]
for label, part in (("seeds 5-7", fresh), ("seeds 0-7", records)):
    under = sum(r[n2.NEW] < 0.75 for r in part)
    behind = sum(r[n2.NEW] < r[n2.OLD] for r in part)
    print(
        f"- {label}: {len(part)} runs, pooled under 0.75 in {under}, behind the TTA std in {behind}"
    )
for r in sorted(records, key=lambda r: r["gain"]):
    print(
        f"  gain {r['gain']:+5.1f} s{r['seed']} {r['run']:9s} pooled {r[n2.NEW]:.3f} "
        f"TTA std {r[n2.OLD]:.3f} entropy {r[n2.ENT]:.3f}"
    )
