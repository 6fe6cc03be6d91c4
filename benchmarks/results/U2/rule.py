"""(U2)'s rule: the paint check in the safeguard, on the saved K = 3 runs under the fitted
decision (seeds 0-4 and 8 from (Q2)'s rule 1 output, the vessels 0-8; seeds 9-10 from
``Q2/preds``), each run's exported mask scored with today's safeguard (``intensity_arbiter``:
volumes, then the image, margin -1) and with the paint check in front of it (``decide``'s
``paint``) at m = 0.1, 0.2, 0.3. No training. From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/U2/rule.py /work/q2/D1/preds
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import TUNING
from benchmarks.components import SEMI, _points, saved_runs
from benchmarks.intensity_arbiter import _case, _exported
from napari_segpl.engine.label_evidence import label_evidence
from napari_segpl.engine.safeguard import decide, heldout_dice, volume_ratios

R = Path("benchmarks/results")
MARGINS = (0.1, 0.2, 0.3)
folders = [Path(sys.argv[1]), R / "Q2/preds"]
rows, cases = [], {}
for folder in folders:
    runs = saved_runs([folder])
    for (_, name, k, seed, method), f in sorted(runs.items()):
        sup_file = runs.get(("preds", name, k, seed, "supervised"))
        if k != 3 or method not in SEMI or sup_file is None:
            continue
        if name not in cases:
            cases[name] = _case(name, k)
        c = cases[name]
        axis, chosen, truth = c["axis"], c["chosen"], c["truth"]
        labels = {
            method: _exported(f, c["paint"], axis),
            "supervised": _exported(sup_file, c["paint"], axis),
        }
        ratios = volume_ratios(labels[method], labels["supervised"], chosen, axis, c["areas"])
        evidence = label_evidence(
            c["image"], *(np.moveaxis(labels[m], axis, 0) for m in (method, "supervised")),
            c["labels"], c["labelled"], 0,
        )  # fmt: skip
        n = len(c["areas"])
        paint = {m: heldout_dice(x, truth, chosen, axis, n) for m, x in labels.items()}
        score = {m: _points(x, truth, chosen, axis) for m, x in labels.items()}
        today, _ = decide(method, ratios, evidence=evidence, margin=-1.0)
        row = {
            "dataset": name, "seed": seed, "method": method,
            "set": "tuning" if name in TUNING else "validation",
            "semi": score[method], "sup": score["supervised"], "today": today,
            "today_out": score[today], "paint": paint,
        }  # fmt: skip
        for m in MARGINS:
            kept, why = decide(
                method, ratios, evidence=evidence, margin=-1.0, paint=paint, paint_margin=m
            )
            row[f"kept_{m}"], row[f"out_{m}"] = kept, score[kept]
            row[f"why_{m}"] = why
        rows.append(row)

lines = []
for r in rows:
    changed = [m for m in MARGINS if r[f"kept_{m}"] != r["today"]]
    if changed:
        m = changed[0]
        lines.append(
            f"- {r['set']} {r['dataset']} s{r['seed']} {r['method']}: today keeps {r['today']}"
            f" ({r['today_out']:.1f}; semi {r['semi']:.1f}, supervised {r['sup']:.1f}); the check"
            f" keeps {r[f'kept_{m}']} at m <= {max(changed)} ({r[f'out_{m}']:.1f}): {r[f'why_{m}']}"
        )


def gains(group: str, m: float, method: str | None = None) -> list[float]:
    return [
        r[f"out_{m}"] - r["today_out"]
        for r in rows
        if r["set"] == group and (method is None or r["method"] == method)
    ]


tuning = {m: statistics.mean(gains("tuning", m)) for m in MARGINS}
best = max(tuning.values())
m = max(x for x in MARGINS if tuning[x] >= best - 0.01)
lines.append(
    "- tuning mean gain over today's safeguard (both methods, "
    f"{len(gains('tuning', 0.1))} runs): "
    + ", ".join(f"m {x}: {tuning[x]:+.2f}" for x in MARGINS)
    + f"; chosen m = {m}"
)
ok = tuning[m] > 0
for method in SEMI:
    g = gains("validation", m, method)
    good = statistics.mean(g) >= 0 and min(g) >= -2
    ok &= good
    lines.append(
        f"- validation, {method}, m {m}: {len(g)} runs, mean gain {statistics.mean(g):+.2f}, "
        f"worst {min(g):+.1f}, changed {sum(x != 0 for x in g)}{'' if good else ' FAILS'}"
    )
    t = gains("tuning", m, method)
    lines.append(
        f"- tuning, {method}, m {m}: {len(t)} runs, mean gain {statistics.mean(t):+.2f}, "
        f"worst {min(t):+.1f}, changed {sum(x != 0 for x in t)}"
    )
for group in ("tuning", "validation"):
    for method in SEMI:
        part = [r for r in rows if (r["set"], r["method"]) == (group, method)]
        a = [r["today_out"] - r["sup"] for r in part]
        b = [r[f"out_{m}"] - r["sup"] for r in part]
        lines.append(
            f"- issue 23, {group}, {method}: {len(part)} runs, minus supervised: today "
            f"{statistics.mean(a):+.2f} (worst {min(a):+.1f}), with the check "
            f"{statistics.mean(b):+.2f} (worst {min(b):+.1f})"
        )
lines.append(f"- decision: the paint check {'adopted' if ok else 'not adopted'} (m {m})")
print("\n".join(lines))
(R / "U2/rule.json").write_text(json.dumps(rows, indent=1))
(R / "U2/rule.txt").write_text("\n".join(lines) + "\n")
