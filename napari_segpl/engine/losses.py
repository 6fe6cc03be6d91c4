"""The paper's losses, written once and tested against independent computations.

- Dice per image and per channel over the spatial axes, smooth 1, not squared (method notes).
- The exact Gaussian KL(N(mu, sigma) || N(mu_b, sigma_b)) of Eq. 8 (the authors' code wrote
  ``-logvar`` where the KL has ``-0.5 * logvar``; here it is written in sigma directly).
- The linear warm-up of alpha.

Every loss is computed in float32 whatever its inputs: under ``--amp`` (bfloat16 autocast) the
network's logits arrive in bfloat16, whose 8-bit mantissa rounds each probability and product
(and, on the CPU, even a Dice sum over the batch: a sum of 100 000 probabilities is kept to
about 0.4 %). The casts keep the gradient: it flows back into the bfloat16 logits.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .config import LOSSES


def _float32(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``device`` (where it has one), so float32 inputs stay float32."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type without autocast: nothing to switch off
        return contextlib.nullcontext()


def dice_loss(
    prob: torch.Tensor,
    target: torch.Tensor,
    smooth: float = 1.0,
    mask: torch.Tensor | None = None,
    per_image: bool = True,
) -> torch.Tensor:
    """Mean over images and channels of ``1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s)``.

    ``prob`` and ``target`` are (N, C, *spatial). ``mask`` (broadcastable to them) restricts the
    sums to the voxels it marks, e.g. the one labelled slice of a 3-slice stack. With
    ``per_image=False`` the sums also run over the images (one Dice per channel for the whole
    batch), so an image whose pseudo label is empty no longer pushes its prediction to zero.
    """
    if prob.shape != target.shape:
        raise ValueError(f"prob {tuple(prob.shape)} and target {tuple(target.shape)} differ")
    with _float32(prob.device):
        prob, target = prob.float(), target.float()
        if mask is not None:
            mask = mask.float()
            prob, target = prob * mask, target * mask
        dims = tuple(range(2, prob.ndim)) if per_image else (0, *range(2, prob.ndim))
        inter = (prob * target).sum(dim=dims)
        total = prob.sum(dim=dims) + target.sum(dim=dims)
        return (1.0 - (2.0 * inter + smooth) / (total + smooth)).mean()


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str,
    mask: torch.Tensor | None = None,
    per_image: bool = True,
) -> torch.Tensor:
    """Dice on sigmoid probabilities, the authors' 0.5 Dice + 0.5 binary cross-entropy, or the
    binary cross-entropy alone (per channel, averaged over the voxels ``mask`` keeps in it,
    then over the channels, a channel with none kept counting 0: as the Dice counts a channel
    the gate closed, so one class's weight does not grow while another is held back)."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}")
    with _float32(logits.device):
        logits, target = logits.float(), target.float()
        loss = logits.new_zeros(())
        if kind != "bce":
            loss = dice_loss(torch.sigmoid(logits), target, mask=mask, per_image=per_image)
        if kind == "dice":
            return loss
        if mask is None:
            bce = F.binary_cross_entropy_with_logits(logits, target)
        else:
            weight = mask.expand_as(logits).float()
            each = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight
            dims = [d for d in range(logits.ndim) if d != 1]  # all but the channel
            bce = (each.sum(dims) / weight.sum(dims).clamp_min(1.0)).mean()
        return bce if kind == "bce" else 0.5 * loss + 0.5 * bce


def gaussian_kl(
    mu: torch.Tensor, sigma: torch.Tensor, prior_mu: float, prior_sigma: float
) -> torch.Tensor:
    """Elementwise KL(N(mu, sigma) || N(prior_mu, prior_sigma)), Eq. 8 of the paper:
    ``log(sigma_b) - log(sigma) + (sigma^2 + (mu - mu_b)^2) / (2 sigma_b^2) - 0.5``."""
    with _float32(mu.device):
        mu, sigma = mu.float(), sigma.float()
        return (
            math.log(prior_sigma)
            - torch.log(sigma)
            + (sigma**2 + (mu - prior_mu) ** 2) / (2.0 * prior_sigma**2)
            - 0.5
        )


def alpha_at(step: int, alpha: float, warmup_steps: int, burn_in_steps: int = 0) -> float:
    """alpha: 0 for ``burn_in_steps`` supervised-only steps, then ramped linearly from 0 over
    ``warmup_steps`` steps (steps are 0-based), then constant."""
    step -= burn_in_steps
    if step < 0:
        return 0.0
    if warmup_steps <= 0:
        return alpha
    return alpha * min(1.0, step / warmup_steps)


def sample_threshold(
    mu: torch.Tensor,
    sigma: torch.Tensor,
    generator: torch.Generator | None = None,
    low: float = 0.01,
) -> torch.Tensor:
    """Reparameterised draw ``T = mu + sigma * eps`` kept inside (0, 1) by clamping to
    [low, 1 - low]: a threshold of 0 or 1 would make the pseudo label all foreground or empty.
    Drawn in float32 (bfloat16 holds T near 0.5 only to steps of 0.002 to 0.004)."""
    with _float32(mu.device):
        mu, sigma = mu.float(), sigma.float()
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return (mu + sigma * eps).clamp(low, 1.0 - low)
