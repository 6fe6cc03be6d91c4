"""Issue 25: how well each voxel uncertainty finds the voxels a prediction gets wrong.

For every run the accuracy benchmark saved with ``SEGPL_SAVE_PRED`` and ``SEGPL_SAVE_PROB``:
on every slice but the painted ones, inside a band (the true and predicted structures grown
``BAND`` voxels in the slice, so easy background does not dominate), the area under the ROC
curve of each uncertainty kind as a detector of wrong voxels (predicted label != true label),
by MONAI's ``compute_roc_auc`` on a seeded sample of at most ``SAMPLE`` band voxels; and the
share of wrong voxels the kind calls confident (below a tenth of its maximum), the errors a
clinician would miss. Calibration of p (Brier, ECE) is over every voxel of those slices.
Each kind saved beside the probabilities is measured: the entropy of p always, SegPL-VI's MC
std (``mc_std``), the ensemble's spread (``spread``) and test-time augmentation (``tta_std``,
the std of p over M small affine maps; with flips in runs before 2026-12-02 12:30, and
``tta_noflip_std`` beside it in (x)'s runs) where the run saved them (``saved_arrays``
says what to save from a prediction); from (I2), the TTA std pooled with the supervised
twin's, where both runs saved their TTA mean.

    python -m benchmarks uncertainty_auroc --rows ROWS.json [...] --preds DIR --probs DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from napari_segpl.engine.inference import Prediction
from napari_segpl.engine.metrics import brier_score, expected_calibration_error
from napari_segpl.engine.suggest import grow_in_plane
from napari_segpl.engine.uncertainty import (
    ENTROPY,
    KINDS,
    MC,
    SPREAD,
    TTA,
    binary_entropy,
    pooled_std,
)

from .accuracy import TUNING, load_case

BAND = 5
SAMPLE = 400_000
#: (x)'s runs: TTA without flips, saved beside the TTA with flips of those runs
NOFLIP = "tta_noflip_std"
TTA_NOFLIP = "tta-noflip"
#: (I2): the mean p over the same TTA predictions, saved beside their std; the TTA std pooled
#: with the supervised twin's (the same dataset, K and seed), scored where both saved it
TTA_MEAN, TTA_TWIN = "tta_mean", "tta-twin"
#: the kinds measured beside the entropy of p, each by the name of its saved array
SAVED = {MC: "mc_std", SPREAD: "spread", TTA: "tta_std", TTA_NOFLIP: NOFLIP}
#: short column names for the table
SHORT = {
    ENTROPY: "entropy", MC: "MC std", SPREAD: "spread", TTA: "TTA std", TTA_NOFLIP: "TTA no flip",
    TTA_TWIN: "TTA std with twin",
}  # fmt: skip


def saved_arrays(pred: Prediction) -> dict[str, np.ndarray]:
    """What a run saves for this benchmark (``np.savez_compressed``): the probabilities
    (float32: in float16 two organs' p near 1 tie, and a cut then picks another class than the
    engine did, RESULTS.md (gg)) and every uncertainty the prediction holds beyond the entropy
    of p (float16)."""
    arrays = {"probabilities": pred.probabilities.astype(np.float32)}
    for name in SAVED.values():  # (the no-flip TTA is a second prediction's tta_std)
        if getattr(pred, name, None) is not None:
            arrays[name] = getattr(pred, name).astype(np.float16)
    if pred.tta_mean is not None:  # float32, as p: (I2) pools two models' TTA moments
        arrays[TTA_MEAN] = pred.tta_mean.astype(np.float32)
    return arrays


def auroc(score: np.ndarray, wrong: np.ndarray) -> float:
    """ROC AUC of ``score`` separating ``wrong`` voxels from right ones (NaN if one kind)."""
    if wrong.all() or not wrong.any():
        return float("nan")
    y_pred = torch.from_numpy(score.astype(np.float64))
    return float(compute_roc_auc(y_pred, torch.from_numpy(wrong.astype(np.int64))))


def twin_map(arrays: dict, twin: dict | None) -> np.ndarray | None:
    """(I2)'s candidate: per class, the std of p over the model's and the twin's TTA maps."""
    if twin is None or TTA_MEAN not in arrays or TTA_MEAN not in twin:
        return None
    means, stds = [arrays[TTA_MEAN], twin[TTA_MEAN]], [arrays["tta_std"], twin["tta_std"]]
    return pooled_std(means, stds)


