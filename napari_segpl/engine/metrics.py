"""Evaluation metrics: foreground IoU and Dice per class (background excluded), Brier score,
expected calibration error, the score of an exported mask (every slice but the painted ones),
and HD95 per slice (MONAI's, imported only when it is asked for).

The authors' code averaged IoU over background and foreground, which inflates it on images that
are mostly background; here every class 1..K is scored on its own voxels only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np


def _select(array: np.ndarray, axis: int, slices: Sequence[int] | None) -> np.ndarray:
    return array if slices is None else np.take(array, list(slices), axis=axis)


def class_mask(labels: np.ndarray, c: int, nested: bool = False) -> np.ndarray:
    """Where ``labels`` hold class ``c``; ``nested`` (BRATS-style classes): the region
    label >= c, as training's targets take it (``sampling.encode_target``)."""
    return labels >= c if nested else labels == c


def overlap_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[int] | None = None,
    *,
    axis: int = 2,
    slices: Sequence[int] | None = None,
    nested: bool = False,
) -> dict[int, dict[str, float]]:
    """Per-class {"iou", "dice", "pred_voxels", "true_voxels"} over the whole volume, or over
    ``slices`` along ``axis``. A class absent from both gives NaN (undefined, not perfect).
    ``nested`` (BRATS-style classes): class c is the region label >= c, as training's targets
    and the calibration scores take it."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    pred, truth = _select(pred, axis, slices), _select(truth, axis, slices)
    if classes is None and nested:  # label 2 holds class 1 too: every class up to the largest
        classes = list(range(1, int(max(pred.max(initial=0), truth.max(initial=0))) + 1))
    elif classes is None:
        classes = [int(c) for c in np.union1d(np.unique(pred), np.unique(truth)) if c != 0]
    scores = {}
    for c in classes:
        p, t = class_mask(pred, c, nested), class_mask(truth, c, nested)
        inter = float(np.logical_and(p, t).sum())
        union = float(np.logical_or(p, t).sum())
        total = float(p.sum() + t.sum())
        scores[int(c)] = {
            "iou": inter / union if union else float("nan"),
            "dice": 2 * inter / total if total else float("nan"),
            "pred_voxels": float(p.sum()),
            "true_voxels": float(t.sum()),
        }
    return scores


def brier_score(prob: np.ndarray, target: np.ndarray) -> float:
    """Mean over voxels of (p - y)^2, with y in {0, 1} (paper appendix, Eq. 1)."""
    if prob.shape != target.shape:
        raise ValueError(f"probability shape {prob.shape} differs from target {target.shape}")
    diff = np.asarray(prob, np.float64) - np.asarray(target, np.float64)
    return float(np.mean(diff**2))


#: equal-width probability bins of ``calibration_bins`` and ``expected_calibration_error``
CALIBRATION_BINS = 15


def calibration_bins(
    prob: np.ndarray, target: np.ndarray, bins: int = CALIBRATION_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, mean probability, observed frequency) per bin of ``bins`` equal-width bins of
    [0, 1] (bin b holds b / bins <= p < (b + 1) / bins, the last one also p = 1), pooled over
    every voxel and class channel: one sigmoid channel per class makes each channel a binary
    forecast of its class, so a bin's frequency is the share of its voxels that are the class.
    Empty bins have NaN mean and frequency. What a reliability diagram plots."""
    if prob.shape != target.shape:
        raise ValueError(f"probability shape {prob.shape} differs from target {target.shape}")
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(target, np.float64).ravel()
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    count = np.bincount(index, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=bins) / count
        freq = np.bincount(index, weights=y, minlength=bins) / count
    return count, mean_p, freq


def pooled_bins(runs: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, list[float]]:
    """Several runs' ``calibration_bins`` (as dicts of lists, NaN for an empty bin) as one:
    counts summed, each bin's mean probability and frequency weighted by its counts."""
    count = np.sum([r["count"] for r in runs], axis=0)
    out = {"count": count.tolist()}
    for key in ("mean_p", "freq"):
        pooled = np.nansum([np.nan_to_num(r[key]) * np.asarray(r["count"]) for r in runs], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = (pooled / count).tolist()
    return out


def expected_calibration_error(
    prob: np.ndarray, target: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """ECE = sum over bins of (n_b / N) |freq_b - mean_p_b| (Naeini et al. 2015; Guo et al.
    2017 use the same sum), with the bins of ``calibration_bins``: the voxel-weighted gap
    between the probability forecast and how often the class is there. Each class channel is
    a binary forecast (sigmoid channels), so p is the class probability itself, not
    max(p, 1 - p). 0 for a perfectly calibrated forecast; at most 1."""
    count, mean_p, freq = calibration_bins(prob, target, bins)
    full = count > 0
    return float(np.sum(count[full] * np.abs(freq[full] - mean_p[full])) / count.sum())


def exported_scores(
    pred: np.ndarray,
    truth: np.ndarray,
    painted: Sequence[int],
    *,
    axis: int = 2,
    classes: Sequence[int] | None = None,
    nested: bool = False,
) -> dict[int, dict[str, float]]:
    """Scores of what the user exports: every slice along ``axis`` except the painted ones,
    empty slices included, so a mask drawn where the structure does not exist costs IoU.
    Adds ``volume_ratio`` (predicted / true voxels; inf when the class is absent from the
    truth but predicted)."""
    keep = [s for s in range(pred.shape[axis]) if s not in set(painted)]
    scores = overlap_scores(pred, truth, classes, axis=axis, slices=keep, nested=nested)
    for s in scores.values():
        true, predicted = s["true_voxels"], s["pred_voxels"]
        s["volume_ratio"] = predicted / true if true else (float("inf") if predicted else 1.0)
    return scores


def hd95(
    pred: np.ndarray,
    truth: np.ndarray,
    classes: int,
    spacing: Sequence[float],
    nested: bool = False,
) -> tuple[list[float], list[int]]:
    """Per class: MONAI's HD95 of (S, h, w) predicted against true labels, in ``spacing``'s
    unit, slice by slice in 2D with in-plane ``spacing``, averaged over the slices where either
    holds the class; a slice where only one does scores its diagonal, the largest distance
    within it (a missed or invented structure is the worst error, not none); and how many
    slices were scored.
    ``nested``: class c is the region label >= c. ImportError without MONAI."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    diagonal = float(np.hypot(pred.shape[1] * spacing[0], pred.shape[2] * spacing[1]))
    means, counts = [], []
    for c in range(1, classes + 1):
        p, t = class_mask(pred, c, nested), class_mask(truth, c, nested)
        has_p, has_t = p.any(axis=(1, 2)), t.any(axis=(1, 2))
        both = np.flatnonzero(has_p & has_t)
        values = [diagonal] * int(np.count_nonzero(has_p ^ has_t))
        if len(both):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MONAI's deprecation notes
                d = compute_hausdorff_distance(
                    torch.from_numpy(p[both, None]), torch.from_numpy(t[both, None]),
                    include_background=True, percentile=95, spacing=list(spacing),
                )  # fmt: skip
            values += d.float().flatten().tolist()
        means.append(float(np.mean(values)) if values else float("nan"))
        counts.append(len(values))
    return means, counts
