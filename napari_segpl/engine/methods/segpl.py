"""SegPL: pseudo labelling as Expectation-Maximisation with a fixed threshold (paper Eq. 1-3).

E-step: ``y'_u = 1(sigmoid(logit_u) > T)``, detached; in the paper from the same forward pass
that the M-step trains on, so pseudo labels cost nothing beyond a supervised step over the same
L + U images. M-step: ``L = alpha * mean_u Dice(p_u, y'_u) + mean_l Dice(p_l, y_l)``.

Levers beyond the paper (TrainConfig holds which are on by default; the paper presets switch
every one of them off):
- ``unsup_dice="batch"``: one Dice per channel over the whole unlabelled batch, so an image
  whose pseudo label is empty does not push its own prediction to zero;
- ``confidence=b``: pixels with ``|p - T| < b`` are left out of the pseudo-label loss;
- ``skip_empty``: a class whose pseudo label is empty on every unlabelled image of the batch is
  left out of the pseudo-label loss (Dice against an empty target is minimised by predicting
  nothing, which erases thin structures before the network has learnt them);
- ``ema=d``: pseudo labels from an exponential-moving-average copy of the network (an extra
  forward pass without gradient), which changes more slowly than the network it teaches;
- ``perturb=s``: the network being trained sees the unlabelled images with a random intensity
  change (contrast and brightness by up to ``s``, Gaussian noise of ``s / 2``), while the
  pseudo labels come from the clean images (through the EMA teacher, or the network itself
  without gradient). The pseudo-label loss then asks for a prediction that survives the
  change, which a confident wrong prediction does not get for free;
- ``unsup_loss``: the pseudo-label loss may differ from the labelled one (``bce`` does not let
  one image's empty pseudo label drive the whole image's prediction to zero as Dice does);
- ``exclusive``: for exclusive (not nested) classes, a pixel is pseudo-labelled with at most
  one class, the most probable of those above the threshold, which is how inference labels it.
  With an independent threshold per class channel two channels can both claim a pixel: on the
  lungs in 3D both lungs' channels came to cover both lungs on the unlabelled slices, and the
  final argmax handed both lungs to one class;
- in 3D (3-slice stacks) only the centre slice's pseudo labels enter the loss, as only the
  centre slice of a labelled stack is supervised and only the centre slice is predicted;
- ``warp=s``: the network being trained also sees each unlabelled image through a random
  in-plane affine map (rotation, scaling, shift; no flips, since left and right differ in
  anatomy), and the teacher's probabilities from the clean image are moved by the same map
  before thresholding. The pseudo-label loss then asks for a prediction that moves with the
  anatomy, which sharpening a wrong prediction does not satisfy. Pixels the map brings in from
  outside the image are left out of the loss;
- ``mix=p``: CutMix between unlabelled images. With probability p an unlabelled image takes a
  random box (10-50 % of its area) from another image of the batch, at the same place, and its
  pseudo label (the teacher's probabilities on the clean images, moved and mixed alike) takes
  the same box. A prediction that leans on the rest of the image, rather than on what is in
  the box, no longer matches its pseudo label; French et al. (BMVC 2020) found such mask-based
  perturbations to be what makes consistency work for segmentation;
- ``align=r``: for exclusive classes, the E-step's probabilities get one log-odds offset per
  class before thresholding, moved after each step by ``r`` times the log ratio of the painted
  slices' share of each class (among the painted classes) to its share of the pseudo labels.
  This is the prior-shift correction of an E-step (Saerens et al., Neural Computation 2002),
  with the painted slices' class shares as the prior: pseudo labels that keep giving one class
  more of the foreground than the painted slices do (on the brain, white matter growing into
  grey, benchmarks/RESULTS.md (m)) are pulled back, whatever the network's calibration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..augment import mix, random_affine, random_boxes, warp, warp_image
from ..losses import segmentation_loss
from ..networks import memory_format
from .base import Batch, Method, StepOutput, register


def perturb_intensity(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per image: ``x * (1 + a) + b + noise``, a and b uniform in [-strength, strength], noise
    Gaussian with standard deviation ``strength / 2`` (images are z-scored, so in SD units)."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    a = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * strength
    b = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * strength
    noise = torch.randn_like(x) * (strength / 2)
    return x * (1 + a) + b + noise


def shift_odds(p: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """(N, K, ...) probabilities with each class's log-odds moved by ``offset[k]``."""
    shape = (1, -1) + (1,) * (p.ndim - 2)
    logit = torch.logit(p.clamp(1e-6, 1 - 1e-6))
    return torch.sigmoid(logit + offset.to(p.dtype).reshape(shape))


