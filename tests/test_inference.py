"""Whole-volume prediction, Monte-Carlo uncertainty and model files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from napari_segpl.engine import (
    CheckpointError,
    DataError,
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
    assert model.decision is not None  # fitted to the paint at the end of the run
    np.testing.assert_array_equal(pred.labels, model.decision.labels(pred.probabilities))
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


#: Per class: the probability p every pixel gets, and the threshold head's mu and sigma. The
#: first three have p within sigma / 2 of mu (uncertain pixels), the next three p a sigma or
#: more away, the last two p 4.5 sigmas away (certain pixels).
P_MU_SIGMA = [
    (0.50, 0.50, 0.10), (0.55, 0.50, 0.10), (0.45, 0.50, 0.10), (0.62, 0.55, 0.05),
    (0.30, 0.35, 0.05), (0.75, 0.60, 0.15), (0.95, 0.50, 0.10), (0.05, 0.50, 0.10),
]  # fmt: skip
MC_SAMPLES = 64
MC_SLICES = 16


@pytest.fixture(scope="module")
def known_vi_model() -> TrainedModel:
    """A SegPL-VI model whose outputs are known exactly: the U-net's last 1x1 convolution and
    the threshold head's two have zero weights, so every pixel of class k gets the bias
    logit(p_k), and every slice mu_k = sigmoid(bias) and sigma_k = exp(bias)."""
    p, mu, sigma = (torch.tensor(c, dtype=torch.float64) for c in zip(*P_MU_SIGMA, strict=True))
    cfg = TrainConfig(method="segpl-vi", axis=2, **SMALL)
    model = TrainedModel.new(cfg, len(P_MU_SIGMA))
    method = model.method
    with torch.no_grad():
        for conv, bias in (
            (method.model.head, torch.logit(p)),
            (method.head.mu, torch.logit(mu)),
            (method.head.log_sigma, torch.log(sigma)),
        ):
            conv.weight.zero_()
            conv.bias.copy_(bias)
    return model


def _known_prediction(model: TrainedModel, seed: int = 1):
    image = np.random.default_rng(0).normal(size=(16, 16, MC_SLICES)).astype(np.float32)
    return predict_volume(model, image, mc_samples=MC_SAMPLES, seed=seed)


def _assert_spread_where_p_is_near_mu(pred) -> None:
    """Where |p - mu| <= sigma / 2, P(p > T) lies in [0.31, 0.69]: 64 draws all alike would
    happen with probability below 1e-10 a pixel, so every such pixel has a positive spread."""
    for k, (p, mu, sigma) in enumerate(P_MU_SIGMA):
        if abs(p - mu) <= sigma / 2 + 1e-9:
            assert (pred.mc_std[k] > 0).all(), f"class {k + 1}: no spread where p is near mu"


def _assert_mean_within_its_error(pred) -> None:
    """The Monte-Carlo mean of 1(p > T), T ~ N(mu, sigma), estimates P(T < p) = Phi((p - mu) /
    sigma). T is clamped into [0.01, 0.99], which never changes 1(p > T) for p inside that
    range, so no correction is needed. Each slice draws its own T, and the pixels of a slice
    share it: the volume's mean over slices averages 16 x 64 independent draws, and must lie
    within 4 of their standard errors of Phi."""
    n = MC_SLICES * MC_SAMPLES
    for k, (p, mu, sigma) in enumerate(P_MU_SIGMA):
        q = Normal(torch.tensor(mu), torch.tensor(sigma)).cdf(torch.tensor(p)).item()
        mean = float(pred.mc_mean[k].mean())
        error = math.sqrt(q * (1 - q) / n)
        assert abs(mean - q) <= 4 * error + 1e-9, f"class {k + 1}: {mean:.4f} against {q:.4f}"


def test_monte_carlo_mean_and_spread_against_the_normal_cdf(known_vi_model):
    pred = _known_prediction(known_vi_model)
    assert pred.mc_mean.shape == pred.mc_std.shape == pred.probabilities.shape
    expected_p = np.array([p for p, _, _ in P_MU_SIGMA], np.float32)[:, None, None, None]
    np.testing.assert_allclose(pred.probabilities, np.broadcast_to(expected_p, pred.mc_mean.shape))
    _assert_spread_where_p_is_near_mu(pred)
    _assert_mean_within_its_error(pred)
    # 64 binary samples: the mean is a multiple of 1/64, the std is the Bernoulli one.
    np.testing.assert_allclose(pred.mc_mean * 64, np.round(pred.mc_mean * 64), atol=1e-4)
    np.testing.assert_allclose(pred.mc_std, np.sqrt(pred.mc_mean * (1 - pred.mc_mean)), atol=1e-5)
    # 4.5 sigmas from mu: certain (P(T > 0.95) = 3e-6 for a draw)
    assert (pred.mc_mean[6] == 1).all() and (pred.mc_mean[7] == 0).all()
    assert (pred.mc_std[6:] == 0).all()
    np.testing.assert_array_equal(pred.mc_std, _known_prediction(known_vi_model).mc_std)
    assert not np.array_equal(pred.mc_mean, _known_prediction(known_vi_model, seed=2).mc_mean)


@pytest.mark.parametrize(
    "broken",
    [
        lambda mu, sigma, generator=None, low=0.01: mu.clone(),  # sigma -> 0: T = mu
        lambda mu, sigma, generator=None, low=0.01: (
            mu + 1e-4 * sigma * torch.randn(mu.shape, generator=generator)
        ),  # sigma -> 0 in the limit
        lambda mu, sigma, generator=None, low=0.01: torch.full_like(mu, 0.5),  # a constant T
    ],
    ids=["sigma 0", "sigma tiny", "constant T"],
)
def test_the_monte_carlo_checks_catch_a_sampler_without_spread(known_vi_model, monkeypatch, broken):
    """The two checks above can fail: with a sampler that ignores sigma (or mu) each does."""
    import napari_segpl.engine.inference as inference

    monkeypatch.setattr(inference, "sample_threshold", broken)
    pred = _known_prediction(known_vi_model)
    with pytest.raises(AssertionError, match="no spread"):
        _assert_spread_where_p_is_near_mu(pred)
    with pytest.raises(AssertionError, match="against"):
        _assert_mean_within_its_error(pred)


def test_monte_carlo_needs_a_learnt_threshold(toy_volume):
    image, labels = toy_volume
    cfg = TrainConfig(method="segpl", axis=2, **{**SMALL, "steps": 1})
    model = train(cfg, prepare_data(image, labels, cfg))
    with pytest.raises(ValueError, match="learnt threshold"):
        predict_volume(model, image, mc_samples=3)


def test_nan_voxels_are_refused_not_predicted_as_an_empty_mask(vi_model):
    model, image = vi_model
    image = image.astype(np.float32)  # a copy
    image[3, 4, 2] = np.nan
    image[5, 5, 5] = np.inf
    with pytest.raises(ValueError, match="2 NaN or infinite voxels"):
        predict_volume(model, image)


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


@pytest.mark.parametrize("axis", [None, 0])
def test_slices_too_small_for_the_2d_unet_are_refused_in_the_engine_words(axis):
    """16 x 16 slices are one voxel at a depth-4 2D U-net's deepest level: torch said
    'Expected more than 1 spatial element when training' to every front end but the CLI (the
    dock's Predict among them); the engine says it itself now. 17 x 16 is 2 x 1 there: fine,
    and so is the 3D network, whose deepest level still holds the stack's 3 slices."""
    cfg = {**SMALL, "depth": 4, "patch": 64, "axis": 2}
    model = TrainedModel.new(TrainConfig(method="segpl", dims=2, **cfg), 1)
    small = np.random.default_rng(0).normal(size=(16, 16, 3)).astype(np.float32)
    if axis == 0:  # the same slices, predicted along another axis than the training one
        small = np.moveaxis(small, 2, 0)
    along = 2 if axis is None else axis
    said = f"slices of 16 x 16 voxels along axis {along} are too small for this model's 2D"
    with pytest.raises(DataError, match=said) as caught:
        predict_volume(model, small, axis=axis, device="cpu")
    assert str(caught.value).endswith("U-net (it halves them to 1/16)")
    assert "spatial element" not in str(caught.value)
    wide = np.zeros((17, 16, 3), np.float32)
    assert predict_volume(model, wide, device="cpu").labels.shape == wide.shape
    flat = TrainedModel.new(TrainConfig(method="segpl", dims=3, **cfg), 1)
    assert predict_volume(flat, small, axis=axis, device="cpu").labels.shape == small.shape
