"""(P2)'s second probe: the painted slices' Dice taken over the batch (one Dice per class over
all labelled images of a step) instead of per image, for one method trained alone (no
safeguard). A painted slice where a class is absent gives a per-image Dice of
1 - 1 / (1 + sum p), which pushes that class down about Y / 2 times harder than the slices
painted with Y voxels of it pull it up once it is small. Appends a row to
``benchmarks/results/P2/dice_probe.jsonl``. From the repository root:

    OMP_NUM_THREADS=1 SEGPL_DATA=../shared/data PYTHONPATH=COPY \
        python benchmarks/results/P2/dice_probe.py DATASET SEED METHOD image|batch
"""

import json
import sys
import time

import numpy as np
import torch
from probe_case import probe_case

from napari_segpl.engine import Trainer, losses, predict_volume, prepare_data
from napari_segpl.engine.methods import segpl, supervised
from napari_segpl.engine.metrics import exported_scores

torch.set_num_threads(1)
name, seed, method, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if mode == "batch":  # the labelled loss only: a call that names per_image keeps its choice
    original = losses.segmentation_loss

    def batch_dice(*args, **kwargs):
        kwargs.setdefault("per_image", False)
        return original(*args, **kwargs)

    supervised.segmentation_loss = segpl.segmentation_loss = batch_dice
case = probe_case(name, method, seed)
axis, image, truth, chosen = case["axis"], case["image"], case["truth"], case["chosen"]
sparse, paint, classes, cfg = case["sparse"], case["paint"], case["classes"], case["config"]
t0 = time.perf_counter()
tr = Trainer(cfg, prepare_data(image.array, sparse, cfg, labelled=chosen))
for _ in tr.run():
    pass
pred = predict_volume(tr.model, image.array, paint=paint, device="cpu", probabilities=False)
w = exported_scores(pred.labels, truth, chosen, axis=axis, classes=classes)
per = {c: round(100 * s["iou"], 1) for c, s in w.items()}
out = {
    "dataset": name,
    "seed": seed,
    "method": method,
    "mode": mode,
    "iou": round(float(np.mean(list(per.values()))), 1),
    "per_class": per,
    "s": round(time.perf_counter() - t0),
}
print(json.dumps(out))
with open("benchmarks/results/P2/dice_probe.jsonl", "a") as f:
    f.write(json.dumps(out) + "\n")
