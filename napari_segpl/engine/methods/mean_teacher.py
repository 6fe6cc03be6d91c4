"""Mean teacher (Tarvainen & Valpola, NeurIPS 2017) as SSL4MIS trains it for medical images.

Follows HiLab-git/SSL4MIS ``train_mean_teacher_2D.py`` / ``_3D.py``: one pass of the network
over labelled and unlabelled images together; the teacher, an exponential moving average of the
network's weights, sees the unlabelled images with Gaussian noise added (standard deviation 0.1,
clipped to +-0.2) while the network sees them clean; the consistency loss is the mean squared
difference between the two probability maps, the teacher's detached, weighted by
``consistency * exp(-5 (1 - t / ramp)^2)`` (the sigmoid ramp-up of Laine & Aila), added to the
supervised loss. The teacher follows with decay ``min(1 - 1 / (t + 1), decay)``: the true
average of the weights so far until that is slower than ``decay``.

Where ours differs:
- one sigmoid channel per class instead of a softmax over classes (the probabilities compared
  are the sigmoids), the engine's U-nets, loss (``config.loss``) and constant-rate Adam instead
  of SGD with a polynomial decay;
- SSL4MIS ramps over 200 "epochs" of 150 iterations, i.e. 30 000 iterations, its whole run
  (UA-MT's older LA script: 40 x 150 = 6 000, also its whole run); here the ramp is a fraction
  ``rampup`` of our steps (default 1.0, the whole run), counted in steps, not in blocks of
  150; the 2D script's extra 1 000 iterations without consistency are not kept (the 3D one has
  none, and the ramp starts near 0 anyway: 0.1 * exp(-5) = 0.0007);
- images are z-scored case by case, so the noise is 0.1 SD (SSL4MIS's 3D data is z-scored
  too; its 2D slices are in [0, 1]);
- in 3D (3-slice stacks) only the centre slice's consistency counts, as only the centre slice
  of a labelled stack is supervised and only the centre slice is predicted;
- the engine's schedule for pseudo labels (``alpha``, its warm-up, burn-in and gate) and SegPL's
  levers (perturb, warp, mix, confidence, intensity) do not apply: the ramp is the method's own;
- which weights are handed over at the end follows the engine's rule for every method: with
  ``config.ema > 0`` the averaged weights (here the teacher, whose decay is the method's own
  ``decay``), with ``ema = 0`` the network itself, which is what SSL4MIS evaluates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

from ..config import TrainConfig
from ..losses import segmentation_loss
from .base import Batch, Method, Param, StepOutput, register
from .ramps import centre_slice, sigmoid_rampup


@register
class MeanTeacher(Method):
    """The network's probabilities on clean unlabelled images pulled towards an EMA teacher's
    on noisy ones."""

    name = "mean-teacher"
    title = "Mean teacher"
    uses_unlabelled = True
    params = {
        "decay": Param(0.99, "EMA decay of the teacher's weights", 0.0, 0.9999),
        "consistency": Param(0.1, "largest weight of the consistency loss", 0.0),
        "rampup": Param(1.0, "the weight's sigmoid ramp-up, as a fraction of the steps", 0.0, 1.0),
        "noise": Param(0.1, "SD of the noise on the teacher's images (clipped at 2 SD)", 0.0),
    }

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        if self.teacher is None:  # the method needs its teacher whatever config.ema says
            self.teacher = copy.deepcopy(self.model).requires_grad_(False)

    def consistency_weight(self, step: int) -> float:
        """The consistency weight at ``step`` (0-based), ramped over ``rampup`` of the run."""
        length = float(self.param("rampup")) * self.config.steps
        return float(self.param("consistency")) * sigmoid_rampup(step, length)

    def teacher_probabilities(self, x_u: torch.Tensor) -> torch.Tensor:
        """The teacher's float32 probabilities of the noisy unlabelled images, without gradient."""
        assert self.teacher is not None
        sd = float(self.param("noise"))
        with torch.no_grad():
            noisy = x_u + (torch.randn_like(x_u) * sd).clamp(-2 * sd, 2 * sd) if sd > 0 else x_u
            self.teacher.train(self.model.training)
            return torch.sigmoid(self.teacher(noisy)[0].float())

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        n = batch.x_l.shape[0]
        x = batch.x_l if batch.x_u is None else torch.cat([batch.x_l, batch.x_u])
        logits, _ = self.model(x)
        sup = segmentation_loss(logits[:n], batch.y_l, self.config.loss, batch.mask_l)
        if not batch.has_unlabelled:
            return StepOutput(sup, {"loss": sup.item(), "sup": sup.item()})
        target = self.teacher_probabilities(batch.x_u)
        student = torch.sigmoid(logits[n:].float())
        consistency = ((centre_slice(student) - centre_slice(target)) ** 2).mean()
        weight = self.consistency_weight(step)
        loss = sup + weight * consistency
        logs = {"sup": sup.item(), "unsup": consistency.item(), "weight": weight}
        logs["loss"] = loss.item()
        return StepOutput(loss, logs)

    def after_step(self) -> None:
        """The teacher moves towards the network: ``d * teacher + (1 - d) * network`` with
        ``d = min(1 - 1 / (t + 1), decay)``, t the number of earlier updates."""
        assert self.teacher is not None
        d = min(1.0 - 1.0 / (self._ema_updates + 1), float(self.param("decay")))
        self._ema_updates += 1
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
                t.mul_(d).add_(s.detach(), alpha=1 - d)

    def finish(self) -> None:
        """The teacher becomes the model with ``config.ema > 0`` (as for every method), the
        network itself stays with ``ema = 0`` (SSL4MIS evaluates the network)."""
        if self.config.ema > 0:
            super().finish()
        self.finished = True

    def e_step_logits(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The teacher's logits alone: the preview shows the targets the method trains
        towards, which never include the intensity evidence."""
        return logits
