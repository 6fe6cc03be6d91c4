"""The cross-entropy on a painted class the network has lost on its own painted slice
(``rescue``): when it acts, by hand; when it must not act; and its place in the run."""

from __future__ import annotations

import math

import pytest
import torch

from napari_segpl.engine.config import ConfigError, TrainConfig
from napari_segpl.engine.losses import missing_class_loss, segmentation_loss
from napari_segpl.engine.methods import get_method
from napari_segpl.engine.methods.base import Batch


def _one_hot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, *spatial) integer labels -> (N, K, *spatial) channels for classes 1..K."""
    return torch.stack([(labels == c).float() for c in range(1, k + 1)], dim=1)


def _softplus(z: float) -> float:
    return math.log1p(math.exp(z))


def test_a_class_taken_by_its_neighbour_is_rescued_by_hand():
    # voxel 0 painted 1, voxels 1-2 painted 2, voxel 3 background; channel 1 wins voxels 0-2
    z1 = [4.0, 3.0, 2.5, -3.0]
    z2 = [-2.0, 2.0, 1.0, -3.0]
    logits = torch.tensor([[[z1], [z2]]])  # (1, 2, 1, 4)
    labels = torch.tensor([[[1, 2, 2, 0]]])
    loss, pairs = missing_class_loss(logits, _one_hot(labels, 2))
    assert pairs == 1  # class 2 only: class 1 keeps its voxel
    # class 2's voxels: channel 1 against 0, channel 2 against 1, the mean over both
    voxel = [(_softplus(z1[i]) + _softplus(-z2[i])) / 2 for i in (1, 2)]
    assert loss.item() == pytest.approx(sum(voxel) / 2, rel=1e-6)


def test_pairs_are_averaged_over_images_and_classes():
    logits = torch.zeros(2, 2, 1, 2)
    logits[0, 0] = 3.0  # image 0: channel 1 everywhere; class 2 is lost
    logits[1, 1] = 3.0  # image 1: channel 2 everywhere; class 1 is lost
    labels = torch.tensor([[[1, 2]], [[1, 2]]])
    loss, pairs = missing_class_loss(logits, _one_hot(labels, 2))
    assert pairs == 2
    each = (_softplus(3.0) + _softplus(-0.0)) / 2  # the same by symmetry
    assert loss.item() == pytest.approx(each, rel=1e-6)


def test_nothing_lost_is_zero_and_has_no_gradient():
    logits = torch.tensor([[[[3.0, -3.0, -3.0]], [[-3.0, 3.0, -3.0]]]], requires_grad=True)
    loss, pairs = missing_class_loss(logits, _one_hot(torch.tensor([[[1, 2, 0]]]), 2))
    assert pairs == 0 and loss.item() == 0.0
    assert not loss.requires_grad or torch.autograd.grad(loss, logits, allow_unused=True)[0] is None


def test_below_the_threshold_is_not_labelled():
    # class 1's channel is the most probable but under 0.5: the voxel is background, so lost
    logits = torch.tensor([[[[-0.5]], [[-2.0]]]])
    _, pairs = missing_class_loss(logits, _one_hot(torch.tensor([[[1]]]), 2))
    assert pairs == 1
    _, pairs = missing_class_loss(logits, _one_hot(torch.tensor([[[1]]]), 2), threshold=0.3)
    assert pairs == 0  # sigmoid(-0.5) = 0.38 is above 0.3


def test_the_floor_is_a_fraction_of_the_painted_voxels():
    logits = torch.full((1, 1, 1, 10), -3.0)
    target = torch.ones(1, 1, 1, 10)
    assert missing_class_loss(logits, target)[1] == 1  # none of ten
    logits[..., 0] = 3.0
    assert missing_class_loss(logits, target)[1] == 0  # one of ten is not under a tenth
    assert missing_class_loss(logits, target, floor=0.2)[1] == 1


def test_the_mask_hides_voxels():
    logits = torch.tensor([[[[3.0, 3.0]], [[-3.0, -3.0]]]])
    target = _one_hot(torch.tensor([[[2, 2]]]), 2)
    mask = torch.tensor([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)
    loss, pairs = missing_class_loss(logits, target, mask)
    assert pairs == 1
    assert loss.item() == pytest.approx((_softplus(3.0) + _softplus(3.0)) / 2, rel=1e-6)
    _, pairs = missing_class_loss(logits, target, torch.zeros_like(mask))
    assert pairs == 0


def test_the_gradient_reaches_only_the_lost_class_voxels():
    logits = torch.tensor([[[[4.0, 3.0, 0.0]], [[-2.0, 2.0, 0.0]]]], requires_grad=True)
    loss, _ = missing_class_loss(logits, _one_hot(torch.tensor([[[1, 2, 0]]]), 2))
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad[..., 0].abs().sum() == 0 and grad[..., 2].abs().sum() == 0
    assert grad[0, 0, 0, 1] > 0 and grad[0, 1, 0, 1] < 0  # the thief down, the class up


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ"):
        missing_class_loss(torch.zeros(1, 2, 3, 3), torch.zeros(1, 1, 3, 3))


def _batch() -> Batch:
    x = torch.randn(2, 1, 16, 16)
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 2:8, 2:8], labels[:, 9:14, 9:14] = 1, 2
    return Batch(x, _one_hot(labels, 2))


@pytest.mark.parametrize("method", ["supervised", "segpl", "cps"])
def test_rescue_joins_the_supervised_loss_from_a_quarter_of_the_run(method):
    torch.manual_seed(0)
    config = TrainConfig(method=method, dims=2, steps=8, rescue=2.0, base_channels=4, depth=2)
    m = get_method(method)(config, 2)
    batch = _batch()
    logits = torch.zeros(2, 2, 16, 16)
    logits[:, 0] = 5.0  # channel 1 wins everywhere: class 2 is lost in both images
    plain = segmentation_loss(logits, batch.y_l, config.loss, batch.mask_l)
    m.step = 1  # before a quarter of 8 steps
    assert m.supervised_loss(logits, batch).item() == pytest.approx(plain.item())
    assert m.rescued == 0
    m.step = 2
    extra, pairs = missing_class_loss(logits, batch.y_l)
    got = m.supervised_loss(logits, batch)
    assert pairs == 2 and m.rescued == 2
    assert got.item() == pytest.approx(plain.item() + 2.0 * extra.item(), rel=1e-6)


def test_rescue_off_or_nested_leaves_the_dice_alone():
    batch = _batch()
    logits = torch.zeros(2, 2, 16, 16)
    logits[:, 0] = 5.0
    for config in (
        TrainConfig(dims=2, steps=8, rescue=0.0),
        TrainConfig(dims=2, steps=8, rescue=1.0, nested=True),
    ):
        m = get_method("supervised")(config, 2)
        m.step = 7
        plain = segmentation_loss(logits, batch.y_l, config.loss, batch.mask_l)
        assert m.supervised_loss(logits, batch).item() == pytest.approx(plain.item())
        assert m.rescued == 0


def test_rescue_must_not_be_negative():
    with pytest.raises(ConfigError, match="rescue"):
        TrainConfig(rescue=-1.0).validate()
