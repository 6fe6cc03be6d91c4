"""CPS: cross pseudo supervision (Chen et al., CVPR 2021; charlesCXK/TorchSemiSeg).

Follows the paper and TorchSemiSeg's code: two networks of the same architecture, initialised
differently (drawn one after the other from the run's seeded generator, so the first is the
network a supervised run of the same seed starts from), see the same labelled and unlabelled
images; each is trained on the other's hard pseudo labels, detached, over the labelled and the
unlabelled images alike, plus its own supervised loss:
``L = sup(net1) + sup(net2) + lambda * (CE(net1, Y2) + CE(net2, Y1))``, lambda =
``cps_weight`` (TorchSemiSeg's 1.5). Predictions come from the first network; both are saved
in one model file ("model" and "model2").

Where ours differs:
- the networks are our U-nets from random weights (TorchSemiSeg: DeepLabv3+ on pretrained
  ResNets), whose first pseudo labels are noise, so lambda follows the run's schedule, as
  every semi-supervised method here: 0 during the ``burn_in`` steps (0 in the paper presets),
  then a sigmoid ramp ``exp(-5 (1 - t)^2)`` over ``warmup`` of the steps (SSL4MIS's U-net CPS
  ramps too), instead of TorchSemiSeg's constant weight from the first step. On a toy volume
  (80 steps, one seed) without a burn-in both networks came to predict one class nearly
  everywhere; with the engine's burn-in (40 %) they matched supervised training;
- a hard pseudo label is cut from our sigmoid channels as inference labels a pixel (``p > T``,
  the configuration's threshold, and for exclusive classes only the most probable channel;
  ``Method.cut``) instead of a softmax argmax, and trained on with binary cross-entropy per
  channel (the references' cross-entropy); the supervised loss is the configuration's (Dice
  by default), as for every method here;
- in 3D (3-slice stacks) only the centre slice enters the pseudo-label loss, as only the centre
  slice is supervised and predicted;
- the other SegPL levers (gate, confidence band, intensity evidence, EMA teacher's pseudo
  labels, perturbed or moved views) do not apply: the pseudo labels are the live networks'.

The EMA teacher (``ema > 0``): as for every method, the first network's moving average becomes
the model that predicts and is saved at the end (``Method.finish``); the second network, which
never predicts, is not averaged, and neither average makes pseudo labels (CPS has no teacher).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import TrainConfig
from ..losses import segmentation_loss
from ..networks import UNet
from .base import Batch, Method, Param, StepOutput, register
from .ramps import unsupervised_ramp


@register
class CPS(Method):
    """Cross pseudo supervision: two networks trained on each other's hard pseudo labels."""

    name = "cps"
    title = "CPS"
    uses_unlabelled = True
    cuts_pseudo_labels = True
    params = {
        "cps_weight": Param(1.5, "weight lambda of the cross pseudo supervision", 0.0, 100.0),
    }

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        # the next draws of the same generator: a different initialisation of the same net
        self.model2 = UNet(config.dims, 1, num_classes, config.channels, config.depth)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "model2": self.model2}

    def weight(self, step: int) -> float:
        """lambda at ``step``: ``cps_weight`` times the ramp."""
        return float(self.param("cps_weight")) * unsupervised_ramp(self.config, step)

    def hard_labels(self, logits: torch.Tensor) -> torch.Tensor:
        """A network's hard pseudo labels (float 0/1, no gradient), cut as inference cuts."""
        with torch.no_grad():
            p = torch.sigmoid(logits.detach().float())
            return self.cut(p, float(self.config.threshold)).to(logits.dtype)

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        n, kind = batch.x_l.shape[0], self.config.loss
        x = batch.x_l if batch.x_u is None else torch.cat([batch.x_l, batch.x_u])
        logits1, _ = self.model(x)
        logits2, _ = self.model2(x)
        sup1 = segmentation_loss(logits1[:n], batch.y_l, kind, batch.mask_l)
        sup2 = segmentation_loss(logits2[:n], batch.y_l, kind, batch.mask_l)
        y1, y2 = self.hard_labels(logits1), self.hard_labels(logits2)
        mask = None
        if x.ndim == 5:  # 3-slice stacks: the centre slice only
            mask = torch.zeros_like(x[:1, :1, :, :1, :1])
            mask[:, :, x.shape[2] // 2] = 1
        # each network on the other's pseudo labels, cross-entropy as in TorchSemiSeg
        # ("unsup": the first network's, which the dock plots)
        unsup1 = segmentation_loss(logits1, y2, "bce", mask)
        unsup2 = segmentation_loss(logits2, y1, "bce", mask)
        w = self.weight(step)
        loss = sup1 + sup2 + w * (unsup1 + unsup2)
        logs = {"sup": sup1.item(), "sup2": sup2.item(), "unsup": unsup1.item(), "alpha": w}
        logs["unsup2"] = unsup2.item()
        logs["loss"] = loss.item()
        # No pseudo labels handed to the trainer: its collapse guard would judge them from
        # step 10 wherever there is no burn-in (the paper presets), and its gate, which CPS
        # does not use, would end the run saying they were never used
        return StepOutput(loss, logs)

    def e_step_probabilities(
        self, x: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The first network's probabilities, which the second one's pseudo labels are cut
        from (live weights; no teacher or intensity evidence): what the dock's preview shows."""
        if logits is None:
            logits = self.model(x)[0]
        return torch.sigmoid(logits.float())
