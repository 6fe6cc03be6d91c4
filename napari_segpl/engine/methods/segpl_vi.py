"""SegPL-VI: the pseudo-label threshold T learnt by variational inference (paper Eq. 5-8).

A head phi reads the backbone's last features and outputs N(mu, sigma) over T for each unlabelled
image (and class); T is drawn with the reparameterisation ``mu + sigma * eps`` and kept inside
(0, 1). The loss is L_SegPL with that T plus the exact Gaussian KL to the prior N(mu_b, sigma_b).

In the paper the hard threshold passes no gradient to phi, which therefore learns through the
KL alone and settles on the prior (the paper presets, ``threshold_signal="kl"``). The head reads
*detached* features: otherwise the KL would also push the backbone's features around for no
segmentation benefit. In training they are the features of the unlabelled images as the
student sees them (moved, mixed, perturbed: the one pass serves both), while the preview, the
fill and inference read the clean images; on the default recipe the two mu differed by at
most 1e-4 (benchmarks/RESULTS.md (oo)), the head's output hardly depending on its input there.

``threshold_signal="labelled"`` (the default) gives T a learning signal from the data: the head
also predicts T for the labelled images, and a soft threshold ``sigmoid((p_l - T_l) / tau)`` of
the (detached) E-step probabilities is scored with Dice against the true labels. Its gradient
reaches only the head, through T: the head learns the threshold that best turns the E-step's
current probabilities (the EMA teacher's, when there is one, since those are what T
thresholds) into the labels, and applies it to unlabelled images, where the KL keeps it near
the prior unless the labels say otherwise. The term weighs as much as the KL: the default
prior N(0.5, 0.05) still dominates a Dice gain of less than about (mu - 0.5)^2 / 0.005 (the
paper's N(0.5, 0.1): / 0.02), so T moves only where the labels disagree strongly.

A fit on the painted slices moved and changed as the student sees unlabelled images, where the
E-step is unsure (``"augmented"``), left mu at the prior after 300 steps on the tuning volumes
and was removed (benchmarks/RESULTS.md (H2)).

Training draws T; the dock's preview and the pseudo-label fill after training use the head's
mu for each slice (``pseudo_labels``), so what they show does not change from one look to
the next.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..losses import dice_loss, gaussian_kl, sample_threshold
from ..networks import ThresholdHead
from .base import Batch, StepOutput, per_channel, register
from .segpl import SegPL

#: Width of the soft threshold: sigmoid((p - T) / tau) goes from 0.12 to 0.88 over p = T +- 0.1.
SOFT_THRESHOLD_TEMPERATURE = 0.05


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
        alpha = alpha_fn(step)
        # the full pass at every step: the burn-in skip SegPL takes was reverted for SegPL-VI
        # by benchmarks/RESULTS.md (T2) (validation -3.7 points over 3 paired runs)
        logits_l, logits_u, feats, view = self._forward(batch)
        if not batch.has_unlabelled:
            return self._loss(batch, logits_l, logits_u, self.config.threshold, alpha)
        n = logits_l.shape[0]
        mu, sigma = self.head(feats[n:].detach())
        t = sample_threshold(mu, sigma).detach()
        t = t.reshape(t.shape + (1,) * (logits_l.ndim - 2))
        out = self._loss(batch, logits_l, logits_u, t, alpha, view)
        kl = gaussian_kl(mu, sigma, self.config.prior_mu, self.config.prior_sigma).mean()
        out.loss = out.loss + kl
        if self.config.threshold_signal == "labelled":
            fit = self._threshold_fit(batch, logits_l, feats[:n])
            out.loss = out.loss + fit
            out.logs["t_fit"] = fit.item()
        out.logs.update(kl=kl.item(), loss=out.loss.item(), mu=mu.mean().item())
        out.logs["sigma"] = sigma.mean().item()
        out.threshold = (out.logs["mu"], out.logs["sigma"])
        return out

    def _threshold_fit(
        self, batch: Batch, logits_l: torch.Tensor, feats_l: torch.Tensor
    ) -> torch.Tensor:
        """Dice of the soft-thresholded labelled probabilities against the labels; only T
        (hence only the head) receives its gradient."""
        mu_l, sigma_l = self.head(feats_l.detach())
        t_l = sample_threshold(mu_l, sigma_l)
        t_l = t_l.reshape(t_l.shape + (1,) * (logits_l.ndim - 2))
        with torch.no_grad():  # T is applied to the E-step's probabilities: fit it there
            own = logits_l.detach() if self.teacher is None else None
            p_l = self.e_step_probabilities(batch.x_l, own)
        soft = torch.sigmoid((p_l - t_l) / SOFT_THRESHOLD_TEMPERATURE)
        return dice_loss(soft, batch.y_l, mask=batch.mask_l)

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``Method.pseudo_labels``, cut at the head's mu, with one pass of the network for
        the head's features and, where it makes them (no teacher, or after training), the
        E-step's logits."""
        logits, feats = self.model(x)
        t = self.head(feats)[0].float()
        own = logits if self.teacher is None or self.finished else None
        p = self.e_step_probabilities(x, own)
        return p, self.cut(p, per_channel(t, p.ndim)), t

    def threshold_distribution(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, feats = self.model(x)
        mu, sigma = self.head(feats)
        return logits, mu, sigma
