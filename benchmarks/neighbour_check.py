"""RESULTS.md (kk) rule 3: a safeguard check that uses the painted slices as the truth of their
neighbours, measured on the saved labels of recorded runs (no training). Tried, not adopted.

For a model and class c the *neighbour Dice* is the mean, over painted slices s and unpainted
slices j with 1 <= |j - s| <= reach, of Dice(paint_s == c, prediction_j == c). The candidate
falls back to the twin when the default rule does (a class lost) or when some class's neighbour
Dice is lower than the twin's by more than t. The twin is the supervised run of the same cell
and seed, as ``paired.kept_iou`` takes it.

    SEGPL_DATA=../shared/data python -m benchmarks neighbour_check FOLDER [FOLDER ...] \
        [--reach 1] [--t 0.2 0.3 0.4 0.5]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from napari_segpl.engine.metrics import exported_scores
from napari_segpl.engine.safeguard import decide, volume_ratios

NAME = re.compile(r"(.+)-k(\d+)-(segpl-vi|segpl)-s(\d+)\.npz")
TUNING = ("lungs_ct", "abdomen_vessels_ct", "brain_tissue_mri")


def neighbour_dice(pred: np.ndarray, paint: np.ndarray, painted: list[int], c: int, reach: int):
    """Mean Dice of the painted slices' class c against the prediction ``reach`` slices around
    them (axis 0; painted slices themselves left out); nan when no neighbour exists."""
    values = []
    for s in painted:
        for j in range(s - reach, s + reach + 1):
            if j != s and 0 <= j < pred.shape[0] and j not in painted:
                a, b = paint[s] == c, pred[j] == c
                total = a.sum() + b.sum()
                values.append(1.0 if total == 0 else 2.0 * (a & b).sum() / total)
    return float(np.mean(values)) if values else float("nan")


def one_run(semi: np.ndarray, twin: np.ndarray, truth: np.ndarray, painted: list[int], reach: int):
    """(whole-volume IoU of semi minus twin in points, a class lost, the largest neighbour-Dice
    gap twin - semi); volumes are (slices, ...) with the painted slices of ``truth``."""
    classes = [int(c) for c in np.unique(truth) if c]
    iou = {}
    for name, pred in (("semi", semi), ("twin", twin)):
        scores = exported_scores(pred, truth, painted, axis=0, classes=classes)
        iou[name] = float(np.nanmean([scores[c]["iou"] for c in classes]))
    # the default rule exactly as the engine's safeguard applies it (classes 1..n)
    areas = [(truth[painted] == c).sum() / len(painted) for c in range(1, max(classes) + 1)]
    kept, _ = decide("semi", volume_ratios(semi, twin, painted, 0, areas))
    gap = max(
        neighbour_dice(twin, truth, painted, c, reach)
        - neighbour_dice(semi, truth, painted, c, reach)
        for c in classes
    )
    return 100 * (iou["semi"] - iou["twin"]), kept == "supervised", gap


def collect(folders: list[Path], reach: int) -> list[dict]:
    """One row per saved SegPL or SegPL-VI run that has a supervised run beside it."""
    from .accuracy import DATASETS, load_case  # reads ../shared/data

    rows, cases = [], {}
    for folder in folders:
        for path in sorted(folder.glob("*.npz")):
            match = NAME.fullmatch(path.name)
            twin = folder / f"{match[1]}-k{match[2]}-supervised-s{match[4]}.npz" if match else None
            if twin is None or not twin.exists():
                continue
            name, k, axis = match[1], int(match[2]), DATASETS[match[1]]
            if (name, k) not in cases:
                _, truth, painted, _, _ = load_case(name, axis, k)
                cases[name, k] = np.moveaxis(truth, axis, 0), sorted(painted)
            truth, painted = cases[name, k]
            semi, sup = (np.moveaxis(np.load(p)["labels"], axis, 0) for p in (path, twin))
            diff, lost, gap = one_run(semi, sup, truth, painted, reach)
            rows.append(dict(name=name, k=k, method=match[3], seed=int(match[4]), diff=diff,
                             lost=lost, gap=gap))  # fmt: skip
    return rows


def summary(rows: list[dict], t: float | None) -> str:
    """Kept minus supervised per set and method: mean, worst, runs under -2, fallbacks."""
    parts = []
    for label, tuning in (("tuning", True), ("validation", False)):
        for method in ("segpl", "segpl-vi"):
            cell = [r for r in rows if (r["name"] in TUNING) == tuning and r["method"] == method]
            back = [r["lost"] or (t is not None and r["gap"] > t) for r in cell]
            kept = [0.0 if b else r["diff"] for r, b in zip(cell, back, strict=True)]
            if kept:
                parts.append(
                    f"{label} {method}: {np.mean(kept):+.1f}, worst {min(kept):+.1f}, "
                    f"{sum(k < -2 for k in kept)} under -2, {sum(back)}/{len(kept)} fall back"
                )
    return ("default" if t is None else f"t {t:g}") + ": " + " | ".join(parts)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks neighbour_check")
    parser.add_argument("folders", nargs="+", type=Path, help="folders of saved labels")
    parser.add_argument("--reach", type=int, default=1)
    parser.add_argument("--t", type=float, nargs="*", default=[0.2, 0.3, 0.4, 0.5])
    args = parser.parse_args(argv)
    rows = collect(args.folders, args.reach)
    for t in (None, *args.t):
        print(summary(rows, t))
    return 0
