"""(vv) rule 3: the sweep of cuts on the generated CT of time_to_mask (outside ../shared),
SegPL-VI with the defaults, trained as ``accuracy`` trains (no safeguard).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/results/vv/generated_sweep.py SEED
"""

import json
import sys

import torch

from benchmarks.cut_sweep import cut_sweep
from benchmarks.time_to_mask import generated_case
from napari_segpl.engine import TrainConfig, Trainer, painted_slices, predict_volume, prepare_data
from napari_segpl.engine.config import suggest_preset

seed = int(sys.argv[1])
torch.set_num_threads(1)
image, truth, painted, sparse = generated_case()
config = TrainConfig.from_preset(
    suggest_preset(image), method="segpl-vi", axis=2, seed=seed, preview_every=0
)
trainer = Trainer(config, prepare_data(image, sparse, config, labelled=painted))
for _ in trainer.run():
    pass
paint = painted_slices(sparse, painted, 2)
pred = predict_volume(trainer.model, image, paint=paint)
row = {"dataset": "generated_ct", "k": 3, "seed": seed, "labelled": painted}
row.update(cut_sweep(pred.probabilities, truth, painted, paint, 2, config.nested))
print(json.dumps(row))
