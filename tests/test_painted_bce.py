"""A cross-entropy of the class channels on painted voxels (supervised training's ``painted_bce``):
by hand, its mask, and why the Dice alone cannot do its work (a saturated channel gets no
gradient from it)."""

from __future__ import annotations

import math

import pytest
import torch

from napari_segpl.engine.config import ConfigError, TrainConfig
from napari_segpl.engine.losses import painted_class_bce, segmentation_loss
from napari_segpl.engine.methods import get_method
from napari_segpl.engine.methods.base import Batch


def _one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, *spatial) integer labels -> (N, K, *spatial) channels for classes 1..K."""
    return torch.stack([(labels == c).float() for c in range(1, k + 1)], dim=1)


def _softplus(z: float) -> float:
    return math.log1p(math.exp(z))


def test_painted_bce_matches_hand_computation():
    logits = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]], [[-1.0, 0.5]]]])  # (1, 3, 1, 2)
    labels = torch.tensor([[[2, 0]]])  # one voxel painted class 2, one background
    got = painted_class_bce(logits, _one_hot(labels, 3))
    # only the first voxel counts: class 2's channel against 1, classes 1 and 3 against 0
    expected = (_softplus(2.0) + _softplus(-1.0) + _softplus(-1.0)) / 3
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_painted_bce_averages_over_painted_voxels_only():
    logits = torch.tensor([[[[0.0, 1.0, 5.0]], [[math.log(3.0), 0.0, -5.0]]]])  # (1, 2, 1, 3)
    labels = torch.tensor([[[1, 2, 0]]])
    got = painted_class_bce(logits, _one_hot(labels, 2))
    voxel1 = (_softplus(-0.0) + _softplus(math.log(3.0))) / 2  # painted 1
    voxel2 = (_softplus(1.0) + _softplus(-0.0)) / 2  # painted 2
    assert got.item() == pytest.approx((voxel1 + voxel2) / 2, rel=1e-6)


def test_painted_bce_is_zero_without_paint_and_keeps_a_gradient():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    got = painted_class_bce(logits, torch.zeros(2, 3, 4, 4))
    assert got.item() == 0.0
    got.backward()
    assert torch.all(logits.grad == 0)


def test_painted_bce_mask_keeps_the_centre_slice_of_a_stack():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, 4, 4)
    labels = torch.randint(0, 4, (2, 3, 4, 4))
    target = _one_hot(labels, 3)
    centre = torch.zeros(1, 1, 3, 1, 1)
    centre[:, :, 1] = 1
    got = painted_class_bce(logits, target, centre)
    alone = painted_class_bce(logits[:, :, 1], target[:, :, 1])
    assert got.item() == pytest.approx(alone.item(), rel=1e-6)


def test_a_saturated_channel_learns_from_competition_not_from_the_dice():
    """A voxel painted class 2 where class 1's channel reads 0.99995 (logit 10), and class 2's
    reads 0.00005 (logit -10) on its own paint: the Dice moves neither logit by much; the
    competition moves each by its p - y, whole."""
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :4] = 1
    labels[:, 4:, :4] = 2
    target = _one_hot(labels, 2)
    logits = torch.full((1, 2, 8, 8), -10.0)
    logits[:, 0, :4] = 10.0
    logits[:, 0, 4:, :4] = 10.0  # class 1 claims class 2's voxels
    logits[:, 1, 4:, 2:4] = 8.0  # class 2 is right on half of its paint, stuck at 0 elsewhere
    dice_logits = logits.clone().requires_grad_(True)
    segmentation_loss(dice_logits, target, "dice").backward()
    ce_logits = logits.clone().requires_grad_(True)
    painted_class_bce(ce_logits, target).backward()
    scale = 2 * int((labels > 0).sum())  # channels times painted voxels
    wrong = (0, 0, 6, 1)  # class 1's channel on a voxel painted class 2
    stuck = (0, 1, 6, 1)  # class 2's channel at 0 on its own paint
    assert abs(dice_logits.grad[wrong].item()) < 1e-3
    assert abs(dice_logits.grad[stuck].item()) < 1e-3
    assert ce_logits.grad[wrong].item() * scale == pytest.approx(
        torch.sigmoid(torch.tensor(10.0)).item(), rel=1e-5
    )
    assert ce_logits.grad[stuck].item() * scale == pytest.approx(
        torch.sigmoid(torch.tensor(-10.0)).item() - 1, rel=1e-5
    )
    # and the background is left to the Dice
    assert torch.all(ce_logits.grad[:, :, labels[0] == 0] == 0)


@pytest.mark.parametrize("nested,k,adds", [(False, 2, True), (True, 2, False), (False, 1, False)])
def test_supervised_adds_the_term_only_for_exclusive_classes(nested, k, adds):
    torch.manual_seed(1)
    config = TrainConfig(method="supervised", dims=2, nested=nested, base_channels=4, depth=2,
                         extra={"painted_bce": 0.7})  # fmt: skip
    method = get_method("supervised")(config, k)
    x = torch.randn(2, 1, 16, 16)
    labels = torch.randint(0, k + 1, (2, 16, 16))
    target = (
        torch.stack([(labels >= c).float() for c in range(1, k + 1)], 1)
        if nested
        else _one_hot(labels, k)
    )
    got = method.compute_loss(Batch(x, target), 0, lambda s: 0.0).loss
    with torch.no_grad():
        logits = method.model(x)[0]
    dice = segmentation_loss(logits, target, "dice")
    extra = 0.7 * painted_class_bce(logits, target) if adds else 0.0
    assert got.item() == pytest.approx((dice + extra).item(), rel=1e-5)


def test_painted_bce_is_off_by_default_and_checked():
    assert get_method("supervised")(TrainConfig(method="supervised"), 2).painted_bce == 0.0
    with pytest.raises(ConfigError, match="painted_bce"):
        get_method("supervised")(TrainConfig(method="supervised", extra={"painted_bce": -1.0}), 2)
    with pytest.raises(ConfigError, match="painted_bce"):  # supervised training's own
        get_method("segpl")(TrainConfig(method="segpl", extra={"painted_bce": 0.1}), 2)
