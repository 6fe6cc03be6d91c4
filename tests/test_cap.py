"""The cap on a class's pseudo labels (``cap``, RESULTS.md (R2)): on each unlabelled image a
class keeps at most ``cap`` times its largest painted area as pseudo labels, its most probable
pixels, and the rest of its pseudo-labelled pixels leave its loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_toy_volume

from napari_segpl.engine import TrainConfig, prepare_data
from napari_segpl.engine.guard import largest_painted_area
from napari_segpl.engine.methods import get_method
from napari_segpl.engine.trainer import Trainer

SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "patch": 32, "lr": 0.01, "preview_every": 0}


def _expected(p: np.ndarray, pseudo: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """The mask by hand: per image and class, the pseudo-labelled pixels below the cap-th most
    probable one are left out, when the class holds more than ``cap`` of them."""
    keep = np.ones_like(pseudo)
    for n in range(p.shape[0]):
        for c in range(p.shape[1]):
            on = pseudo[n, c]
            if on.sum() > cap[c]:
                kth = np.sort(p[n, c][on])[::-1][int(cap[c]) - 1]
                keep[n, c] = ~(on & (p[n, c] < kth))
    return keep


def test_the_cap_keeps_each_class_s_most_probable_pixels():
    method = get_method("segpl")(TrainConfig(cap=1.5), 2)
    p = torch.rand(3, 2, 9, 7, generator=torch.Generator().manual_seed(0))
    pseudo = p > 0.3
    method.area_cap = torch.tensor([10.0, 50.0])
    keep = method.cap_mask(p, pseudo)
    expected = _expected(p.numpy(), pseudo.numpy(), np.array([10, 50]))
    assert np.array_equal(keep.numpy(), expected)
    kept = (keep & pseudo).flatten(2).sum(2)
    assert kept[:, 0].tolist() == [10, 10, 10]  # over the cap: cut to it
    assert torch.equal(kept[:, 1], pseudo[:, 1].flatten(1).sum(1))  # under it: all kept


def test_on_3_slice_stacks_the_centre_slice_decides():
    method = get_method("segpl")(TrainConfig(cap=1.5, dims=3), 1)
    method.area_cap = torch.tensor([5.0])
    p = torch.rand(2, 1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    p[:, :, 0] = 0.99  # outer slices all on: they must not count
    pseudo = p > 0.5
    keep = method.cap_mask(p, pseudo)
    assert keep.shape == (2, 1, 1, 6, 6)
    centre = _expected(p[:, :, 1].numpy(), pseudo[:, :, 1].numpy(), np.array([5]))
    assert np.array_equal(keep[:, :, 0].numpy(), centre)


def test_no_cap_no_mask():
    method = get_method("segpl")(TrainConfig(), 2)
    p = torch.rand(1, 2, 4, 4)
    assert method.cap_mask(p, p > 0.5) is None


def test_the_trainer_caps_at_the_largest_painted_area():
    image, labels = make_toy_volume()
    labelled = [5, 10, 15]
    sparse = np.zeros_like(labels)
    sparse[..., labelled] = labels[..., labelled]
    config = TrainConfig(method="segpl", dims=2, steps=2, cap=1.5, **SMALL)
    data = prepare_data(image, sparse, config, labelled=labelled)
    trainer = Trainer(config, data)
    for _ in trainer.run():
        pass
    by_hand = [
        max(int((labels[..., s] == c).sum()) for s in labelled)
        for c in range(1, data.num_classes + 1)
    ]
    assert largest_painted_area(data).tolist() == by_hand
    assert trainer.model.method.area_cap.tolist() == pytest.approx([1.5 * a for a in by_hand])
