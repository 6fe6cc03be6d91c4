"""FixMatch (Sohn et al., NeurIPS 2020) for segmentation, after UniMatch's FixMatch.

Follows LiheYoung/UniMatch ``fixmatch.py`` (its FixMatch baseline) with the losses of its
medical code (``more-scenarios/medical``): one pass of the network over the labelled images
and the weak views of the unlabelled ones; the weak predictions, detached, give pseudo labels
and a confidence mask (``confidence >= tau``, tau 0.95); a second pass over the strong views
(intensity jitter, blur, CutMix box: ``strong_augment.py``) is trained on those pseudo labels
where they are confident. The loss is ``(supervised + weight * unsupervised) / 2``, with no
ramp-up, as in UniMatch.

Where ours differs:
- one sigmoid channel per class instead of a softmax over classes: the pseudo label of a
  channel is ``1(p_w > 0.5)`` and its confidence ``max(p_w, 1 - p_w)``, per channel;
- the unsupervised loss is the masked Dice (over the whole unlabelled batch, one per channel,
  confident pixels only, as UniMatch's medical Dice with its ignore mask) plus the masked
  binary cross-entropy (summed over confident pixels and divided by all pixels, as FixMatch's
  cross-entropy), averaged: UniMatch's medical code uses the Dice alone, its FixMatch the
  cross-entropy alone. The supervised loss is the engine's (``config.loss``), as for every
  method, with the engine's U-nets and constant-rate Adam;
- the weak view is the sampled patch itself: UniMatch's weak augmentation is a random crop,
  resize, flip or rotation applied before both views are made (so both share it); our sampler's
  random patches take that role, and flips are left out since left and right differ in anatomy
  (``augment.py``). Nothing geometric happens between the weak and the strong view, so the
  pseudo labels need no moving, except by the CutMix box, which moves them with the image;
- the CutMix partner is another unlabelled image of the same batch (UniMatch loads a second
  one), whose weak-view pseudo labels the same pass already made; with one unlabelled image
  there is nothing to mix;
- Gaussian noise is added to the strong view (CT and MRI have it; UniMatch's does not);
- in 3D (3-slice stacks) only the centre slice's pseudo labels count, as only the centre slice
  of a labelled stack is supervised and only the centre slice is predicted;
- the engine's schedule for pseudo labels (``alpha``, warm-up, burn-in, gate) and SegPL's levers
  (perturb, warp, mix, confidence, intensity, exclusive) do not apply; ``tau`` is its gate;
- with ``config.ema > 0`` (the presets' 0.99) the weights' moving average becomes the model
  that predicts and is saved, as for every method (``Method.finish``); UniMatch evaluates the
  live network. The pseudo labels come from the live network's weak pass, as in UniMatch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..losses import dice_loss, segmentation_loss
from ..networks import memory_format
from ..strong_augment import StrongAugment, cutmix, cutmix_boxes, intensity_view
from .base import Batch, Method, Param, StepOutput, per_channel, register
from .segpl import partners

#: FixMatch's pseudo labels are cut at 0.5: the confidence max(p, 1 - p) is symmetric about it
CUT = 0.5


def confident(p: torch.Tensor, tau: float) -> torch.Tensor:
    """Boolean mask of the pixels (per channel) whose weak prediction is sure enough:
    ``max(p, 1 - p) >= tau``."""
    return torch.maximum(p, 1.0 - p) >= tau


def masked_dice_bce(
    logits: torch.Tensor, target: torch.Tensor, keep: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """``(Dice + BCE) / 2`` of the strong view's logits against pseudo labels, on the pixels
    ``keep`` marks (confident). Dice: one per channel over the batch, kept pixels only. BCE:
    summed over kept pixels, divided by every pixel considered (``valid``: the centre slice of
    stacks; None: all), so unsure pixels count as zero loss, as in FixMatch."""
    logits, target, keep = logits.float(), target.float(), keep.float()
    weight = keep if valid is None else keep * valid
    dice = dice_loss(torch.sigmoid(logits), target, mask=weight, per_image=False)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    count = logits.numel() if valid is None else valid.expand_as(logits).sum()
    return 0.5 * dice + 0.5 * (bce * weight).sum() / count


@register
class FixMatch(Method):
    """Confident weak-view pseudo labels taught to the strong view."""

    name = "fixmatch"
    title = "FixMatch"
    uses_unlabelled = True
    cuts_pseudo_labels = True
    params = {
        "tau": Param(0.95, "confidence a pixel's weak prediction needs to be a pseudo label",
                     0.0, 1.0),
        "weight": Param(1.0, "weight of the strong view's loss (FixMatch's lambda_u)", 0.0),
        "cutmix": Param(0.5, "probability that a strong view gets a CutMix box", 0.0, 1.0),
    }  # fmt: skip

    def strong_view(
        self, x_u: torch.Tensor, p_w: torch.Tensor, aug: StrongAugment | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(strong images, pseudo labels, confidence mask), the latter two float and aligned
        with the strong images: cut from the weak probabilities ``p_w`` and moved by the same
        CutMix boxes as the images. ``aug``: UniMatch's strengths with the ``cutmix`` param."""
        aug = aug or StrongAugment(cutmix_p=float(self.param("cutmix")))
        pseudo = (p_w > CUT).to(x_u.dtype)
        sure = confident(p_w, float(self.param("tau"))).to(x_u.dtype)
        x_s = intensity_view(x_u, aug)
        n = x_u.shape[0]
        if n > 1 and aug.cutmix_p > 0:
            keep = cutmix_boxes(n, x_s, aug)
            partner = partners(n).to(x_u.device)
            x_s, pseudo, sure = cutmix(keep, partner, x_s, pseudo, sure)
        return x_s, pseudo, sure

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        n = batch.x_l.shape[0]
        x_u = batch.x_u
        x = batch.x_l if x_u is None else torch.cat([batch.x_l, x_u])
        logits, _ = self.model(x)
        sup = segmentation_loss(logits[:n], batch.y_l, self.config.loss, batch.mask_l)
        if x_u is None or x_u.shape[0] == 0:
            return StepOutput(sup, {"loss": sup.item(), "sup": sup.item()})
        with torch.no_grad():  # the weak view's pseudo labels are constants for the loss
            p_w = torch.sigmoid(logits[n:].detach().float())
            x_s, pseudo, sure = self.strong_view(x_u, p_w)
            x_s = x_s.contiguous(memory_format=memory_format(self.config.dims))
            valid = None
            if pseudo.ndim == 5:  # 3-slice stacks: the centre slice only
                valid = torch.zeros_like(pseudo[:1, :1, :, :1, :1])
                valid[:, :, pseudo.shape[2] // 2] = 1
            weak_sure = confident(p_w, float(self.param("tau"))).float()
            if valid is not None:
                weak_sure = weak_sure[:, :, p_w.shape[2] // 2]
        logits_s, _ = self.model(x_s)
        unsup = masked_dice_bce(logits_s, pseudo, sure, valid)
        weight = float(self.param("weight"))
        loss = 0.5 * (sup + weight * unsup)
        logs = {"sup": sup.item(), "unsup": unsup.item(), "loss": loss.item()}
        logs["confident"] = weak_sure.mean().item()  # UniMatch's "mask ratio"
        return StepOutput(loss, logs)

    def e_step_probabilities(
        self, x: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The network's own probabilities (FixMatch's pseudo labels come from the network
        being trained, not from an averaged copy, and without intensity evidence)."""
        if logits is None:
            logits = self.model(x)[0]
        return torch.sigmoid(logits.float())

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The preview: the weak view's pseudo labels ``1(p > 0.5)`` per channel (the
        confidence mask is not shown)."""
        p = self.e_step_probabilities(x)
        t = torch.full((x.shape[0], self.num_classes), CUT, device=x.device)
        return p, p > per_channel(t, p.ndim), t
