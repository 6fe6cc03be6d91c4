"""Robustness of a trained model on held-out slices: out-of-distribution inputs and FGSM.

Both curves are scored on the network's input, the volume after the preset's normalisation
(z-score, after the CT window for ``ct``), moved so the slicing axis comes first and padded as
``predict_volume`` pads it (with the minimum of the volume being predicted), so at gamma 0 or
epsilon 0 they give exactly the clean prediction of those slices. Only the held-out slices
(and, for the 3-slice network, their neighbours) are perturbed and predicted.

- Out of distribution (``ood_volume``): ``x' = c (x - m) + m + n``, with c ~ U(0.5, 1.5) drawn
  per slice (random contrast about the slice's mean m) and n ~ N(0, 0.5^2) per voxel, in
  normalised-intensity units; ``x_hat = gamma x' + (1 - gamma) x``. The draws come from one
  fixed seed, so every method and seed sees the same x' (common random numbers).
- Adversarial (``fgsm``): the fast gradient sign method of Goodfellow et al. (2015),
  ``x_adv = x + epsilon * sign(grad_x L(f(x), y))``, with L the configuration's supervised
  training loss (``loss``: Dice, Dice + BCE or BCE, on the true labels of the held-out slice,
  the centre slice of a 3D stack) and the gradient taken in eval mode, one step. epsilon is in
  normalised-intensity units (standard deviations of the volume), the perturbation touches the
  image's voxels only (not the padding; all three slices of a 3D stack). A semi-supervised
  method's own unsupervised terms are not attacked: they need no label, FGSM's loss does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .losses import segmentation_loss
from .metrics import overlap_scores
from .model import TrainedModel
from .sampling import Normaliser, encode_target, pad_in_plane, stack_indices

#: gamma steps of the out-of-distribution curve (0: the clean input, 1: x' alone)
GAMMAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: epsilon steps of the FGSM curve, in normalised-intensity units
EPSILONS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
#: range of the random contrast factor of x' and SD of its noise (normalised units)
CONTRAST = (0.5, 1.5)
NOISE = 0.5
#: slices per forward pass
BATCH = 8


def normalised_volume(model: TrainedModel, image: np.ndarray) -> np.ndarray:
    """The network's view of ``image``: normalised as the model was trained, axis first."""
    config = model.config
    return np.moveaxis(Normaliser.from_config(config)(image), config.axis, 0)


def network_input(volume: np.ndarray, slices: Sequence[int], model: TrainedModel) -> np.ndarray:
    """(B, 1, H, W) slices or (B, 1, 3, H, W) stacks of ``volume`` (axis first), padded as
    ``predict_volume`` pads (to a multiple of 2**depth, with the volume's minimum)."""
    config, n = model.config, volume.shape[0]
    fill = float(volume.min())
    parts = [
        pad_in_plane(volume[stack_indices(s, n, config.dims)], 2**config.depth, fill)
        for s in slices
    ]
    out = np.stack(parts)[:, None] if config.dims == 3 else np.stack(parts)
    return np.ascontiguousarray(out, dtype=np.float32)


def probabilities(model: TrainedModel, x: np.ndarray | torch.Tensor, size: tuple[int, int]):
    """(B, K, h, w) numpy probabilities of a network input (eval mode, no gradient),
    cropped to the slices' in-plane ``size``; the centre slice of a 3D stack."""
    method, (h, w) = model.method, size
    method.train(False)
    x = torch.as_tensor(x)
    out = []
    with torch.no_grad():
        for start in range(0, len(x), BATCH):
            p = torch.sigmoid(method.logits(x[start : start + BATCH]).float())
            p = p[:, :, 1] if model.config.dims == 3 else p
            out.append(p[..., :h, :w].numpy())
    return np.concatenate(out)


def heldout_iou(
    model: TrainedModel, prob: np.ndarray, truth: np.ndarray
) -> tuple[float, list[float]]:
    """(mean over classes, per class) IoU of (B, K, h, w) probabilities cut as a prediction
    is, against (B, h, w) true labels; NaN for a class absent from both (left out of the
    mean)."""
    k = prob.shape[1]
    labels = model.labels(np.moveaxis(prob, 1, 0))
    scores = overlap_scores(labels, truth, range(1, k + 1), axis=0, nested=model.config.nested)
    per_class = [scores[c]["iou"] for c in range(1, k + 1)]
    finite = [v for v in per_class if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), per_class