#: the largest log-odds offset ``align`` may give a class (odds times e^2, about 7.4)
ALIGN_LIMIT = 2.0


def alignment_step(
    offset: torch.Tensor, counts: torch.Tensor, prior: torch.Tensor, rate: float
) -> torch.Tensor:
    """One controller step of ``align``: each class's offset moves by ``rate`` times the log
    of its share of the painted classes on the painted slices over its share of the pseudo
    labels (counts plus one, so an absent class does not give an infinite step). Classes not
    painted keep offset 0; with fewer than two painted classes nothing moves."""
    present = prior > 0
    if int(present.sum()) < 2:
        return offset
    counts = counts.to(offset.dtype) + 1
    target = prior[present] / prior[present].sum()
    observed = counts[present] / counts[present].sum()
    out = offset.clone()
    out[present] = (offset[present] + rate * (target.log() - observed.log())).clamp(
        -ALIGN_LIMIT, ALIGN_LIMIT
    )
    return out


def most_probable(p: torch.Tensor) -> torch.Tensor:
    """(N, K, ...) probabilities -> boolean (N, K, ...), True on each pixel's most probable
    class channel only (ties: the first)."""
    winner = p.argmax(dim=1, keepdim=True)
    return torch.zeros_like(p, dtype=torch.bool).scatter_(1, winner, True)


@dataclass
class View:
    """How the student's view of the unlabelled images differs from the teacher's clean one,
    so the pseudo labels can be moved the same way: affine maps (None: not moved) and CutMix
    boxes with each image's partner (None: not mixed)."""

    theta: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    partner: torch.Tensor | None = None

    @property
    def changed(self) -> bool:
        return self.theta is not None or self.boxes is not None


def partners(n: int) -> torch.Tensor:
    """A random pairing in which no image is its own partner (for n > 1): a random cycle."""
    order = torch.randperm(n)
    partner = torch.empty(n, dtype=torch.long)
    partner[order] = order.roll(1)
    return partner


