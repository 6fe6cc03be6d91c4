"""(uu): (tt)'s generated_check.py, saving both models' exported masks (P on both) so that the
class trade can be scored on them without training again.

    OMP_NUM_THREADS=1 python benchmarks/results/uu/generated_save.py SEED OUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.time_to_mask import generated_case, mask_ious
from napari_segpl.engine import TrainConfig, predict_volume, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.safeguard import GuardedTrainer, SafeguardEvent

seed, out = int(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
image, truth, painted, sparse = generated_case()
config = TrainConfig.from_preset(
    suggest_preset(image), method="segpl", axis=2, seed=seed, preview_every=0
)
data = prepare_data(image, sparse, config, labelled=painted)
guarded = GuardedTrainer(config, data, image)
verdict = next(e for e in guarded.run() if isinstance(e, SafeguardEvent))
paint = data.paint()
scores, labels = {}, {}
for name, model in (("segpl", guarded.trainer.model), ("supervised", guarded.twin.model)):
    labels[name] = predict_volume(model, image, paint=paint).labels
    scores[name] = float(np.mean(mask_ious(labels[name], truth, painted, 2)))
np.savez_compressed(out / f"generated-s{seed}.npz", **labels)
record = {"seed": seed, "painted": painted, "kept": verdict.kept, "reason": verdict.reason}
print(json.dumps({**record, "ratios": verdict.ratios, **scores}))