def evaluate(row: dict, labels: np.ndarray, arrays: dict, case, twin: dict | None = None) -> dict:
    """Scores of one run; ``twin``: the arrays its supervised twin saved, if any."""
    axis, painted = row["axis"], set(case.chosen)
    keep = [s for s in range(labels.shape[axis]) if s not in painted]
    pred = np.moveaxis(labels, axis, 0)[keep]
    truth = np.moveaxis(case.truth, axis, 0)[keep]
    prob = np.moveaxis(arrays["probabilities"].astype(np.float32), axis + 1, 1)[:, keep]
    maps = {ENTROPY: binary_entropy(prob).max(axis=0)}
    for kind, name in SAVED.items():  # each class's map; the most uncertain class per voxel
        if name in arrays:
            per_class = np.moveaxis(arrays[name].astype(np.float32), axis + 1, 1)[:, keep]
            maps[kind] = per_class.max(axis=0)
    if (pooled := twin_map(arrays, twin)) is not None:
        maps[TTA_TWIN] = np.moveaxis(pooled, axis + 1, 1)[:, keep].max(axis=0)
    band = grow_in_plane((truth > 0) | (pred > 0), BAND)
    wrong = pred[band] != truth[band]
    # one subsample of the band for every kind: the kinds are compared on the same voxels
    rng = np.random.default_rng(0)
    pick = rng.choice(wrong.size, SAMPLE, replace=False) if wrong.size > SAMPLE else slice(None)
    onehot = np.stack([truth == c for c in range(1, prob.shape[0] + 1)]).astype(np.float32)
    out = {
        "dataset": row["dataset"], "k": row["k"], "seed": row["seed"], "method": row["method"],
        "set": "tuning" if row["dataset"] in TUNING else "validation",
        "wrong_share": float(wrong.mean()), "band_voxels": int(band.sum()),
        "brier": brier_score(prob, onehot), "ece": expected_calibration_error(prob, onehot),
    }  # fmt: skip
    for kind, volume in maps.items():
        score = volume[band]
        out[f"auroc_{kind}"] = auroc(score[pick], wrong[pick])
        top = KINDS[TTA if kind in (TTA_NOFLIP, TTA_TWIN) else kind].upper
        out[f"confident_{kind}"] = float((score[wrong] < 0.1 * top).mean()) if wrong.any() else 0
    return out


def table(records: list[dict]) -> str:
    """One row per run; an AUROC column for every kind some run has (the entropy and the MC
    std always, as before), blank where a run lacks it."""
    kinds = [k for k in (ENTROPY, MC, SPREAD, TTA, TTA_NOFLIP, TTA_TWIN)
             if k in (ENTROPY, MC) or any(f"auroc_{k}" in r for r in records)]  # fmt: skip
    names = [SHORT[k] for k in kinds]

    def cell(r: dict, key: str, digits: int) -> str:
        return "" if r.get(key) is None else f"{r[key]:.{digits}f}"

    lines = [
        "| set | dataset | K | seed | method | wrong in band | "
        + " | ".join(f"AUROC {n}" for n in names)
        + f" | confident errors: {', '.join(names)} | Brier | ECE |",
        "|---" * (9 + len(kinds)) + "|",
    ]
    for r in sorted(
        records, key=lambda r: (r["set"], r["dataset"], r["k"], r["method"], r["seed"])
    ):
        aurocs = " | ".join(cell(r, f"auroc_{k}", 3) for k in kinds)
        confident = ", ".join(cell(r, f"confident_{k}", 2) for k in kinds)
        lines.append(
            f"| {r['set']} | {r['dataset']} | {r['k']} | {r['seed']} | {r['method']} "
            f"| {r['wrong_share']:.3f} | {aurocs} | {confident} | {r['brier']:.4f} "
            f"| {r['ece']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks uncertainty_auroc")
    parser.add_argument("--rows", type=Path, nargs="+", required=True)
    parser.add_argument("--preds", type=Path, required=True)
    parser.add_argument("--probs", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [r for path in args.rows for r in json.loads(path.read_text())]
    records, cases = [], {}
    for row in rows:
        stem = f"{row['dataset']}-k{row['k']}-{row['method']}-s{row['seed']}.npz"
        if not (args.probs / stem).exists() or not (args.preds / stem).exists():
            continue
        key = (row["dataset"], row["k"])
        if key not in cases:
            cases[key] = load_case(row["dataset"], row["axis"], row["k"])
        labels = np.load(args.preds / stem)["labels"]
        twin_stem = args.probs / stem.replace(f"-{row['method']}-", "-supervised-")
        twin = None
        if row["method"] != "supervised" and twin_stem.exists():
            with np.load(twin_stem) as arrays:
                twin = dict(arrays)
        with np.load(args.probs / stem) as arrays:
            records.append(evaluate(row, labels, dict(arrays), cases[key], twin))
        print(json.dumps(records[-1]), flush=True)
    print(table(records))
    if args.out:
        args.out.write_text(json.dumps(records, indent=1))
    return 0
