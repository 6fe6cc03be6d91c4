"""FixMatch's strong view of an unlabelled image, for z-scored CT and MRI slices.

UniMatch (Yang et al., CVPR 2023; its ``more-scenarios/medical`` code for ACDC) makes the strong
view of a grey-level slice in [0, 1] with ``ColorJitter(0.5, 0.5, 0.5, 0.25)`` (probability
0.8), a Gaussian blur of sigma 0.1-2 pixels (probability 0.5) and a CutMix box (probability
0.5, 2-40 % of the area, aspect ratio 0.3-3.3) whose pixels come from another unlabelled
image. Here, on images z-scored case by case (in SD units):

- jitter: of ColorJitter only brightness and contrast act on a grey-level image (saturation
  and hue leave it unchanged). Brightness scales the image about its minimum (what 0 is in
  [0, 1]), contrast about its mean, each by a factor in [0.5, 1.5], in random order, and the
  result is clipped to the image's own range as an 8-bit image saturates;
- blur: in-plane only (every slice of a 3-slice stack alike), reflecting at the border;
- Gaussian noise, which UniMatch does not add but CT and MRI have: variance uniform in
  [0, 0.1] (nnU-Net's noise augmentation), probability 0.5;
- the CutMix box: the same box for every slice of a stack, the partner another image of the
  same batch (UniMatch draws it from a second loader), so the box's pseudo labels come from the
  partner's weak view, which the same forward pass already made. ``cutmix`` applies one box to
  the image and to everything derived from it (pseudo labels, confidence), so they stay aligned.

Random numbers are drawn on the CPU from torch's generator, so a seed gives the same views on
every device.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .augment import mix


@dataclass(frozen=True)
class StrongAugment:
    """Strengths and probabilities of the strong view (defaults: UniMatch's, noise nnU-Net's)."""

    jitter_p: float = 0.8
    brightness: float = 0.5
    contrast: float = 0.5
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise_p: float = 0.5
    noise_variance: tuple[float, float] = (0.0, 0.1)
    cutmix_p: float = 0.5
    box_area: tuple[float, float] = (0.02, 0.4)
    box_ratio: tuple[float, float] = (0.3, 1 / 0.3)


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def jitter(x: torch.Tensor, brightness: float, contrast: float) -> torch.Tensor:
    """One image (C, [D,] H, W): brightness about the minimum, contrast about the mean, in random
    order, clipped to the image's range."""
    low, high = x.min(), x.max()
    steps = [("b", _uniform(1 - brightness, 1 + brightness))]
    steps.append(("c", _uniform(1 - contrast, 1 + contrast)))
    if float(torch.rand(())) < 0.5:
        steps.reverse()
    for kind, factor in steps:
        centre = x.min() if kind == "b" else x.mean()
        x = ((x - centre) * factor + centre).clamp(low, high)
    return x


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """In-plane Gaussian blur of (C, [D,] H, W) with standard deviation ``sigma`` pixels."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    shape = x.shape
    flat = x.reshape(-1, 1, *shape[-2:]).float()
    h, w = shape[-2:]
    # reflect padding needs the pad below the size; wider kernels fall back to replicate
    mode = "reflect" if radius < min(h, w) else "replicate"
    with _float32(x.device):  # the image stays float32 under autocast, as it came
        flat = F.pad(flat, (radius, radius, 0, 0), mode=mode)
        flat = F.conv2d(flat, kernel.reshape(1, 1, 1, -1))
        flat = F.pad(flat, (0, 0, radius, radius), mode=mode)
        flat = F.conv2d(flat, kernel.reshape(1, 1, -1, 1))
    return flat.reshape(shape).to(x.dtype)


def _float32(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off on ``device`` where it has one."""
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def intensity_view(x: torch.Tensor, aug: StrongAugment) -> torch.Tensor:
    """Jitter, blur and noise, each image of the batch (N, C, [D,] H, W) drawn on its own."""
    out = []
    for image in x:
        if float(torch.rand(())) < aug.jitter_p:
            image = jitter(image, aug.brightness, aug.contrast)
        if float(torch.rand(())) < aug.blur_p:
            image = gaussian_blur(image, _uniform(*aug.blur_sigma))
        if float(torch.rand(())) < aug.noise_p:
            std = math.sqrt(_uniform(*aug.noise_variance))
            noise = torch.randn(image.shape, dtype=torch.float32).to(image.device, image.dtype)
            image = image + std * noise
        out.append(image)
    return torch.stack(out)


def cutmix_boxes(n: int, like: torch.Tensor, aug: StrongAugment) -> torch.Tensor:
    """(n, 1, [1,] H, W) masks in ``augment.mix``'s convention: 1 keeps an image's own pixels,
    0 inside its box (drawn with probability ``cutmix_p``) takes the partner's."""
    h, w = like.shape[-2:]
    keep = torch.ones((n, 1, *([1] * (like.ndim - 4)), h, w), device=like.device, dtype=like.dtype)
    for i in range(n):
        if float(torch.rand(())) >= aug.cutmix_p:
            continue
        area = _uniform(*aug.box_area) * h * w
        ratio = _uniform(*aug.box_ratio)
        bh = min(h, max(1, int(math.sqrt(area * ratio))))
        bw = min(w, max(1, int(math.sqrt(area / ratio))))
        top = int(torch.randint(0, h - bh + 1, (1,)))
        left = int(torch.randint(0, w - bw + 1, (1,)))
        keep[i, ..., top : top + bh, left : left + bw] = 0
    return keep


def cutmix(
    keep: torch.Tensor, partner: torch.Tensor, *tensors: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The same boxes applied to each tensor (images, pseudo labels, confidence masks): inside
    image i's box every tensor takes image ``partner[i]``'s values."""
    return tuple(mix(t, keep.to(t.dtype), partner) for t in tensors)
