"""SegPL-VI: the pseudo-label threshold T learnt by variational inference (paper Eq. 5-8).

A head phi reads the backbone's last features and outputs N(mu, sigma) over T for each unlabelled
image (and class); T is drawn with the reparameterisation ``mu + sigma * eps`` and kept inside
(0, 1). The loss is L_SegPL with that T plus the exact Gaussian KL to the prior N(mu_b, sigma_b).

As in the paper, the hard threshold passes no gradient to phi, which therefore learns through
the KL alone and settles on the prior. The head reads *detached* features: otherwise the KL, the
only term phi sees, would also push the backbone's features around for no segmentation benefit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..losses import gaussian_kl, sample_threshold
from ..networks import ThresholdHead
from .base import Batch, StepOutput, register
from .segpl import SegPL


@register
class SegPLVI(SegPL):
    """SegPL with a threshold distribution learnt by variational inference."""

    name = "segpl-vi"
    title = "SegPL-VI"
    learns_threshold = True

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.head = ThresholdHead(config.dims, self.model.feature_channels, num_classes)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "head": self.head}

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        logits_l, logits_u, feats_u = self._forward(batch)
        if logits_u.shape[0] == 0:
            return self._loss(batch, logits_l, logits_u, self.config.threshold, alpha_fn(step))
        mu, sigma = self.head(feats_u.detach())
        t = sample_threshold(mu, sigma).detach()
        t = t.reshape(t.shape + (1,) * (logits_u.ndim - 2))
        out = self._loss(batch, logits_l, logits_u, t, alpha_fn(step))
        kl = gaussian_kl(mu, sigma, self.config.prior_mu, self.config.prior_sigma).mean()
        out.loss = out.loss + kl
        out.logs.update(kl=kl.item(), loss=out.loss.item(), mu=mu.mean().item())
        out.logs["sigma"] = sigma.mean().item()
        out.threshold = (out.logs["mu"], out.logs["sigma"])
        return out

    def threshold_distribution(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, feats = self.model(x)
        mu, sigma = self.head(feats)
        return logits, mu, sigma
