"""(tt): the default safeguard (with the image check) on the generated CT of time_to_mask, a
volume outside ../shared: per training seed, what it keeps and each model's exported IoU.
``NAME=VALUE`` after the seed overrides a float of the preset ((xx): ``intensity=2``).

    OMP_NUM_THREADS=1 python benchmarks/results/tt/generated_check.py SEED [NAME=VALUE ...]
"""

import json
import sys

import torch

from benchmarks.time_to_mask import safeguard_on_generated

torch.set_num_threads(1)
overrides = {k: float(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
record, _ = safeguard_on_generated(int(sys.argv[1]), overrides)
print(json.dumps({**record, **overrides}))
