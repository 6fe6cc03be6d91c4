"""Each loss formula against an independent computation: by hand, or torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from napari_segpl.engine.losses import (
    alpha_at,
    dice_loss,
    gaussian_kl,
    sample_threshold,
    segmentation_loss,
)


def test_dice_matches_hand_computation():
    # Image 0: p = [0.9, 0.2, 0.6, 0.0], y = [1, 0, 1, 0]
    #   sum(p y) = 1.5, sum p = 1.7, sum y = 2 -> 1 - (3 + 1) / (3.7 + 1) = 1 - 4 / 4.7
    # Image 1: p = [0.1, 0.1, 0.1, 0.1], y = 0 -> 1 - 1 / (0.4 + 1) = 1 - 1 / 1.4
    p = torch.tensor([[[[0.9, 0.2], [0.6, 0.0]]], [[[0.1, 0.1], [0.1, 0.1]]]])
    y = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    expected = ((1 - 4 / 4.7) + (1 - 1 / 1.4)) / 2
    assert dice_loss(p, y).item() == pytest.approx(expected, rel=1e-6)


def test_dice_is_per_channel_not_pooled():
    p = torch.zeros(1, 2, 2, 2)
    p[0, 0] = 1.0  # channel 0 perfect, channel 1 predicts nothing where truth is everything
    y = torch.zeros(1, 2, 2, 2)
    y[0, 0] = 1.0
    y[0, 1] = 1.0
    # channel 0: 1 - (8 + 1) / (8 + 1) = 0; channel 1: 1 - 1 / (0 + 4 + 1) = 0.8
    assert dice_loss(p, y).item() == pytest.approx(0.4)


def test_dice_mask_keeps_only_marked_voxels():
    p = torch.tensor([[[[0.5, 1.0]]]])
    y = torch.tensor([[[[1.0, 0.0]]]])
    mask = torch.tensor([[[[1.0, 0.0]]]])
    # Only the first voxel counts: 1 - (1 + 1) / (0.5 + 1 + 1)
    assert dice_loss(p, y, mask=mask).item() == pytest.approx(1 - 2 / 2.5)


def _by_hand(logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each segmentation loss written out in float64: Dice per image and channel, smooth 1."""
    p, y = torch.sigmoid(logits.double()), target.double()
    spatial = tuple(range(2, p.ndim))
    inter, total = (p * y).sum(dim=spatial), p.sum(dim=spatial) + y.sum(dim=spatial)
    dice = (1 - (2 * inter + 1) / (total + 1)).mean()
    bce = -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()
    return {"dice": dice, "bce": bce, "dice+bce": 0.5 * dice + 0.5 * bce}


@pytest.mark.parametrize("kind", ["dice", "bce", "dice+bce"])
def test_segmentation_losses_by_hand(kind):
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, 5)
    target = (torch.rand(3, 2, 5, 5) > 0.5).float()
    got = segmentation_loss(logits, target, kind)
    assert got.item() == pytest.approx(_by_hand(logits, target)[kind].item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["dice", "bce", "dice+bce"])
def test_losses_stay_float32_under_bfloat16_autocast(kind):
    """``--amp``: the network's logits are bfloat16. On a batch of 2 x 2 x 256 x 256 a Dice
    computed in bfloat16 is off by about 1e-3 (each sum of 65 536 probabilities kept to 8
    bits), 1000 times the tolerance; the loss must come out float32 and as exact as float32."""
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 2, 256, 256, generator=g) * 3).to(torch.bfloat16)
    target = (torch.rand(2, 2, 256, 256, generator=g) > 0.5).float()
    expected = _by_hand(logits, target)  # float64 from the same (bfloat16) logits
    tolerance = 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = segmentation_loss(logits, target, kind)
        # what the loss was before: the same formula left to autocast, in bfloat16
        p, y = torch.sigmoid(logits), target.to(torch.bfloat16)
        inter, total = (p * y).sum(dim=(2, 3)), p.sum(dim=(2, 3)) + y.sum(dim=(2, 3))
        naive_dice = (1 - (2 * inter + 1) / (total + 1)).mean()
    assert got.dtype == torch.float32
    assert abs(got.item() - expected[kind].item()) < tolerance
    assert naive_dice.dtype == torch.bfloat16  # the check above can fail:
    assert abs(naive_dice.item() - expected["dice"].item()) > 100 * tolerance


