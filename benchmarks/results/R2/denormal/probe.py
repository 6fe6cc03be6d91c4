"""(R2)'s probe (issue 26), no rule: does flushing denormal floats change the CPU step time of a
default SegPL training on the CT sample at seed 0 (the seed time_to_mask found slowest)?
Arg 0 or 1 (flush off or on); one thread; the row goes to ``probe-ARG.json`` beside this file.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/results/R2/denormal/probe.py 0
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.time_to_mask import sample_case
from napari_segpl.engine import TrainConfig, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.trainer import StepEvent, Trainer
from napari_segpl.volume import read_volume

flush = sys.argv[1] == "1"
torch.set_num_threads(1)
torch.set_flush_denormal(flush)
case = sample_case("ct")
image = read_volume(case["image"]).array
labels = np.asarray(read_volume(case["label_sparse"]).array)
cfg = TrainConfig.from_preset(
    suggest_preset(image), method="segpl", axis=case["axis"], seed=0, preview_every=0
)
trainer = Trainer(cfg, prepare_data(image, labels, cfg, labelled=case["painted"]))
start, marks = time.perf_counter(), []
for event in trainer.run():
    if isinstance(event, StepEvent) and event.step % 25 == 0:
        marks.append([event.step, round(time.perf_counter() - start, 1)])
total = time.perf_counter() - start
here = Path(__file__).parent
row = {"flush": flush, "total_s": round(total, 1), "marks": marks}
(here / f"probe-{int(flush)}.json").write_text(json.dumps(row))
# the painted slice's probabilities, compared between the two runs (identical: max |diff| 0.0)
np.save(f"/tmp/denormal-painted0-{int(flush)}.npy", trainer._probabilities(case["painted"][0]))
print(row)
