"""(tt): the default safeguard (with the image check) on the generated CT of time_to_mask, a
volume outside ../shared: per training seed, what it keeps and each model's exported IoU.

    OMP_NUM_THREADS=1 python benchmarks/results/tt/generated_check.py SEED
"""

import json
import sys

import numpy as np
import torch

from benchmarks.time_to_mask import generated_case, mask_ious
from napari_segpl.engine import TrainConfig, predict_volume, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.safeguard import GuardedTrainer, SafeguardEvent

seed = int(sys.argv[1])
torch.set_num_threads(1)
image, truth, painted, sparse = generated_case()
config = TrainConfig.from_preset(
    suggest_preset(image), method="segpl", axis=2, seed=seed, preview_every=0
)
data = prepare_data(image, sparse, config, labelled=painted)
guarded = GuardedTrainer(config, data, image)
verdict = next(e for e in guarded.run() if isinstance(e, SafeguardEvent))
paint = data.paint()
scores = {}
for name, model in (("segpl", guarded.trainer.model), ("supervised", guarded.twin.model)):
    labels = predict_volume(model, image, paint=paint).labels
    scores[name] = float(np.mean(mask_ious(labels, truth, painted, 2)))
print(
    json.dumps(
        {
            "seed": seed,
            "painted": painted,
            "kept": verdict.kept,
            "reason": verdict.reason,
            "ratios": verdict.ratios,
            **scores,
        }
    )
)