def test_masked_losses_stay_float32_under_bfloat16_autocast():
    """3-slice stacks: only the centre slice counts, in float32 too."""
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(2, 1, 3, 128, 128, generator=g) * 3).to(torch.bfloat16)
    logits.requires_grad_(True)
    target = (torch.rand(2, 1, 3, 128, 128, generator=g) > 0.5).float()
    mask = torch.zeros(1, 1, 3, 1, 1)
    mask[:, :, 1] = 1
    centre = _by_hand(logits.detach()[:, :, 1], target[:, :, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dice = segmentation_loss(logits, target, "dice", mask)
        bce = segmentation_loss(logits, target, "bce", mask)
    assert dice.dtype == bce.dtype == torch.float32
    # the masked Dice keeps the outer slices' zeros in its sums: the same as the centre's alone
    assert abs(dice.item() - centre["dice"].item()) < 1e-6
    assert abs(bce.item() - centre["bce"].item()) < 1e-6
    (dice + bce).backward()  # the gradient still reaches the bfloat16 logits
    assert logits.grad.dtype == torch.bfloat16
    assert logits.grad[:, :, [0, 2]].abs().max() == 0 and logits.grad[:, :, 1].abs().max() > 0


def test_kl_and_threshold_stay_float32_under_bfloat16_autocast():
    g = torch.Generator().manual_seed(2)
    mu = (torch.rand(1000, generator=g) * 0.4 + 0.3).to(torch.bfloat16)
    sigma = (torch.rand(1000, generator=g) * 0.1 + 0.05).to(torch.bfloat16)
    expected = kl_divergence(Normal(mu.double(), sigma.double()), Normal(0.5, 0.1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gaussian_kl(mu, sigma, 0.5, 0.1)
        naive = math.log(0.1) - torch.log(sigma) + (sigma**2 + (mu - 0.5) ** 2) / 0.02 - 0.5
        t = sample_threshold(mu, sigma)
    assert got.dtype == torch.float32 and t.dtype == torch.float32
    assert (got.double() - expected).abs().max() < 1e-5
    assert (naive.double() - expected).abs().max() > 1e-3  # bfloat16 alone: off by 0.02


def test_gaussian_kl_matches_torch_distributions():
    torch.manual_seed(1)
    mu = torch.rand(50)
    sigma = torch.rand(50) * 0.3 + 0.01
    for prior_mu, prior_sigma in [(0.5, 0.1), (0.4, 0.1), (0.3, 0.25)]:
        expected = kl_divergence(Normal(mu, sigma), Normal(prior_mu, prior_sigma))
        got = gaussian_kl(mu, sigma, prior_mu, prior_sigma)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_is_zero_at_the_prior():
    assert gaussian_kl(torch.tensor(0.4), torch.tensor(0.1), 0.4, 0.1).item() == pytest.approx(
        0.0, abs=1e-7
    )


@pytest.mark.parametrize(
    ("step", "expected"), [(0, 0.0), (5, 0.5), (10, 1.0), (11, 1.0), (500, 1.0)]
)
def test_alpha_linear_warmup(step, expected):
    assert alpha_at(step, 1.0, 10) == pytest.approx(expected)


def test_alpha_without_warmup_is_constant():
    assert alpha_at(0, 0.05, 0) == 0.05


def test_sampled_threshold_follows_normal_inside_unit_interval():
    torch.manual_seed(2)
    mu = torch.full((200_000,), 0.4)
    sigma = torch.full((200_000,), 0.1)
    t = sample_threshold(mu, sigma)
    assert 0.0 < t.min().item() and t.max().item() < 1.0
    assert t.mean().item() == pytest.approx(0.4, abs=2e-3)
    assert t.std().item() == pytest.approx(0.1, abs=2e-3)
    # A wide distribution is clamped inside (0, 1) instead of giving empty/full pseudo labels.
    wide = sample_threshold(torch.full((10_000,), 0.5), torch.full((10_000,), 2.0))
    assert wide.min().item() == pytest.approx(0.01) and wide.max().item() == pytest.approx(0.99)


def test_sampled_threshold_is_reparameterised():
    """T = mu + sigma * eps: dT/dmu = 1 and dT/dsigma = eps = (T - mu) / sigma."""
    mu = torch.tensor([0.5, 0.4], requires_grad=True)
    sigma = torch.tensor([0.1, 0.05], requires_grad=True)
    t = sample_threshold(mu, sigma, torch.Generator().manual_seed(3))
    t.sum().backward()
    assert mu.grad.tolist() == pytest.approx([1.0, 1.0])
    eps = ((t - mu) / sigma).detach()
    assert eps.abs().min() > 0  # a draw of exactly mu would make the check below empty
    torch.testing.assert_close(sigma.grad, eps)


def test_masked_bce_weighs_each_channel_alike_and_a_closed_one_as_zero():
    """With the gate holding class 2 back (its channel's mask all 0), class 1 keeps the weight
    it has with both open (half), as in the Dice; it counted fully before."""
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 6, 6), (torch.rand(2, 2, 6, 6) > 0.5).float()
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    open_both = torch.ones(2, 2, 6, 6)
    class_1 = per_voxel[:, 0].mean()
    both = segmentation_loss(logits, target, "bce", open_both)
    torch.testing.assert_close(both, per_voxel.mean())  # one mask for all: the plain mean
    gated = open_both.clone()
    gated[:, 1] = 0
    torch.testing.assert_close(segmentation_loss(logits, target, "bce", gated), class_1 / 2)
    band = (torch.rand(2, 2, 6, 6) > 0.3).float()  # a confidence band: per channel's own mean
    expected = torch.stack([per_voxel[:, c][band[:, c] > 0].mean() for c in range(2)]).mean()
    torch.testing.assert_close(segmentation_loss(logits, target, "bce", band), expected)
