"""(Q2)'s third probe, no rule: SegPL on organs CT at seed 3 with the pseudo-label loss weighted
0 (alpha 0: the unlabelled images still go through the forward pass, the teacher, the gate and
the guard; only their loss is gone). Asks whether the stomach that SegPL loses is lost through
the other classes' pseudo-label losses or through the rest of SegPL's run. The row is appended
to ``benchmarks/results/Q2/alpha0_probe.jsonl``.

    OMP_NUM_THREADS=1 SEGPL_DATA=../shared/data SEGPL_SAVE_PRED=DIR PYTHONPATH=COPY \
        python benchmarks/results/Q2/alpha0_probe.py
"""

import json

import torch

from benchmarks.accuracy import DATASETS, run_one

torch.set_num_threads(1)
name = "abdomen_organs_ct"
row = run_one(name, DATASETS[name], "segpl", 3, 3, {"alpha": 0.0})
with open("benchmarks/results/Q2/alpha0_probe.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps({k: row[k] for k in ("whole_iou", "collapse_warnings")}))
