"""Whole-volume prediction, Monte-Carlo uncertainty and model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import (
    CheckpointError,
    TrainConfig,
    TrainedModel,
    labels_from_probabilities,
    predict_volume,
    prepare_data,
    train,
)

SMALL = {"base_channels": 4, "depth": 2, "ratio": 2, "steps": 3, "preview_every": 0}


@pytest.fixture(scope="module")
def vi_model():
    from conftest import make_toy_volume

    image, labels = make_toy_volume()
    cfg = TrainConfig(method="segpl-vi", axis=2, **SMALL)
    return train(cfg, prepare_data(image, labels, cfg)), image


def test_labels_from_probabilities_by_hand():
    prob = np.array([[0.9, 0.6, 0.2, 0.7], [0.1, 0.8, 0.3, 0.9]])
    # exclusive: most probable among those above 0.5, else background
    assert labels_from_probabilities(prob, 0.5, nested=False).tolist() == [1, 2, 0, 2]
    # nested: highest class whose channel is above 0.5
    assert labels_from_probabilities(prob, 0.5, nested=True).tolist() == [1, 2, 0, 2]
    nested = np.array([[0.9, 0.9, 0.2], [0.2, 0.7, 0.6]])
    assert labels_from_probabilities(nested, 0.5, nested=True).tolist() == [1, 2, 2]


def test_prediction_is_on_the_input_grid(vi_model):
    model, image = vi_model
    pred = predict_volume(model, image)
    assert pred.labels.shape == image.shape
    assert pred.probabilities.shape == (2, *image.shape)
    assert 0 <= pred.probabilities.min() and pred.probabilities.max() <= 1
    np.testing.assert_array_equal(
        pred.labels, labels_from_probabilities(pred.probabilities, 0.5, False)
    )
    assert pred.mc_mean is None


def test_batch_size_does_not_change_the_result(vi_model):
    model, image = vi_model
    a = predict_volume(model, image, batch_size=1)
    b = predict_volume(model, image, batch_size=7)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_other_axis_and_odd_sizes(vi_model):
    model, image = vi_model
    odd = image[:37, :29, :11]
    pred = predict_volume(model, odd, axis=0)
    assert pred.labels.shape == odd.shape


def test_monte_carlo_uncertainty(vi_model):
    model, image = vi_model
    pred = predict_volume(model, image, mc_samples=6, seed=1)
    assert pred.mc_mean.shape == pred.mc_std.shape == pred.probabilities.shape
    # 6 binary samples: the mean is a multiple of 1/6, the std is the Bernoulli one.
    np.testing.assert_allclose(pred.mc_mean * 6, np.round(pred.mc_mean * 6), atol=1e-4)
    np.testing.assert_allclose(pred.mc_std, np.sqrt(pred.mc_mean * (1 - pred.mc_mean)), atol=1e-5)
    # Voxels far from every plausible threshold are certain; near it they are not.
    p = pred.probabilities
    assert np.all(pred.mc_mean[p > 0.99] == 1) and np.all(pred.mc_mean[p < 0.01] == 0)
    again = predict_volume(model, image, mc_samples=6, seed=1)
    np.testing.assert_array_equal(pred.mc_std, again.mc_std)


def test_monte_carlo_needs_a_learnt_threshold(toy_volume):
    image, labels = toy_volume
    cfg = TrainConfig(method="segpl", axis=2, **{**SMALL, "steps": 1})
    model = train(cfg, prepare_data(image, labels, cfg))
    with pytest.raises(ValueError, match="learnt threshold"):
        predict_volume(model, image, mc_samples=3)


def test_checkpoint_round_trip_loads_weights_only(vi_model, tmp_path, monkeypatch):
    model, image = vi_model
    path = model.save(tmp_path / "sub" / "model.pt")
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = TrainedModel.load(path)
    assert seen.get("weights_only") is True
    assert loaded.config == model.config and loaded.steps_done == model.steps_done
    for a, b in zip(model.method.parameters(), loaded.method.parameters(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(
        predict_volume(model, image).probabilities, predict_volume(loaded, image).probabilities
    )


def test_bad_model_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        TrainedModel.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable model"):
        TrainedModel.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a napari-segpl model"):
        TrainedModel.load(other)
