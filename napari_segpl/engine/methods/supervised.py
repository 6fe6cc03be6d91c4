"""Supervised training on the labelled slices alone: the baseline every method must beat."""

from __future__ import annotations

from collections.abc import Callable

from ..config import TrainConfig
from ..losses import painted_class_bce, segmentation_loss
from .base import Batch, Method, Param, StepOutput, register


@register
class Supervised(Method):
    """The backbone trained on labelled images only (the paper's "Sup"), optionally with a
    cross-entropy of the class channels on the painted voxels (``painted_bce``, exclusive
    classes, two or more) beside the Dice: benchmarks/RESULTS.md (F2)."""

    name = "supervised"
    title = "Supervised"
    params = {
        "painted_bce": Param(
            0.0, "weight of a cross-entropy of the classes on the voxels painted a class", 0.0
        ),
    }

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.painted_bce = float(self.check_params(config.extra).get("painted_bce", 0.0))

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        logits, _ = self.model(batch.x_l)
        loss = segmentation_loss(logits, batch.y_l, self.config.loss, batch.mask_l)
        weight = self.painted_bce
        if weight > 0 and not self.config.nested and logits.shape[1] > 1:
            loss = loss + weight * painted_class_bce(logits, batch.y_l, batch.mask_l)
        return StepOutput(loss, {"loss": loss.item(), "sup": loss.item()})
