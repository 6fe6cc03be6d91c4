"""(P2)'s probe: the default recipe's model at several steps of one run, each scored as an
export (whole-volume IoU per class, parts touching the paint kept), and the mean of their
probabilities as one more mask. Says when a class is lost during a run, and whether averaging
a run's own snapshots keeps it. Appends one row to ``benchmarks/results/P2/snap_probe.jsonl``.
From the repository root, with a copy of the code under test:

    OMP_NUM_THREADS=1 SEGPL_DATA=../shared/data PYTHONPATH=COPY \
        python benchmarks/results/P2/snap_probe.py DATASET SEED METHOD
"""

import json
import sys
import time

import numpy as np
import torch
from probe_case import probe_case

from napari_segpl.engine import Trainer, predict_volume, prepare_data
from napari_segpl.engine.components import keep_painted_parts
from napari_segpl.engine.inference import labels_from_probabilities
from napari_segpl.engine.metrics import exported_scores
from napari_segpl.engine.snapshot import frozen_copy

torch.set_num_threads(1)
name, seed, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
case = probe_case(name, method, seed)
axis, image, truth, chosen = case["axis"], case["image"], case["truth"], case["chosen"]
sparse, paint, classes, cfg = case["sparse"], case["paint"], case["classes"], case["config"]
at = sorted({round(cfg.steps * f) for f in (1 / 3, 1 / 2, 2 / 3, 5 / 6, 1)})


def score(labels):
    w = exported_scores(labels, truth, chosen, axis=axis, classes=classes)
    per = {c: round(100 * s["iou"], 1) for c, s in w.items()}
    return round(float(np.mean(list(per.values()))), 1), per


def mask(prob):
    labels = labels_from_probabilities(prob, cfg.threshold, cfg.nested)
    keep_painted_parts(labels, paint, axis, cfg.nested)
    return labels


t0 = time.perf_counter()
tr = Trainer(cfg, prepare_data(image.array, sparse, cfg, labelled=chosen))
probs, rows = {}, {}
for event in tr.run():
    step = getattr(event, "step", None)
    if type(event).__name__ == "StepEvent" and step in at and step < cfg.steps:
        pred = predict_volume(frozen_copy(tr.model), image.array, paint=paint, device="cpu")
        probs[step] = pred.probabilities
        rows[step] = score(pred.labels)
final = predict_volume(tr.model, image.array, paint=paint, device="cpu")
probs[cfg.steps] = final.probabilities
rows[cfg.steps] = score(final.labels)
means = {}
for first in at[:-1]:
    keep = [s for s in at if s >= first]
    means[f"{first}-{cfg.steps}"] = score(mask(np.mean([probs[s] for s in keep], axis=0)))
out = {
    "dataset": name,
    "seed": seed,
    "method": method,
    "steps": rows,
    "means": means,
    "s": round(time.perf_counter() - t0),
}
print(json.dumps(out))
with open("benchmarks/results/P2/snap_probe.jsonl", "a") as f:
    f.write(json.dumps(out) + "\n")
