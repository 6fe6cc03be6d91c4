"""(tt): the default safeguard (with the image check) on the generated CT of time_to_mask, a
volume outside ../shared: per training seed, what it keeps and each model's exported IoU.

    OMP_NUM_THREADS=1 python benchmarks/results/tt/generated_check.py SEED
"""

import json
import sys

import torch

from benchmarks.time_to_mask import safeguard_on_generated

torch.set_num_threads(1)
record, _ = safeguard_on_generated(int(sys.argv[1]))
print(json.dumps(record))
