#!/bin/bash
# rule 3: train (P on) then predict raw, score both. args: case seed
cd /work/run-rr
export PYTHONPATH=/work/run-rr OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 SEGPL_DATA=/work/shared/data
PY=/work/main/.venv/bin/python
$PY - "$@" <<'PYEOF'
import sys, json, subprocess, time, os
from pathlib import Path
import numpy as np
sys.path.insert(0, '/work/run-rr')
from benchmarks import time_to_mask as t
from napari_segpl.volume import read_volume
case_name, seed = sys.argv[1], int(sys.argv[2])
work = Path(f'/work/rr/{case_name}-s{seed}'); work.mkdir(parents=True, exist_ok=True)
case = t.write_generated(work, tuple(t.GENERATED_SHAPE)) if case_name == 'generated' else t.sample_case(case_name)
model, mask, raw = work/'model.pt', work/'mask.nii.gz', work/'raw.nii.gz'
cmd = [*t.SEGPL, 'train', str(case['image']), str(case['label_sparse']), '--model', str(model), '--mask', str(mask), '--seed', str(seed), '--quiet']
t0 = time.perf_counter(); out = subprocess.run(cmd, capture_output=True, text=True, cwd='/work/run-rr'); secs = time.perf_counter() - t0
assert out.returncode == 0, out.stderr
p2 = subprocess.run([*t.SEGPL, 'predict', str(model), str(case['image']), '--mask', str(raw)], capture_output=True, text=True, cwd='/work/run-rr')
assert p2.returncode == 0, p2.stderr
truth = read_volume(case['label_full']).array
r = {'case': case_name, 'seed': seed, 'seconds': round(secs, 1),
     'iou_p': t.mask_ious(read_volume(mask).array, truth, case['painted'], case['axis']),
     'iou_raw': t.mask_ious(read_volume(raw).array, truth, case['painted'], case['axis']),
     'stdout': out.stdout[-1500:]}
print(json.dumps(r))
with open('/work/rr/rows.jsonl', 'a') as f: f.write(json.dumps(r) + '\n')
PYEOF
