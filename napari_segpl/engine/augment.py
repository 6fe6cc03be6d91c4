"""Geometric augmentation on the device: random in-plane affine maps applied with
``grid_sample``, so an image and what is derived from it (labels, pseudo labels, a validity mask)
move by exactly the same map.

No flips: left and right differ in anatomy (the lungs, arteries against veins), and flipped
training images taught the network to swap them (benchmarks/RESULTS.md, section (d)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(n: int, strength: float, device, dtype) -> torch.Tensor:
    """(n, 2, 3) affine maps for ``F.affine_grid``: rotation uniform in +-``strength * 45``
    degrees, scale ``exp(u)`` with u uniform in +-``strength / 2``, shift uniform in
    +-``strength / 2`` of the half-width."""
    u = (torch.rand(n, 4, device=device, dtype=dtype) * 2 - 1) * strength
    angle, scale = u[:, 0] * (math.pi / 4), torch.exp(u[:, 1] / 2)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    row0 = torch.stack([cos, -sin, u[:, 2] / 2], dim=1)
    row1 = torch.stack([sin, cos, u[:, 3] / 2], dim=1)
    return torch.stack([row0, row1], dim=1)


def warp(
    x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear", padding: str = "zeros"
) -> torch.Tensor:
    """Apply in-plane affine maps to (N, C, H, W) or (N, C, D, H, W) tensors (every slice of a
    3-slice stack moves alike); outside the image reads 0 (``padding="border"``: the edge
    values repeated)."""
    shape = x.shape
    flat = x.reshape(shape[0], -1, *shape[-2:]).float()
    grid = F.affine_grid(theta.float(), list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, mode=mode, padding_mode=padding, align_corners=False)
    return out.reshape(shape).to(x.dtype)


def warp_image(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warp images around each one's own minimum (their background after normalisation), so
    what comes in from outside the image reads as background rather than as zero, which is
    mid-grey in z-scored units."""
    low = x.amin(dim=tuple(range(1, x.ndim)), keepdim=True)
    return warp(x - low, theta) + low


def warp_labelled(
    x: torch.Tensor, y: torch.Tensor, strength: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random affine map applied to labelled images and their one-hot targets alike; targets
    are resampled linearly and cut at 0.5, and outside the image is background."""
    theta = random_affine(x.shape[0], strength, x.device, x.dtype)
    return warp_image(x, theta), (warp(y, theta) > 0.5).to(y.dtype)


def random_boxes(n: int, like: torch.Tensor, prob: float) -> torch.Tensor:
    """(n, 1, [1,] H, W) masks for mixing images in pairs (CutMix): 1 keeps an image's own pixels,
    0 inside one random box takes its partner's. With probability ``prob`` an image gets a box,
    of 10-50 % of its area and aspect ratio 1:2 to 2:1, anywhere inside the image; every slice of
    a 3-slice stack gets the same box. The box takes the partner's pixels at the same place, so
    anatomy keeps its position (left stays left)."""
    h, w = like.shape[-2:]
    boxes = torch.ones((n, 1, *([1] * (like.ndim - 4)), h, w), device=like.device, dtype=like.dtype)
    draws = torch.rand(n, 3).tolist()  # CPU draws: one generator whatever the device
    for i, (use, area, aspect) in enumerate(draws):
        if use >= prob:
            continue
        area = 0.1 + 0.4 * area
        ratio = 2.0 ** (2 * aspect - 1)
        bh = max(1, min(h, round(h * math.sqrt(area * ratio))))
        bw = max(1, min(w, round(w * math.sqrt(area / ratio))))
        top = int(torch.randint(0, h - bh + 1, (1,)))
        left = int(torch.randint(0, w - bw + 1, (1,)))
        boxes[i, ..., top : top + bh, left : left + bw] = 0
    return boxes


def mix(x: torch.Tensor, boxes: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Each image keeps its pixels where ``boxes`` is 1 and takes image ``partner[i]``'s where
    it is 0; applied alike to images, probabilities and masks so they stay aligned."""
    return boxes * x + (1 - boxes) * x[partner]
