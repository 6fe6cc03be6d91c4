"""SegPL: pseudo labelling as Expectation-Maximisation with a fixed threshold (paper Eq. 1-3).

E-step: ``y'_u = 1(sigmoid(logit_u) > T)``, detached, from the same forward pass that the M-step
trains on, so pseudo labels cost nothing beyond a supervised step over the same L + U images.
M-step: ``L = alpha * mean_u Dice(p_u, y'_u) + mean_l Dice(p_l, y_l)``.

Optional levers beyond the paper (all off by default; see TrainConfig):
- ``unsup_dice="batch"``: one Dice per channel over the whole unlabelled batch, so an image
  whose pseudo label is empty does not push its own prediction to zero;
- ``confidence=b``: pixels with ``|p - T| < b`` are left out of the pseudo-label loss;
- ``skip_empty``: a class whose pseudo label is empty on every unlabelled image of the batch is
  left out of the pseudo-label loss (Dice against an empty target is minimised by predicting
  nothing, which erases thin structures before the network has learnt them);
- ``ema=d``: pseudo labels from an exponential-moving-average copy of the network (an extra
  forward pass without gradient), which changes more slowly than the network it teaches.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..config import TrainConfig
from ..losses import segmentation_loss
from .base import Batch, Method, StepOutput, register


@register
class SegPL(Method):
    """Pseudo labels from a fixed threshold (0.5 in the paper)."""

    name = "segpl"
    title = "SegPL"
    uses_unlabelled = True

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.teacher = None
        if config.ema > 0:
            self.teacher = copy.deepcopy(self.model).requires_grad_(False)

    def to(self, device: torch.device) -> SegPL:
        super().to(device)
        if self.teacher is not None:
            self.teacher.to(device=next(self.model.parameters()).device)
        return self

    def after_step(self) -> None:
        if self.teacher is None:
            return
        d = self.config.ema
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
                t.mul_(d).add_(s.detach(), alpha=1 - d)

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass over labelled and unlabelled images together: (logits_l, logits_u, feats)."""
        n = batch.x_l.shape[0]
        x = batch.x_l if batch.x_u is None else torch.cat([batch.x_l, batch.x_u])
        logits, feats = self.model(x)
        return logits[:n], logits[n:], feats

    def _loss(
        self,
        batch: Batch,
        logits_l: torch.Tensor,
        logits_u: torch.Tensor,
        threshold: torch.Tensor | float,
        alpha: float,
    ) -> StepOutput:
        config, kind = self.config, self.config.loss
        sup = segmentation_loss(logits_l, batch.y_l, kind, batch.mask_l)
        logs = {"sup": sup.item(), "alpha": alpha}
        if logits_u.shape[0] == 0:
            logs["loss"] = sup.item()
            return StepOutput(sup, logs)
        with torch.no_grad():  # E-step: the pseudo label is a constant for the M-step
            if self.teacher is not None:
                self.teacher.train(self.model.training)
                p_u = torch.sigmoid(self.teacher(batch.x_u)[0].float())
            else:
                p_u = torch.sigmoid(logits_u.float())
            pseudo = (p_u > threshold).to(logits_u.dtype)
            mask = None
            if config.confidence > 0:
                mask = ((p_u - threshold).abs() >= config.confidence).to(logits_u.dtype)
            if config.skip_empty:
                spatial = (0, *range(2, pseudo.ndim))
                present = (pseudo.sum(dim=spatial) > 0).to(logits_u.dtype)
                present = present.reshape(1, -1, *([1] * (pseudo.ndim - 2)))
                mask = present if mask is None else mask * present
        unsup = segmentation_loss(
            logits_u, pseudo, kind, mask, per_image=config.unsup_dice == "image"
        )
        loss = sup + alpha * unsup
        logs.update(unsup=unsup.item(), loss=loss.item())
        return StepOutput(loss, logs, pseudo=pseudo)

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        logits_l, logits_u, _ = self._forward(batch)
        return self._loss(batch, logits_l, logits_u, self.config.threshold, alpha_fn(step))
