"""(D2): paired change of whole-volume mean IoU, a lever against today's default, from the labels
saved by ``accuracy`` (``SEGPL_SAVE_PRED``), both masks through the parts rule as exported.

    PYTHONPATH=. SEGPL_DATA=../shared/data \\
        python benchmarks/results/D2/paired_change.py BEFORE_DIR AFTER_DIR
"""

import re
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, TUNING, load_case
from napari_segpl.engine import exported_scores, keep_painted_parts, painted_slices

NAME = re.compile(r"(.+)-k(\d)-(supervised|segpl-vi|segpl)-s(\d+)\.npz")


def scores(path: Path, case: tuple) -> tuple[float, int]:
    """Mean IoU in points over the classes, and the painted classes left with no voxel."""
    axis, truth, chosen, paint = case
    classes = [int(c) for c in np.unique(truth) if c]
    labels = np.load(path)["labels"]
    keep_painted_parts(labels, paint, axis)
    s = exported_scores(labels, truth, chosen, axis=axis, classes=classes)
    lost = sum(1 for c in classes if not (labels == c).any())
    return 100 * statistics.mean(v["iou"] for v in s.values()), lost


def summary(rows: list[dict], label: str) -> None:
    d = [r["after"] - r["before"] for r in rows]
    if not d:
        return
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    lost = (sum(r["before_lost"] > 0 for r in rows), sum(r["after_lost"] > 0 for r in rows))
    print(
        f"{label:45s} n={len(d):2d} mean {statistics.mean(d):+6.2f} SD {sd:5.2f} "
        f"min {min(d):+6.1f} max {max(d):+6.1f}; runs losing a class {lost[0]} -> {lost[1]}"
    )


def main(before_dir: Path, after_dir: Path) -> None:
    cases: dict = {}
    rows = []
    for f in sorted(after_dir.glob("*.npz")):
        name, k, method, seed = NAME.match(f.name).groups()
        k, seed = int(k), int(seed)
        if not (before_dir / f.name).exists():
            print("no before for", f.name)
            continue
        if (name, k) not in cases:
            axis = DATASETS[name]
            _, truth, chosen, sparse, _ = load_case(name, axis, k)
            cases[name, k] = (axis, truth, chosen, painted_slices(sparse, chosen, axis))
        before, before_lost = scores(before_dir / f.name, cases[name, k])
        after, after_lost = scores(f, cases[name, k])
        rows.append(dict(name=name, k=k, method=method, seed=seed, before=before, after=after,
                         before_lost=before_lost, after_lost=after_lost))  # fmt: skip
        print(
            f"{name:20s} K{k} {method:10s} s{seed}: {before:6.1f} -> {after:6.1f} "
            f"({after - before:+6.1f}); lost {before_lost} -> {after_lost}"
        )
    print()
    for tuning in (True, False):
        chosen = [r for r in rows if (r["name"] in TUNING) == tuning and r["method"] != "segpl-vi"]
        summary(chosen, f"{'tuning' if tuning else 'validation'} (supervised + SegPL)")
    for name in sorted({r["name"] for r in rows}):
        for method in ("supervised", "segpl", "segpl-vi"):
            chosen = [r for r in rows if r["name"] == name and r["method"] == method]
            summary(chosen, f"  {name} {method}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