def ood_volume(
    volume: np.ndarray,
    gamma: float,
    seed: int = 0,
    contrast: tuple[float, float] = CONTRAST,
    noise: float = NOISE,
) -> np.ndarray:
    """``gamma x' + (1 - gamma) x`` for a (slices, H, W) normalised ``volume`` (see the module
    docstring for x'); x' is the same for every gamma with the same seed."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(*contrast, size=volume.shape[0]).astype(np.float32)[:, None, None]
    m = volume.mean(axis=(1, 2), keepdims=True)
    shifted = c * (volume - m) + m + rng.normal(0.0, noise, volume.shape).astype(np.float32)
    return (gamma * shifted + (1.0 - gamma) * volume).astype(np.float32)


def ood_curve(
    model: TrainedModel,
    volume: np.ndarray,
    truth: np.ndarray,
    holdout: Sequence[int],
    gammas: Sequence[float] = GAMMAS,
    seed: int = 0,
) -> list[tuple[float, list[float]]]:
    """Per gamma: (mean IoU, per-class IoU) on the held-out slices of ``ood_volume``.
    ``volume``: normalised, axis first; ``truth``: (held-out, h, w) labels."""
    needed = sorted({i for s in holdout for i in stack_indices(s, volume.shape[0], 3)})
    sub = volume[needed]  # only the slices read are perturbed: no whole volume of noise
    out = []
    for gamma in gammas:
        x_hat = np.array(volume, copy=True)
        x_hat[needed] = ood_volume(sub, gamma, seed)
        x = network_input(x_hat, holdout, model)
        out.append(heldout_iou(model, probabilities(model, x, volume.shape[1:]), truth))
        del x_hat
    return out


def _target_and_masks(
    model: TrainedModel, truth: np.ndarray, shape: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss's target (B, K, ...) padded with background, the mask of voxels the loss
    counts (the image's, the centre slice in 3D) and the mask of voxels FGSM may move."""
    config, k = model.config, model.num_classes
    b, (h, w) = truth.shape[0], truth.shape[1:]
    target = np.zeros((b, k, *shape[2:]), np.float32)
    valid = np.zeros((b, 1, *shape[2:]), np.float32)
    enc = np.moveaxis(encode_target(truth, k, config.nested), 0, 1)  # (B, K, h, w)
    if config.dims == 3:
        target[:, :, 1, :h, :w] = enc
        valid[..., :h, :w] = 1.0
        loss_mask = np.zeros_like(valid)
        loss_mask[:, :, 1] = valid[:, :, 1]
    else:
        target[..., :h, :w] = enc
        valid[..., :h, :w] = 1.0
        loss_mask = valid
    return torch.from_numpy(target), torch.from_numpy(loss_mask), torch.from_numpy(valid)


def fgsm(
    model: TrainedModel,
    x: torch.Tensor,
    target: torch.Tensor,
    loss_mask: torch.Tensor,
    valid: torch.Tensor,
    epsilon: float,
) -> tuple[torch.Tensor, float, float]:
    """(x_adv, loss at x, loss at x_adv): one FGSM step of size ``epsilon`` on the
    configuration's segmentation loss (module docstring). Weights get no gradient."""
    method, kind = model.method, model.config.loss
    method.train(False)
    x = x.detach().clone().requires_grad_(True)
    loss = segmentation_loss(method.logits(x), target, kind, loss_mask)
    (grad,) = torch.autograd.grad(loss, x)
    x_adv = (x + epsilon * grad.sign() * valid).detach()
    with torch.no_grad():
        adv = segmentation_loss(method.logits(x_adv), target, kind, loss_mask)
    return x_adv, float(loss.detach()), float(adv)


def fgsm_curve(
    model: TrainedModel,
    volume: np.ndarray,
    truth: np.ndarray,
    holdout: Sequence[int],
    epsilons: Sequence[float] = EPSILONS,
) -> list[tuple[float, list[float]]]:
    """Per epsilon: (mean IoU, per-class IoU) on the held-out slices after FGSM."""
    x_all = torch.from_numpy(network_input(volume, holdout, model))
    size = volume.shape[1:]
    out = []
    for eps in epsilons:
        adv = []
        for start in range(0, len(x_all), BATCH):
            x = x_all[start : start + BATCH]
            tgt, mask, valid = _target_and_masks(model, truth[start : start + BATCH], x.shape)
            adv.append(fgsm(model, x, tgt, mask, valid, eps)[0])
        out.append(heldout_iou(model, probabilities(model, torch.cat(adv), size), truth))
    return out
