"""The parts rule in the E-step (``parts_estep.py``): which voxels lose which class, the crops
the step sees, and that the step's pseudo labels obey them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import TrainConfig, Trainer, get_method, prepare_data
from napari_segpl.engine.methods import Batch
from napari_segpl.engine.parts_estep import PartsMask, allow_batch


def _two_blobs() -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Class 1: a blob through slices 1-3 (painted on slice 2) and a separate blob on slices
    6-7; class 2: a blob nobody painted. Slices first."""
    labels = np.zeros((9, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[6:8, 6:9, 6:9] = 1
    labels[6:8, 1:3, 6:9] = 2
    paint = {2: np.zeros((10, 10), np.uint8)}
    paint[2][2, 2] = 1
    return labels, paint


def test_the_unpainted_part_of_a_painted_class_loses_that_class_only():
    labels, paint = _two_blobs()
    mask = PartsMask(labels.shape, 2, nested=False)
    assert mask.refresh(labels, paint) == {1: 2 * 3 * 3}
    far = mask.allowed(6)
    assert (far[0][6:9, 6:9] == 0).all() and far[0].sum() == 100 - 9  # class 1 gone there
    assert (far[1] == 1).all()  # class 2 was never painted: left as predicted
    assert (mask.allowed(2) == 1).all()  # the painted part keeps its class everywhere


def test_nested_classes_lose_every_class_the_voxel_fell_through():
    labels = np.zeros((5, 6, 6), np.uint8)
    labels[0:2, 0:2, 0:2] = 2  # painted: a region holding its core
    labels[3:5, 3:6, 3:6] = 2  # the same, away from the paint
    paint = {1: labels[1].copy()}
    mask = PartsMask(labels.shape, 2, nested=True)
    mask.refresh(labels, paint)
    allowed = mask.allowed(4)
    assert (allowed[:, 3:6, 3:6] == 0).all() and allowed[:, :3].all()


def test_crops_follow_the_sampler_offsets_and_pad_with_allowed():
    labels, paint = _two_blobs()
    mask = PartsMask(labels.shape, 2, nested=False)
    mask.refresh(labels, paint)
    drawn = [(0, 6, (5, 5)), (1, 6, (0, 0))]  # volume 1: an extra volume, no paint
    out = allow_batch(mask, drawn, (8, 8), dims=3)
    assert out.shape == (2, 2, 3, 8, 8)
    expected = np.ones((8, 8), np.float32)
    expected[1:4, 1:4] = 0  # rows and columns 6-8 of the slice, from offset 5
    for k in range(3):
        np.testing.assert_array_equal(out[0, 0, k], expected)
    assert out[0, 1].all() and out[1].all()


def test_the_step_cuts_no_pseudo_label_of_a_class_the_mask_forbids():
    config = TrainConfig(dims=2, base_channels=4, depth=2, ema=0.0, warp=0.0, perturb=0.0)
    method = get_method("segpl")(config, 2)
    torch.manual_seed(0)
    x = torch.randn(4, 1, 16, 16)
    batch = Batch(x[:2], torch.zeros(2, 2, 16, 16), None, x[2:])
    with torch.no_grad():  # class 1 sure everywhere, class 2 nowhere
        method.model.head.bias.copy_(torch.tensor([20.0, -20.0]))
    assert method.compute_loss(batch, 0, lambda step: 1.0).pseudo[:, 0].all()
    batch.allow_u = torch.ones(2, 2, 16, 16)
    batch.allow_u[:, 0, :8] = 0
    out = method.compute_loss(batch, 0, lambda step: 1.0).pseudo
    assert not out[:, 0, :8].any() and out[:, 0, 8:].all()
    assert not out[:, 1].any()


@pytest.mark.parametrize("dims", [2, 3])
def test_training_with_the_rule_refreshes_after_the_burn_in(toy_volume, monkeypatch, dims):
    image, labels = toy_volume
    config = TrainConfig(
        dims=dims, base_channels=4, depth=2, axis=2, patch=48, steps=10, burn_in=0.4,
        parts_every=3, preview_every=0, batch=1, ratio=1,
    )  # fmt: skip
    trainer = Trainer(config, prepare_data(image, labels, config, labelled=[5, 10, 15]))
    calls: list[int] = []
    original = PartsMask.refresh

    def counted(self, teacher, paint):
        calls.append(teacher.shape[0])
        assert set(paint) == {5, 10, 15}
        return original(self, teacher, paint)

    monkeypatch.setattr(PartsMask, "refresh", counted)
    list(trainer.run())
    assert len(calls) == 2  # local steps 4 and 7 of 0-9
    assert calls[0] == trainer.data.image.shape[0]
