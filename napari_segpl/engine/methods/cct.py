"""CCT: cross-consistency training (Ouali et al., CVPR 2020; yassouali/CCT), on our U-net.

Follows the paper and its code: a shared encoder, a main decoder trained on the labelled
images, and auxiliary decoders that read perturbed copies of the encoder's features of the
unlabelled images and are pulled, by a mean squared error of probabilities, towards the main
decoder's probabilities of the same images, which are detached (a constant target: the main
decoder learns from the labels alone, the shared encoder from both). The auxiliary decoders
get no supervised loss (SSL4MIS's U-net version supervises them too; CCT does not). The
consistency is averaged over the auxiliary decoders and weighted by ``consistency_weight``
times CCT's sigmoid ramp-up ``exp(-5 (1 - t)^2)``.

Where ours differs:
- the network is our U-net (``cct_network.CCTNetwork``): all but the last decoder block is
  shared, the auxiliary decoders are copies of that block and head (CCT's decoders are a 1x1
  convolution and pixel shuffle after a ResNet-50 with PSP);
- three auxiliary decoders by default, one of each feature perturbation (noise, dropout,
  feature drop), as SSL4MIS's U-net CCT; CCT used 30 of seven kinds on VOC (VAT, cutout and
  the mask-guided ones need more than a feature map). Decoder i takes kind ``i % 3``;
- probabilities are our sigmoid channels (one a class) instead of a softmax, and the
  supervised loss is the configuration's (Dice by default) instead of cross-entropy;
- the weight follows the run's schedule, as every semi-supervised method here: 0 during the
  ``burn_in`` steps (0 in the paper presets; our U-nets start from random weights, CCT's
  encoder from ImageNet), then the sigmoid ramp over ``warmup`` of the steps (CCT: 10 % of
  its epochs). The other SegPL levers (gate, confidence band, intensity evidence, perturbed
  or moved student views) do not apply;
- ``consistency_weight`` is CCT's w_u = 30, set for a softmax over VOC's 21 classes, a
  cross-entropy and SGD; SSL4MIS's U-net CCT uses 0.1. On a toy volume (80 steps, one seed)
  30 cost some IoU against supervised training and 1 did not: set it with ``--param``;
- in 3D (3-slice stacks) only the centre slice enters the consistency, as only the centre
  slice is supervised and predicted;
- with ``ema > 0`` the whole network's moving average becomes the trained model at the end
  (``Method.finish``, as for every method); the targets are the live main decoder's, as in CCT.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..cct_network import CCTNetwork
from ..config import TrainConfig
from ..losses import segmentation_loss
from .base import Batch, Method, Param, StepOutput, register
from .ramps import centre_slice, unsupervised_ramp


@register
class CCT(Method):
    """Cross-consistency training: auxiliary decoders on perturbed features."""

    name = "cct"
    title = "CCT"
    uses_unlabelled = True
    params = {
        "aux_decoders": Param(3, "auxiliary decoders (kinds cycle: noise, dropout, drop)", 1, 30),
        "consistency_weight": Param(30.0, "weight of the consistency (CCT's w_u)", 0.0, 1000.0),
    }

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.model = CCTNetwork(
            config.dims,
            1,
            num_classes,
            config.channels,
            config.depth,
            aux=int(self.param("aux_decoders")),
        )
        if self.teacher is not None:  # the average of this network, not of the plain U-net
            self.teacher = copy.deepcopy(self.model).requires_grad_(False)

    def weight(self, step: int) -> float:
        """The consistency weight at ``step``: ``consistency_weight`` times the ramp."""
        ramp = unsupervised_ramp(self.config, step)
        return float(self.param("consistency_weight")) * ramp

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        n = batch.x_l.shape[0]
        x = batch.x_l if batch.x_u is None else torch.cat([batch.x_l, batch.x_u])
        features = self.model.trunk(x)
        logits, _ = self.model.main(features)
        sup = segmentation_loss(logits[:n], batch.y_l, self.config.loss, batch.mask_l)
        w = self.weight(step)
        logs = {"sup": sup.item(), "alpha": w}
        if not batch.has_unlabelled:
            logs["loss"] = sup.item()
            return StepOutput(sup, logs)
        target = centre_slice(torch.sigmoid(logits[n:].detach().float()))  # a constant target
        aux = self.model.auxiliary(features[n:])
        cons = torch.stack(
            [F.mse_loss(centre_slice(torch.sigmoid(a.float())), target) for a in aux]
        ).mean()
        loss = sup + w * cons
        logs.update(unsup=cons.item(), loss=loss.item())
        return StepOutput(loss, logs)

    def e_step_probabilities(
        self, x: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The main decoder's probabilities, the consistency's targets (the live network's,
        without the SegPL levers' teacher or intensity evidence): what the dock's preview
        shows."""
        if logits is None:
            logits = self.model(x)[0]
        return torch.sigmoid(logits.float())
