"""One trained model scored on the held-out slices, the numbers ``compare`` keeps per run.

Apart from the loop in ``compare.py`` so the scoring reads on its own (and stays testable with a
made-up prediction). ``score`` predicts the whole volume as an export would (or takes that
prediction), and on the held-out slices along the training axis gives:

- ``iou`` / ``dice``: per class 1..K (background excluded, ``metrics.overlap_scores``), NaN for a
  class absent from both the prediction and the truth there;
- ``brier``: mean over held-out voxels and class channels of (p - y)^2;
- ``ece``: expected calibration error over the same voxels and channels, 15 equal bins
  (``metrics.expected_calibration_error``), and the bins for a reliability diagram;
- ``brier_mc`` / ``ece_mc`` (a method that learns a threshold, SegPL-VI; None for the others):
  the same of the Monte-Carlo foreground probability, the mean of ``1(p > T_k)`` over the
  paper's ``MC_SAMPLES`` thresholds drawn from the head (its section 4.4 Brier score), and
  its reliability bins (``calibration_mc``);
- ``hd95``: per class, MONAI's 95th-percentile Hausdorff distance in mm (in voxels when no
  spacing is given: ``CompareResult.hd95_unit``)
  (``metrics.hd95``, MONAI's ``compute_hausdorff_distance``, percentile 95) on each held-out
  slice in 2D with the in-plane voxel spacing (held-out slices are not neighbours, so no 3D
  surface joins them), averaged over the slices where either holds the class, a slice where
  only one does scoring its diagonal (``hd95_slices`` counts them); NaN where none does;
- ``ood`` / ``adversarial``: the robustness curves of ``robustness.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import robustness
from .inference import Prediction, predict_volume
from .metrics import brier_score, calibration_bins, expected_calibration_error, hd95, overlap_scores
from .model import TrainedModel
from .sampling import encode_target


def score(
    model: TrainedModel,
    image: np.ndarray,
    truth: np.ndarray,
    holdout: Sequence[int],
    *,
    spacing: Sequence[float] | None = None,
    gammas: Sequence[float] = robustness.GAMMAS,
    epsilons: Sequence[float] = robustness.EPSILONS,
    surface: bool = True,
    prediction: Prediction | None = None,
) -> dict[str, Any]:
    """Every held-out number of one trained model (the ``RunResult`` fields it fills);
    ``prediction``: the model's own ``predict_volume`` of ``image``, when already made."""
    config, k = model.config, model.num_classes
    axis, holdout = config.axis, list(holdout)
    pred = prediction or predict_volume(model, image, device=config.device)
    labels_h = np.moveaxis(np.take(pred.labels, holdout, axis=axis), axis, 0)
    truth_h = np.moveaxis(np.take(truth, holdout, axis=axis), axis, 0)
    scores = overlap_scores(labels_h, truth_h, range(1, k + 1), axis=0, nested=config.nested)
    target = encode_target(truth_h, k, config.nested)
    out: dict[str, Any] = {
        "iou": [scores[c]["iou"] for c in range(1, k + 1)],
        "dice": [scores[c]["dice"] for c in range(1, k + 1)],
    }
    for prob, key in ((pred.probabilities, ""), (pred.mc_mean, "_mc")):  # p; SegPL-VI's MC mean
        if prob is not None:
            held = np.moveaxis(np.take(prob, holdout, axis=axis + 1), axis + 1, 1)
            count, mean_p, freq = calibration_bins(held, target)
            out |= {f"brier{key}": brier_score(held, target),
                    f"ece{key}": expected_calibration_error(held, target),
                    f"calibration{key}": {"count": count.tolist(), "mean_p": mean_p.tolist(),
                                          "freq": freq.tolist()}}  # fmt: skip
    if surface:
        plane = [s for a, s in enumerate(spacing or (1.0, 1.0, 1.0)) if a != axis]
        out["hd95"], out["hd95_slices"] = hd95(labels_h, truth_h, k, plane, config.nested)
    volume = robustness.normalised_volume(model, image)
    curve = robustness.ood_curve(model, volume, truth_h, holdout, gammas)
    out["ood"] = [mean for mean, _ in curve]
    curve = robustness.fgsm_curve(model, volume, truth_h, holdout, epsilons)
    out["adversarial"] = [mean for mean, _ in curve]
    return out
