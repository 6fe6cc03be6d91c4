"""Each loss formula against an independent computation: by hand, or torch.distributions."""

from __future__ import annotations

import math

import pytest
import torch
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


def test_dice_plus_bce_is_half_and_half():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, 5, 5)
    target = (torch.rand(3, 2, 5, 5) > 0.5).float()
    p = torch.sigmoid(logits)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    expected = 0.5 * dice_loss(p, target) + 0.5 * bce
    got = segmentation_loss(logits, target, "dice+bce")
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


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
    mu = torch.tensor([0.5], requires_grad=True)
    sigma = torch.tensor([0.1], requires_grad=True)
    sample_threshold(mu, sigma).sum().backward()
    assert mu.grad.item() == pytest.approx(1.0)
    assert math.isfinite(sigma.grad.item())
