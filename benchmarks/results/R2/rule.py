"""(R2)'s rules: lever C (``cap`` 1.5) or D (``alpha`` 0.3) against the default, SegPL at
seeds 9 and 10, K = 3, each scored as the product exports it (the fitted decision's labels
saved by the benchmark, the safeguard recomputed against the seed's supervised run by
``intensity_arbiter``, margin -1). The default's runs and the supervised runs are (Q2)'s;
``R2/preds`` holds copies of (Q2)'s supervised labels beside C's, ``R2/preds-D`` beside D's.
From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/R2/rule.py        # C
    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/R2/rule.py D      # D
    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/R2/rule.py E      # E

Rules D and E (SegPL-VI, its labels in ``R2/preds-D`` too) ask at least +0.5 on each set; C
asked +0.5 on the tuning set and 0 on the validation set.
"""

import json
import statistics
import sys
from pathlib import Path

from benchmarks.intensity_arbiter import evaluate

R = Path("benchmarks/results")


def exported(folder: Path, method: str) -> dict:
    """(dataset, seed) -> ``method``'s record, with the product's whole-volume IoU as ``out``."""
    return {
        (r["dataset"], r["seed"]): dict(r, out=r["sup"] + r["gain_i"])
        for r in evaluate([folder], -1.0)
        if r["k"] == 3 and r["method"] == method and r["seed"] in (9, 10)
    }


name = sys.argv[1] if len(sys.argv) > 1 else "C"
folder, method, needs = {
    "C": ("preds", "segpl", (0.5, 0.0)),
    "D": ("preds-D", "segpl", (0.5, 0.5)),
    "E": ("preds-D", "segpl-vi", (0.5, 0.5)),
}[name]
default, lever = exported(R / "Q2/preds", method), exported(R / "R2" / folder, method)
rows, lines, ok = [], [], True
for key in sorted(lever):
    d, c = default[key], lever[key]
    row = {
        "dataset": key[0], "seed": key[1], "set": d["set"], "sup": d["sup"],
        "default": d["out"], "default_kept": d["kept_i"], "lever": name,
        "lever_out": c["out"], "lever_kept": c["kept_i"], "lever_semi": c["semi"],
        "default_semi": d["semi"],
    }  # fmt: skip
    rows.append(row)
    lines.append(
        f"- {key[0]} s{key[1]}: supervised {d['sup']:.1f}; default {d['out']:.1f} ({d['kept_i']}"
        f" kept, its own {d['semi']:.1f}); {name} {c['out']:.1f} ({c['kept_i']} kept,"
        f" its own {c['semi']:.1f}); {name} minus default {c['out'] - d['out']:+.1f}"
    )
for group, need in zip(("tuning", "validation"), needs, strict=True):
    diff = [r["lever_out"] - r["default"] for r in rows if r["set"] == group]
    if not diff:
        ok = False
        continue
    sd = statistics.stdev(diff) if len(diff) > 1 else 0.0
    good = statistics.mean(diff) >= need and min(diff) >= -2
    ok &= good
    gc = [r["lever_out"] - r["sup"] for r in rows if r["set"] == group]
    gd = [r["default"] - r["sup"] for r in rows if r["set"] == group]
    lines.append(
        f"- {group}: {len(diff)} runs, {name} minus default {statistics.mean(diff):+.2f}"
        f" (SD {sd:.2f}, worst {min(diff):+.1f}); minus supervised: {name}"
        f" {statistics.mean(gc):+.2f}, default {statistics.mean(gd):+.2f}{'' if good else ' FAILS'}"
    )
full = len(rows) == (5 if name == "E" else 8)
lines.append(f"- decision: {name} {'adopted' if ok and full else 'not adopted'}")
print("\n".join(lines))
tail = "" if name == "C" else f"-{name}"
(R / f"R2/rule{tail}.json").write_text(json.dumps(rows, indent=1))
(R / f"R2/rule{tail}.txt").write_text("\n".join(lines) + "\n")
