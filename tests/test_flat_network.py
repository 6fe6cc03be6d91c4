"""The flat network (issue 26's lever): a 2D U-net reading a 3-slice stack as its channels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import TrainConfig, predict_volume, prepare_data, train
from napari_segpl.engine.config import ConfigError
from napari_segpl.engine.model import TrainedModel
from napari_segpl.engine.networks import UNet, build_unet


def test_flat_is_a_2d_unet_over_the_stack_as_channels():
    torch.manual_seed(0)
    flat = UNet(3, 1, 2, base=4, depth=2, flat=True).eval()
    plain = UNet(2, 3, 2, base=4, depth=2).eval()
    plain.load_state_dict(flat.state_dict())  # the same layers, so the same weights fit
    x = torch.randn(2, 1, 3, 16, 16)
    logits, features = flat(x)
    expected, expected_features = plain(x[:, 0])  # (N, 3, H, W): the slices as channels
    assert logits.shape == (2, 2, 3, 16, 16)
    for s in range(3):  # callers read slice 1, as in 3D; every slice holds the centre's map
        torch.testing.assert_close(logits[:, :, s], expected)
    torch.testing.assert_close(features[:, :, 0], expected_features)


def test_flat_output_depends_on_every_slice_of_the_stack():
    torch.manual_seed(1)
    net = UNet(3, 1, 1, base=4, depth=2, flat=True)
    x = torch.randn(1, 1, 3, 16, 16, requires_grad=True)
    net(x)[0][:, :, 1].sum().backward()
    per_slice = x.grad.abs().sum(dim=(0, 1, 3, 4))
    assert (per_slice > 0).all(), per_slice


def test_flat_needs_a_stack_and_a_plain_network():
    with pytest.raises(ValueError, match="dims must be 3"):
        UNet(2, 1, 1, flat=True)
    config = TrainConfig(dims=3, flat=True)
    assert config.channels == 16  # the 2D network's width, not the 3D one's 8
    assert build_unet(config, 2).flat
    assert not build_unet(TrainConfig(dims=2, flat=True), 2).flat  # 2D chosen: nothing to flatten
    for method in ("cct", "selfloop"):
        with pytest.raises(ConfigError, match="flat is not available"):
            TrainConfig(method=method, dims=3, flat=True).validate()


def test_a_flat_model_trains_saves_and_predicts_the_same_after_loading(tmp_path, toy_volume):
    image, labels = toy_volume
    config = TrainConfig(
        method="segpl", dims=3, flat=True, steps=6, base_channels=4, depth=2, preview_every=0
    )
    data = prepare_data(image, labels, config, labelled=[5, 10, 15])
    model = train(config, data)
    before = predict_volume(model, image).labels
    path = model.save(tmp_path / "flat.pt")
    loaded = TrainedModel.load(path)
    assert loaded.config.flat and loaded.method.model.flat
    np.testing.assert_array_equal(predict_volume(loaded, image).labels, before)


def test_the_flat_flag_reaches_the_configuration():
    from napari_segpl.cli import _config, build_parser

    base = ["train", "a.nii", "b.nii", "--model", "m.pt"]
    assert _config(build_parser().parse_args([*base, "--flat"]), "ct").flat
    assert not _config(build_parser().parse_args(base), "ct").flat
