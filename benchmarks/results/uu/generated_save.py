"""(uu): (tt)'s generated_check.py, saving both models' exported masks (P on both) so that the
class trade can be scored on them without training again.

    OMP_NUM_THREADS=1 python benchmarks/results/uu/generated_save.py SEED OUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.time_to_mask import safeguard_on_generated

seed, out = int(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
record, labels = safeguard_on_generated(seed)
np.savez_compressed(out / f"generated-s{seed}.npz", **labels)
print(json.dumps(record))
