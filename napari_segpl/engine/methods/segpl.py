"""SegPL: pseudo labelling as Expectation-Maximisation with a fixed threshold (paper Eq. 1-3).

E-step: ``y'_u = 1(sigmoid(logit_u) > T)``, detached, from the same forward pass that the M-step
trains on, so pseudo labels cost nothing beyond a supervised step over the same L + U images.
M-step: ``L = alpha * mean_u Dice(p_u, y'_u) + mean_l Dice(p_l, y_l)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..losses import segmentation_loss
from .base import Batch, Method, StepOutput, register


@register
class SegPL(Method):
    """Pseudo labels from a fixed threshold (0.5 in the paper)."""

    name = "segpl"
    title = "SegPL"
    uses_unlabelled = True

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass over labelled and unlabelled images together: (logits_l, logits_u, feats_u)."""
        n = batch.x_l.shape[0]
        x = batch.x_l if batch.x_u is None else torch.cat([batch.x_l, batch.x_u])
        logits, feats = self.model(x)
        return logits[:n], logits[n:], feats[n:]

    def _loss(
        self,
        batch: Batch,
        logits_l: torch.Tensor,
        logits_u: torch.Tensor,
        threshold: torch.Tensor | float,
        alpha: float,
    ) -> StepOutput:
        kind = self.config.loss
        sup = segmentation_loss(logits_l, batch.y_l, kind, batch.mask_l)
        logs = {"sup": sup.item(), "alpha": alpha}
        if logits_u.shape[0] == 0:
            logs["loss"] = sup.item()
            return StepOutput(sup, logs)
        with torch.no_grad():  # E-step: the pseudo label is a constant for the M-step
            pseudo = (torch.sigmoid(logits_u) > threshold).to(logits_u.dtype)
        unsup = segmentation_loss(logits_u, pseudo, kind)
        loss = sup + alpha * unsup
        logs.update(unsup=unsup.item(), loss=loss.item())
        return StepOutput(loss, logs, pseudo=pseudo)

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        logits_l, logits_u, _ = self._forward(batch)
        return self._loss(batch, logits_l, logits_u, self.config.threshold, alpha_fn(step))