@register
class SegPL(Method):
    """Pseudo labels from a fixed threshold (0.5 in the paper)."""

    name = "segpl"
    title = "SegPL"
    uses_unlabelled = True

    def _forward(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, View]:
        """One pass over labelled and unlabelled images together: (logits_l, logits_u, feats,
        view), view how the unlabelled images were changed for the network being trained."""
        n = batch.x_l.shape[0]
        x_u, view = batch.x_u, View()
        if x_u is not None and self.config.warp > 0:
            view.theta = random_affine(x_u.shape[0], self.config.warp, x_u.device, x_u.dtype)
            x_u = warp_image(x_u, view.theta)
        if x_u is not None and self.config.mix > 0 and x_u.shape[0] > 1:
            view.boxes = random_boxes(x_u.shape[0], x_u, self.config.mix)
            view.partner = partners(x_u.shape[0]).to(x_u.device)
            x_u = mix(x_u, view.boxes, view.partner)
        if x_u is not None and self.config.perturb > 0:
            x_u = perturb_intensity(x_u, self.config.perturb)
        if x_u is not None and x_u is not batch.x_u:
            x_u = x_u.contiguous(memory_format=memory_format(self.config.dims))
        x = batch.x_l if x_u is None else torch.cat([batch.x_l, x_u])
        logits, feats = self.model(x)
        return logits[:n], logits[n:], feats, view

    def _loss(
        self,
        batch: Batch,
        logits_l: torch.Tensor,
        logits_u: torch.Tensor,
        threshold: torch.Tensor | float,
        alpha: float,
        view: View | None = None,
    ) -> StepOutput:
        config, kind, view = self.config, self.config.loss, view or View()
        sup = segmentation_loss(logits_l, batch.y_l, kind, batch.mask_l)
        logs = {"sup": sup.item(), "alpha": alpha}
        if logits_u.shape[0] == 0:
            logs["loss"] = sup.item()
            return StepOutput(sup, logs)
        with torch.no_grad():  # E-step: the pseudo label is a constant for the M-step
            if self.teacher is not None:
                self.teacher.train(self.model.training)
                p_u = torch.sigmoid(self.teacher(batch.x_u)[0].float())
            elif config.perturb > 0 or view.changed:  # clean view; trained on a changed one
                p_u = torch.sigmoid(self.model(batch.x_u)[0].float())
            else:
                p_u = torch.sigmoid(logits_u.float())
            inside = None
            if view.theta is not None:  # move the teacher's view with the student's
                p_u = warp(p_u, view.theta)
                inside = warp(torch.ones_like(p_u[:, :1]), view.theta) > 0.999
                inside = inside.to(logits_u.dtype)
            if view.boxes is not None:  # and mix it alike: each box carries its own pixels
                p_u = mix(p_u, view.boxes.to(p_u.dtype), view.partner)
                if inside is not None:
                    inside = mix(inside, view.boxes.to(inside.dtype), view.partner)
            exclusive = config.exclusive and not config.nested and p_u.shape[1] > 1
            aligning = exclusive and config.align > 0 and self.class_prior is not None
            if aligning:
                if self.align_offset is None:
                    self.align_offset = torch.zeros(p_u.shape[1], device=p_u.device)
                p_u = shift_odds(p_u, self.align_offset)
            pseudo = p_u > threshold
            if exclusive:
                pseudo = pseudo & most_probable(p_u)
            pseudo = pseudo.to(logits_u.dtype)
            mask = inside
            if config.confidence > 0:
                sure = ((p_u - threshold).abs() >= config.confidence).to(logits_u.dtype)
                mask = sure if mask is None else mask * sure
            centre = None
            if pseudo.ndim == 5:  # 3-slice stacks: as on labelled stacks, only the centre
                # slice is trained and used. The outer slices' outputs are never supervised: on
                # the vessels at step 100, 44 % of a stack's pixels were pseudo-labelled artery,
                # 0.8 % of its centre slices' (0.23 % painted)
                centre = torch.zeros_like(pseudo[:1, :1, :, :1, :1])
                centre[:, :, pseudo.shape[2] // 2] = 1
                mask = centre if mask is None else mask * centre
            if self.pseudo_classes is not None and not all(self.pseudo_classes):
                shape = (1, len(self.pseudo_classes)) + (1,) * (pseudo.ndim - 2)
                gated = torch.tensor(self.pseudo_classes, dtype=pseudo.dtype, device=pseudo.device)
                mask = gated.reshape(shape) if mask is None else mask * gated.reshape(shape)
            if aligning:  # counted where the loss looks: centre slices, inside the view
                counted = pseudo if inside is None else pseudo * inside
                if counted.ndim == 5:
                    counted = counted[:, :, counted.shape[2] // 2]
                counts = counted.sum(dim=(0, *range(2, counted.ndim)))
                prior = torch.tensor(self.class_prior, device=counts.device)
                self.align_offset = alignment_step(
                    self.align_offset, counts.float(), prior, config.align
                )
                logs.update({f"align_{c + 1}": v for c, v in enumerate(self.align_offset.tolist())})
            if config.skip_empty:
                spatial = (0, *range(2, pseudo.ndim))
                present = (pseudo.sum(dim=spatial) > 0).to(logits_u.dtype)
                present = present.reshape(1, -1, *([1] * (pseudo.ndim - 2)))
                mask = present if mask is None else mask * present
        unsup = segmentation_loss(
            logits_u,
            pseudo,
            config.unsup_loss or kind,
            mask,
            per_image=config.unsup_dice == "image",
        )
        loss = sup + alpha * unsup
        logs.update(unsup=unsup.item(), loss=loss.item())
        if centre is not None:  # the foreground fraction the guard watches: centre slices
            pseudo = pseudo[:, :, pseudo.shape[2] // 2]
        return StepOutput(loss, logs, pseudo=pseudo)

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        logits_l, logits_u, _, view = self._forward(batch)
        return self._loss(batch, logits_l, logits_u, self.config.threshold, alpha_fn(step), view)
