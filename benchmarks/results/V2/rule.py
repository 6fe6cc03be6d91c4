"""(V2)'s rule: lever R, one retry at seed + 1 when the exported mask contradicts the paint
(``paint_note``), scored on saved K = 3 runs under the fitted decision. Each run's exported
mask: supervised training's own; SegPL's and SegPL-VI's the safeguard's kept model
(``intensity_arbiter``'s decision, margin -1, from the semi-supervised and supervised runs of
the same seed). No training; folders after the first two hold fresh runs at missing seeds,
used only as retries. From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/V2/rule.py \\
        /work/q2/D1/preds benchmarks/results/Q2/preds [MORE ...]
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import TUNING
from benchmarks.components import SEMI, _points, saved_runs
from benchmarks.intensity_arbiter import _case, _exported
from napari_segpl.engine import paint_note
from napari_segpl.engine.label_evidence import label_evidence
from napari_segpl.engine.safeguard import decide, heldout_dice, volume_ratios

R = Path("benchmarks/results")
METHODS = ("supervised", *SEMI)
files: dict[tuple, Path] = {}
population: set[tuple] = set()  # the runs scored: the first two folders' (the saved bank)
for i, folder in enumerate(map(Path, sys.argv[1:])):
    for (_, name, k, seed, method), f in saved_runs([folder]).items():
        if k == 3:
            files.setdefault((name, seed, method), f)
            if i < 2:
                population.add((name, seed, method))
cases: dict = {}


def exported(name: str, seed: int, method: str) -> dict | None:
    """The run's exported mask scored: points, its paint note, its smallest painted Dice."""
    sup = files.get((name, seed, "supervised"))
    own = files.get((name, seed, method))
    if sup is None or own is None:
        return None
    if name not in cases:
        cases[name] = _case(name, 3)
    c = cases[name]
    axis, chosen = c["axis"], c["chosen"]
    labels = {"supervised": _exported(sup, c["paint"], axis)}
    kept = "supervised"
    if method != "supervised":
        labels[method] = _exported(own, c["paint"], axis)
        ratios = volume_ratios(labels[method], labels["supervised"], chosen, axis, c["areas"])
        evidence = label_evidence(
            c["image"], *(np.moveaxis(labels[m], axis, 0) for m in (method, "supervised")),
            c["labels"], c["labelled"], 0,
        )  # fmt: skip
        kept, _ = decide(method, ratios, evidence=evidence, margin=-1.0)
    mask = labels[kept]
    fit = heldout_dice(mask, c["truth"], chosen, axis, len(c["areas"]))
    return {
        "points": _points(mask, c["truth"], chosen, axis), "kept": kept,
        "note": paint_note(mask, c["paint"], axis), "fit": min(fit),
    }  # fmt: skip


rows, missing = [], []
for name, seed, method in sorted(k for k in population if k[2] in METHODS):
    first = exported(name, seed, method)
    if first is None:
        continue
    row = {
        "dataset": name, "seed": seed, "method": method,
        "set": "tuning" if name in TUNING else "validation", "today": first["points"],
        "flagged": bool(first["note"]), "note": first["note"], "fit": first["fit"],
        "retry": None, "with_r": first["points"],
    }  # fmt: skip
    if first["note"]:
        second = exported(name, seed + 1, method)
        if second is None:
            missing.append((name, seed + 1, method))
        else:
            row["retry"] = {k: second[k] for k in ("points", "fit", "note", "kept")}
            if second["fit"] > first["fit"]:
                row["with_r"] = second["points"]
    rows.append(row)

lines = []
for r in rows:
    if r["flagged"]:
        again = r["retry"]
        tail = (
            "seed + 1 not saved"
            if again is None
            else f"seed + 1: {again['points']:.1f} (smallest painted Dice {again['fit']:.2f}"
            f"{', flagged too' if again['note'] else ''})"
        )
        lines.append(
            f"- {r['set']} {r['dataset']} s{r['seed']} {r['method']}: {r['today']:.1f} (smallest"
            f" painted Dice {r['fit']:.2f}); {tail}; exported with R {r['with_r']:.1f}"
        )
ok, gain_all = True, {m: [] for m in METHODS}
for group in ("tuning", "validation"):
    for method in METHODS:
        part = [r for r in rows if (r["set"], r["method"]) == (group, method)]
        if not part:
            continue
        diff = [r["with_r"] - r["today"] for r in part]
        gain_all[method] += diff
        good = statistics.mean(diff) >= 0 and min(diff) >= -2
        ok &= good
        lines.append(
            f"- {group}, {method}: {len(part)} runs, retried {sum(r['flagged'] for r in part)}, "
            f"R minus today {statistics.mean(diff):+.2f} (worst {min(diff):+.1f})"
            f"{'' if good else ' FAILS'}"
        )
for method in METHODS:
    gain = statistics.mean(gain_all[method]) if gain_all[method] else 0.0
    ok &= gain > 0
    lines.append(
        f"- both sets, {method}: R minus today {gain:+.2f}{'' if gain > 0 else ' (no gain)'}"
    )
sup = {(r["dataset"], r["seed"]): r for r in rows if r["method"] == "supervised"}
for group in ("tuning", "validation"):
    for method in SEMI:
        part = [
            r for r in rows
            if (r["set"], r["method"]) == (group, method) and (r["dataset"], r["seed"]) in sup
        ]  # fmt: skip
        a = [r["today"] - sup[r["dataset"], r["seed"]]["today"] for r in part]
        b = [r["with_r"] - sup[r["dataset"], r["seed"]]["with_r"] for r in part]
        lines.append(
            f"- issue 23, {group}, {method} minus supervised ({len(part)} runs): today "
            f"{statistics.mean(a):+.2f} (worst {min(a):+.1f}), with R {statistics.mean(b):+.2f}"
            f" (worst {min(b):+.1f})"
        )
lines.append(f"- not saved at seed + 1 (counted unchanged): {missing or 'none'}")
lines.append(f"- decision: R {'adopted' if ok else 'not adopted'}")
print("\n".join(lines))
(R / "V2/rule.json").write_text(json.dumps(rows, indent=1))
(R / "V2/rule.txt").write_text("\n".join(lines) + "\n")
