"""Supervised training on the labelled slices alone: the baseline every method must beat."""

from __future__ import annotations

from collections.abc import Callable

from ..losses import segmentation_loss
from .base import Batch, Method, StepOutput, register


@register
class Supervised(Method):
    """The backbone trained on labelled images only (the paper's "Sup")."""

    name = "supervised"
    title = "Supervised"

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        logits, _ = self.model(batch.x_l)
        loss = segmentation_loss(logits, batch.y_l, self.config.loss, batch.mask_l)
        return StepOutput(loss, {"loss": loss.item(), "sup": loss.item()})
