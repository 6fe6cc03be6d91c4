"""The label decision fitted to the paint: which class a voxel gets from its K class channels.

Today's rule (``labels_from_probabilities`` with exclusive classes) labels a voxel with its most
probable class if that p > 0.5, else background. That is a (K+1)-way linear softmax classifier
over the class logits z: scores s_0 = 0 and s_k = z_k, i.e. W = [0; I], b = 0. Where two
channels are both on (the liver's channel over the spleen on CT, whose own channel is on too)
the most probable one wins, whatever the paint says about such voxels. The fitted decision
starts at that rule (at a threshold t other than 0.5: b_k = -logit(t)) and fits W and b to the
painted slices (the paint as the truth, background included) by the mean cross-entropy plus
``lam / 2 * |theta - theta_0|^2``, so with nothing to learn it stays the rule it started from.
Adopted by benchmarks/RESULTS.md (P2). Nested classes keep their own rule (no decision).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def label_dtype(classes: int) -> type:
    """The smallest unsigned integer type that holds labels 0..classes."""
    return np.uint8 if classes < 256 else np.uint16


def labels_from_probabilities(
    prob: np.ndarray, threshold: float | np.ndarray, nested: bool
) -> np.ndarray:
    """(K, ...) sigmoid probabilities -> integer labels; ``threshold`` a float or an array
    broadcastable to ``prob`` (one threshold per class, or per class and slice).

    Exclusive classes: the most probable class, if it is above its threshold, else 0 (with
    one threshold for every class: the most probable of those above it). This is the rule
    the E-step's exclusive pseudo labels follow.
    Nested classes: the highest class whose channel is above its threshold.
    """
    above = prob > threshold
    if nested:
        ranks = np.arange(1, prob.shape[0] + 1).reshape((-1,) + (1,) * (prob.ndim - 1))
        labels = (above * ranks).max(axis=0)
    else:
        winner = prob.argmax(axis=0)
        on = np.take_along_axis(above, winner[None], axis=0)[0]
        labels = np.where(on, winner + 1, 0)
    return labels.astype(label_dtype(prob.shape[0]))


#: Probabilities are clipped to [EPS, 1 - EPS] before the logit: |z| <= 13.8.
EPS = 1e-6
#: L-BFGS stops when no gradient entry is larger (or after ``iterations``).
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Decision:
    """Scores ``weight @ z + bias`` over background (row 0) and the K classes."""

    weight: np.ndarray  # (K + 1, K)
    bias: np.ndarray  # (K + 1,)

    @classmethod
    def identity(cls, classes: int, threshold: float = 0.5) -> Decision:
        """The unfitted rule: the most probable class if its p > ``threshold``, else
        background."""
        weight = np.zeros((classes + 1, classes), np.float64)
        weight[1:] = np.eye(classes)
        bias = np.zeros(classes + 1, np.float64)
        bias[1:] = -float(_logits(np.asarray(threshold)))
        return cls(weight, bias)

    def labels(self, prob: np.ndarray) -> np.ndarray:
        """(K, ...) probabilities -> integer labels (0 background, k class k)."""
        z = _logits(prob).reshape(prob.shape[0], -1)
        scores = self.weight @ z + self.bias[:, None]
        return scores.argmax(axis=0).reshape(prob.shape[1:])


def _logits(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_decision(
    prob: np.ndarray,
    truth: np.ndarray,
    threshold: float = 0.5,
    lam: float = 0.01,
    iterations: int = 100,
) -> Decision:
    """Fit the decision on painted voxels: ``prob`` (K, ...) their probabilities, ``truth``
    (...) their painted labels (0 to K). Starts at (and is pulled towards)
    ``Decision.identity(K, threshold)``."""
    classes = prob.shape[0]
    if truth.shape != prob.shape[1:]:
        raise ValueError(f"truth {truth.shape} does not match probabilities {prob.shape}")
    if truth.size and (truth.min() < 0 or truth.max() > classes):
        raise ValueError(f"painted labels must lie in 0..{classes}")
    start = Decision.identity(classes, threshold)
    w0 = torch.from_numpy(start.weight)
    b0 = torch.from_numpy(start.bias)
    if truth.size == 0:
        return start
    z = torch.from_numpy(_logits(prob).reshape(classes, -1))
    y = torch.from_numpy(np.asarray(truth, np.int64).reshape(-1))
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS(
        [w, b], max_iter=iterations, line_search_fn="strong_wolfe", tolerance_grad=TOLERANCE
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        scores = (w @ z + b[:, None]).T
        penalty = ((w - w0) ** 2).sum() + ((b - b0) ** 2).sum()
        loss = F.cross_entropy(scores, y) + 0.5 * lam * penalty
        loss.backward()
        return loss

    optimiser.step(closure)
    return Decision(w.detach().numpy().copy(), b.detach().numpy().copy())
