#!/bin/bash
# (P2) rule 3: `segpl train` with the defaults on the generated CT; args: before|after SEED.
# COPY_BEFORE / COPY_AFTER: copies of the two commits' code (git archive).
CODE=$1; SEED=$2
COPY=$([ "$CODE" = before ] && echo "$COPY_BEFORE" || echo "$COPY_AFTER")
cd "$COPY"
export PYTHONPATH="$COPY" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python - "$CODE" "$SEED" "$OUT" <<'PYEOF'
import json, subprocess, sys, time
from pathlib import Path
from benchmarks import time_to_mask as t
from napari_segpl.volume import read_volume
code, seed, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
work = out / f"{code}-s{seed}"
work.mkdir(parents=True, exist_ok=True)
case = t.write_generated(work, tuple(t.GENERATED_SHAPE))
model, mask = work / "model.pt", work / "mask.nii.gz"
cmd = [*t.SEGPL, "train", str(case["image"]), str(case["label_sparse"]), "--model", str(model),
       "--mask", str(mask), "--seed", str(seed), "--quiet"]
t0 = time.perf_counter()
run = subprocess.run(cmd, capture_output=True, text=True)
assert run.returncode == 0, run.stderr
truth = read_volume(case["label_full"]).array
row = {"code": code, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
       "iou": t.mask_ious(read_volume(mask).array, truth, case["painted"], case["axis"]),
       "stdout": run.stdout[-1200:]}
print(json.dumps(row))
with open(out / "rows.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
PYEOF
