"""(P2), read only: the default uncertainty after a safeguarded run (the TTA std pooled with the
safeguard's other model) scored on the wrong voxels of the masks labelled by the decision
fitted to the paint, as (M2)-(O2) scored it on the masks before. From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/P2/auroc.py D1 D2

D1, D2: rule 1's and rule 2's OUT folders (labels under D, before the parts rule), whose
``preds`` folders get a copy with the parts rule applied beside them (``preds-parts``).
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.components import FILE
from napari_segpl.engine.components import keep_painted_parts, painted_slices

sys.path.insert(0, "benchmarks/results/N2")
from rule import ENT, NEW, OLD, score  # noqa: E402

PROBS = {0: "/work/i2/probs", 1: "/work/i2/probs", 2: "/work/i2/probs", 3: "/work/m2/probs",
         4: "/work/n2/probs", 5: "/work/o2/probs", 6: "/work/o2/probs", 7: "/work/o2/probs",
         8: "/work/p2q/probs"}  # fmt: skip
preds: dict[int, Path] = {}
paints: dict[str, dict] = {}  # dataset -> its painted slices, read once
for arg in sys.argv[1:]:
    src, dst = Path(arg) / "preds", Path(arg) / "preds-parts"
    dst.mkdir(exist_ok=True)
    for f in sorted(src.glob("*.npz")):
        m = FILE.fullmatch(f.stem)
        name, seed = m["name"], int(m["seed"])
        axis = DATASETS[name]
        if name not in paints:
            _, _, chosen, sparse, _ = load_case(name, axis, 3)
            paints[name] = painted_slices(sparse, chosen, axis)
        labels = np.load(f)["labels"]
        keep_painted_parts(labels, paints[name], axis)
        np.savez_compressed(dst / f.name, labels=labels)
        preds[seed] = dst
records = score(preds, {seed: Path(PROBS[seed]) for seed in preds})
Path("benchmarks/results/P2/auroc.json").write_text(json.dumps(records, indent=1))
for group in ("tuning", "validation"):
    part = [r for r in records if r["set"] == group]
    if part:
        new, old, ent = (statistics.mean(r[k] for r in part) for k in (NEW, OLD, ENT))
        print(
            f"{group}: {len(part)} runs, pooled {new:.3f}, kept TTA std {old:.3f}, "
            f"entropy {ent:.3f}; pooled under 0.75 in {sum(r[NEW] < 0.75 for r in part)}"
        )
