"""(B2) rule 1: lever TI on the generated CT's saved masks (``uu/generated_save.py``: SegPL's
and its twin's exported labels, P on, and the safeguard's record), no training. Runs with the
code of 9aa7160, where ``traded_check`` lived (removed since with the lever).

    python benchmarks/results/B2/generated_ti.py RECORDS.jsonl MASK_DIR [RECORDS MASK_DIR ...]
"""

import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.intensity_arbiter import traded_check
from benchmarks.time_to_mask import generated_case, mask_ious
from napari_segpl.engine import TrainConfig, painted_slices, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.label_evidence import MARGIN
from napari_segpl.engine.safeguard import lost_classes

image, truth, painted, sparse = generated_case()
config = TrainConfig.from_preset(suggest_preset(image), method="segpl", axis=2)
data = prepare_data(image, sparse, config, labelled=painted)
paint = painted_slices(sparse, painted, 2)
args = sys.argv[1:]
for records, folder in zip(args[::2], args[1::2], strict=True):
    for line in Path(records).read_text().splitlines():
        r = json.loads(line)
        labels = np.load(Path(folder) / f"generated-s{r['seed']}.npz")
        semi, sup = labels["segpl"], labels["supervised"]
        score = {m: float(np.mean(mask_ious(x, truth, painted, 2))) for m, x in labels.items()}
        today = score[r["kept"]]
        lost = [c for _, c in lost_classes(r["ratios"])]
        ti, nats = today, None
        if lost:
            traded, nats, keep = traded_check(
                semi, sup, lost, paint, 2, data.image, data.labels, list(data.labelled), MARGIN
            )
            ti = score["supervised"]
            if keep:
                ti = float(np.mean(mask_ious(traded, truth, painted, 2)))
        print(json.dumps({
            "seed": r["seed"], "kept": r["kept"], "lost": lost, "segpl": round(score["segpl"], 4),
            "supervised": round(score["supervised"], 4), "today": round(today, 4),
            "ti_nats": None if nats is None else round(nats, 3), "ti": round(ti, 4),
            "change_points": round(100 * (ti - today), 1),
        }))  # fmt: skip
