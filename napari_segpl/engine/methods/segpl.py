"""SegPL: pseudo labelling as Expectation-Maximisation with a fixed threshold (paper Eq. 1-3).

E-step: ``y'_u = 1(sigmoid(logit_u) > T)``, detached; in the paper from the same forward pass
that the M-step trains on, so pseudo labels cost nothing beyond a supervised step over the same
L + U images. M-step: ``L = alpha * mean_u Dice(p_u, y'_u) + mean_l Dice(p_l, y_l)``.
The E-step is ``Method.e_step_probabilities`` then ``Method.cut``, the functions the trainer's
preview and its fill after training call too, so the dock shows the pseudo labels trained on.

Levers beyond the paper (TrainConfig holds which are on by default; the paper presets switch
every one of them off):
- ``unsup_dice="batch"``: one Dice per channel over the whole unlabelled batch, so an image
  whose pseudo label is empty does not push its own prediction to zero;
- ``confidence=b``: pixels too close to T are left out of the pseudo-label loss: a band
  relative to T (``sure_pixels``), ``|p - T| < b`` at T = 0.5, that never empties either side;
- ``ema=d``: pseudo labels from an exponential-moving-average copy of the network (an extra
  forward pass without gradient), which changes more slowly than the network it teaches;
- ``perturb=s``: the network being trained sees the unlabelled images with a random intensity
  change (contrast and brightness by up to ``s``, Gaussian noise of ``s / 2``), while the
  pseudo labels come from the clean images (through the EMA teacher, or the network itself
  without gradient). The pseudo-label loss then asks for a prediction that survives the
  change, which a confident wrong prediction does not get for free;
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
- ``intensity=w``: the teacher's logits plus ``w`` times the painted slices' intensity evidence
  (``intensity.py``) before the pseudo labels are cut, on the clean images, so the E-step
  weighs what the painted voxels' intensities say as well as what the network says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..augment import mix, random_affine, random_boxes, warp, warp_image
from ..losses import segmentation_loss
from ..networks import memory_format
from .base import Batch, Method, StepOutput, most_probable, register

__all__ = ["SegPL", "View", "most_probable", "partners", "perturb_intensity", "sure_pixels"]


def perturb_intensity(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per image: ``x * (1 + a) + b + noise``, a and b uniform in [-strength, strength], noise
    Gaussian with standard deviation ``strength / 2`` (images are z-scored, so in SD units)."""
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    a = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * strength
    b = (torch.rand(shape, device=x.device, dtype=x.dtype) * 2 - 1) * strength
    noise = torch.randn_like(x) * (strength / 2)
    return x * (1 + a) + b + noise


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


def sure_pixels(p: torch.Tensor, threshold: torch.Tensor | float, band: float) -> torch.Tensor:
    """Boolean mask of the pixels the confidence band keeps: ``p >= T + 2b (1 - T)`` or
    ``p <= T - 2b T``, a fraction 2b (< 1) of the room above and below T. At T = 0.5 that is
    ``|p - 0.5| >= b``, the band the recipe was measured with; unlike a band of fixed width it
    keeps pixels on both sides for every T in (0, 1) (SegPL-VI draws T near 0 or 1 too)."""
    room = 2.0 * band
    return (p >= threshold + room * (1.0 - threshold)) | (p <= threshold * (1.0 - room))


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
    cuts_pseudo_labels = True
    mixes = True

    def _forward(
        self, batch: Batch, train_unlabelled: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, View]:
        """One pass over labelled and unlabelled images together: (logits_l, logits_u, feats,
        view), view how the unlabelled images were changed for the network being trained.

        ``train_unlabelled`` False (the pseudo-label loss weighs 0: the burn-in, a gate not yet
        open): the network's pass over the unlabelled images would only feed a loss times 0,
        so it is skipped (logits_u None); instance norm makes the labelled outputs independent
        of them. The view is still drawn, so the random streams and the pseudo labels the gate
        watches are as before."""
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
        if x_u is not None and not train_unlabelled:
            logits_l, feats = self.model(batch.x_l)
            return logits_l, None, feats, view
        x = batch.x_l if x_u is None else torch.cat([batch.x_l, x_u])
        logits, feats = self.model(x)
        return logits[:n], logits[n:], feats, view

    def _loss(
        self,
        batch: Batch,
        logits_l: torch.Tensor,
        logits_u: torch.Tensor | None,
        threshold: torch.Tensor | float,
        alpha: float,
        view: View | None = None,
    ) -> StepOutput:
        """The M-step's loss; ``logits_u`` None: the student's pass was skipped (alpha 0), so
        only the pseudo labels are made (the gate and the guard watch them), not their loss."""
        config, kind, view = self.config, self.config.loss, view or View()
        sup = segmentation_loss(logits_l, batch.y_l, kind, batch.mask_l)
        logs = {"sup": sup.item(), "alpha": alpha}
        if not batch.has_unlabelled:
            logs["loss"] = sup.item()
            return StepOutput(sup, logs)
        with torch.no_grad():  # E-step: the pseudo label is a constant for the M-step
            # the clean images' probabilities (the preview's and the fill's function); the
            # network's own logits serve when it saw the clean images and there is no teacher
            same = self.teacher is None and config.perturb == 0 and not view.changed
            own = logits_u.detach() if same and logits_u is not None else None
            p_u = self.e_step_probabilities(batch.x_u, own)
            dtype = logits_l.dtype
            inside = None
            if view.theta is not None:  # move the teacher's view with the student's
                p_u = warp(p_u, view.theta)
                inside = warp(torch.ones_like(p_u[:, :1]), view.theta) > 0.999
                inside = inside.to(dtype)
            if view.boxes is not None:  # and mix it alike: each box carries its own pixels
                p_u = mix(p_u, view.boxes.to(p_u.dtype), view.partner)
                if inside is not None:
                    inside = mix(inside, view.boxes.to(inside.dtype), view.partner)
            pseudo = self.cut(p_u, threshold).to(dtype)
            mask = inside
            if config.confidence > 0:
                sure = sure_pixels(p_u, threshold, config.confidence).to(dtype)
                mask = sure if mask is None else mask * sure
            centre = None
            if pseudo.ndim == 5:  # 3-slice stacks: as on labelled stacks, only the centre
                # slice is trained and used; the outer slices' outputs are never supervised and
                # drift (RESULTS.md (c'''))
                centre = torch.zeros_like(pseudo[:1, :1, :, :1, :1])
                centre[:, :, pseudo.shape[2] // 2] = 1
                mask = centre if mask is None else mask * centre
            if self.pseudo_classes is not None and not all(self.pseudo_classes):
                shape = (1, len(self.pseudo_classes)) + (1,) * (pseudo.ndim - 2)
                gated = torch.tensor(self.pseudo_classes, dtype=pseudo.dtype, device=pseudo.device)
                mask = gated.reshape(shape) if mask is None else mask * gated.reshape(shape)
        loss = sup
        if logits_u is not None:
            unsup = segmentation_loss(
                logits_u, pseudo, kind, mask, per_image=config.unsup_dice == "image"
            )
            loss = sup + alpha * unsup
            logs["unsup"] = unsup.item()
        logs["loss"] = loss.item()
        if centre is not None:  # the foreground fraction the guard watches: centre slices
            pseudo = pseudo[:, :, pseudo.shape[2] // 2]
        return StepOutput(loss, logs, pseudo=pseudo)

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        alpha = alpha_fn(step)
        logits_l, logits_u, _, view = self._forward(batch, train_unlabelled=alpha > 0)
        return self._loss(batch, logits_l, logits_u, self.config.threshold, alpha, view)
