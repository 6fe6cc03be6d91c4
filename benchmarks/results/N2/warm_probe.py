"""(N2)'s probe: SegPL started from the supervised twin's weights (the twin trains first, then
STEPS SegPL steps from its weights, student and teacher alike). Prints the whole-volume IoU of
the twin and of the warm-started SegPL, each exported with the paint rule, and appends the row
to ``benchmarks/results/N2/warm_probe.jsonl``. From the repository root, the code of 7bcfa86:

    OMP_NUM_THREADS=1 SEGPL_DATA=../shared/data PYTHONPATH=COPY_OF_7bcfa86 \
        python benchmarks/results/N2/warm_probe.py DATASET SEED STEPS [METHOD]
"""

import json
import sys
import time

import numpy as np
import torch

from benchmarks.accuracy import DATASETS, load_case
from napari_segpl.engine import TrainConfig, Trainer, predict_volume, prepare_data
from napari_segpl.engine.components import painted_slices
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.metrics import exported_scores

torch.set_num_threads(1)
name, seed, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
method = sys.argv[4] if len(sys.argv) > 4 else "segpl"
axis = DATASETS[name]
image, truth, chosen, sparse, test = load_case(name, axis, 3)
preset = suggest_preset(image.array)
paint = painted_slices(sparse, chosen, axis)


def score(model, cfg):
    pred = predict_volume(model, image.array, device=cfg.device, paint=paint)
    classes = [int(c) for c in np.unique(truth) if c]
    w = exported_scores(pred.labels, truth, chosen, axis=axis, classes=classes)
    return round(100 * float(np.mean([s["iou"] for s in w.values()])), 1), {
        c: round(s["iou"], 3) for c, s in w.items()
    }


t0 = time.perf_counter()
cfg = TrainConfig.from_preset(preset, method="supervised", axis=axis, seed=seed, preview_every=0)
tr = Trainer(cfg, prepare_data(image.array, sparse, cfg, labelled=chosen))
for _ in tr.run():
    pass
t_sup = time.perf_counter() - t0
twin = score(tr.model, cfg)
state = tr.model.method.model.state_dict()
t1 = time.perf_counter()
cfg2 = TrainConfig.from_preset(
    preset, method=method, axis=axis, seed=seed, preview_every=0, steps=steps
)
tr2 = Trainer(cfg2, prepare_data(image.array, sparse, cfg2, labelled=chosen))
m = tr2.model.method
m.model.load_state_dict(state)
m.teacher.load_state_dict(state)
for _ in tr2.run():
    pass
t_semi = time.perf_counter() - t1
warm = score(tr2.model, cfg2)
out = {
    "dataset": name,
    "seed": seed,
    "steps": steps,
    "method": method,
    "twin": twin,
    "warm": warm,
    "sup_s": round(t_sup),
    "semi_s": round(t_semi),
}
print(json.dumps(out))
with open("benchmarks/results/N2/warm_probe.jsonl", "a") as f:
    f.write(json.dumps(out) + "\n")
