"""(U2) a reading, not a rule: on every saved K = 3 run under the fitted decision (any method,
the parts rule applied as exported), each class's Dice against the paint on the painted slices
beside its whole-volume IoU (every other slice), to see what a note "the mask contradicts your
paint" at Dice < 0.5 would mark. From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. \
        python benchmarks/results/U2/paint_note.py /work/q2/D1/preds
"""

import json
import sys
from pathlib import Path

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.components import saved_runs
from benchmarks.intensity_arbiter import _exported
from napari_segpl.engine import exported_scores, painted_slices
from napari_segpl.engine.safeguard import heldout_dice

R = Path("benchmarks/results")
rows, cases = [], {}
for folder in (Path(sys.argv[1]), R / "Q2/preds"):
    for (_, name, k, seed, method), f in sorted(saved_runs([folder]).items()):
        if k != 3:
            continue
        if name not in cases:
            axis = DATASETS[name]
            _, truth, chosen, sparse, _ = load_case(name, axis, 3)
            cases[name] = (axis, truth, chosen, painted_slices(sparse, chosen, axis))
        axis, truth, chosen, paint = cases[name]
        labels = _exported(f, paint, axis)
        classes = [int(c) for c in sorted(set(truth.flat)) if c]
        fit = heldout_dice(labels, truth, chosen, axis, max(classes))
        whole = exported_scores(labels, truth, chosen, axis=axis, classes=classes)
        for c in classes:
            rows.append({
                "dataset": name, "seed": seed, "method": method, "class": c,
                "paint_dice": fit[c - 1], "whole_iou": whole[c]["iou"],
                "present": bool((labels == c).any()),
            })  # fmt: skip
(R / "U2/paint_note.json").write_text(json.dumps(rows, indent=1))
low = [r for r in rows if r["paint_dice"] < 0.5]
high = [r for r in rows if r["paint_dice"] >= 0.5]
print(f"{len(rows)} classes in {len({(r['dataset'], r['seed'], r['method']) for r in rows})} runs")
for r in low:
    print(
        f"- marked: {r['dataset']} s{r['seed']} {r['method']} class {r['class']}: paint Dice"
        f" {r['paint_dice']:.2f}, whole-volume IoU {r['whole_iou']:.3f}, present {r['present']}"
    )
worst = sorted(high, key=lambda r: r["whole_iou"])[:8]
for r in worst:
    print(
        f"- unmarked, lowest IoU: {r['dataset']} s{r['seed']} {r['method']} class {r['class']}:"
        f" paint Dice {r['paint_dice']:.2f}, whole-volume IoU {r['whole_iou']:.3f}"
    )
