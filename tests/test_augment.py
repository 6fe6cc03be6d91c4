"""The geometric augmentation (augment.py) by hand: affine maps, CutMix boxes and partners."""

from __future__ import annotations

import numpy as np
import torch

from napari_segpl.engine.augment import mix, random_affine, random_boxes, warp, warp_labelled
from napari_segpl.engine.methods.segpl import partners


def test_warp_by_hand_quarter_turn_and_identity():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # theta maps output coordinates to input ones: (x, y) -> (-y, x) is a quarter turn
    quarter = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    # output pixel (row r, col c) reads input (row c, col 3 - r): numpy's counter-clockwise turn
    turned = warp(x, quarter)
    assert torch.equal(turned, torch.rot90(x, k=1, dims=(2, 3)))
    assert turned[0, 0, 0, 0] == x[0, 0, 0, 3]  # the same, by hand for one pixel
    assert torch.equal(warp(x, random_affine(1, 0.0, "cpu", torch.float32)), x)
    stack = torch.rand(2, 1, 3, 8, 8)  # 3-slice stacks: each slice moves alike
    theta = random_affine(2, 0.5, "cpu", torch.float32)
    torch.testing.assert_close(warp(stack, theta)[:, :, 2], warp(stack[:, :, 2], theta))


def test_random_affine_stays_within_its_strength():
    torch.manual_seed(0)
    theta = random_affine(5000, 0.2, "cpu", torch.float64)
    a, b = theta[:, 0, 0], theta[:, 1, 0]
    scale, angle = torch.sqrt(a**2 + b**2), torch.atan2(b, a)
    assert angle.abs().max() <= 0.2 * np.pi / 4 + 1e-9
    assert angle.abs().max() > 0.19 * np.pi / 4  # the range is used, not just bounded
    assert scale.min() >= np.exp(-0.1) - 1e-9 and scale.max() <= np.exp(0.1) + 1e-9
    assert theta[:, :, 2].abs().max() <= 0.1 + 1e-9


def test_mix_by_hand():
    a = torch.zeros(2, 1, 2, 2)
    a[1] = 1.0  # image 0 all 0, image 1 all 1
    boxes = torch.ones(2, 1, 2, 2)
    boxes[0, :, 0, 1] = 0  # image 0 takes its partner's top-right pixel
    partner = torch.tensor([1, 0])
    assert mix(a, boxes, partner)[0].flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    assert torch.equal(mix(a, boxes, partner)[1], a[1])  # no box: its own pixels


def test_random_boxes_area_shape_and_probability():
    torch.manual_seed(0)
    like = torch.zeros(2000, 1, 3, 40, 60)  # 3-slice stacks
    boxes = random_boxes(2000, like, 0.5)
    assert boxes.shape == (2000, 1, 1, 40, 60)
    taken = 1 - boxes.flatten(1).mean(dim=1)
    used = taken > 0
    assert 0.45 < used.float().mean() < 0.55
    assert taken[used].min() >= 0.08 and taken[used].max() <= 0.52  # 10-50 % (rounding)
    for i in torch.nonzero(used)[:20, 0]:  # each one a single rectangle
        rows, cols = torch.nonzero(boxes[i, 0, 0] == 0, as_tuple=True)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h * w == rows.numel()
    assert torch.equal(random_boxes(5, like[:5], 0.0), torch.ones(5, 1, 1, 40, 60))


def test_partners_never_self():
    for n in (2, 3, 7):
        partner = partners(n)
        assert sorted(partner.tolist()) == list(range(n))
        assert all(partner[i] != i for i in range(n))


def test_labelled_affine_moves_images_and_targets_alike():
    torch.manual_seed(0)
    y = (torch.rand(3, 2, 1, 24, 24) > 0.7).float()  # 3-slice stacks, two classes
    x = y[:, :1] * 4.0 - 1.0  # an image whose bright voxels are class 1; background -1
    x_w, y_w = warp_labelled(x, y, 0.5)
    assert not torch.equal(y_w, y)
    assert x_w.min() >= -1.0 - 1e-6  # outside the image reads as background, not as 0
    torch.testing.assert_close((x_w > 1.0).float(), y_w[:, :1])  # still on top of each other
