"""Which threshold a prediction's labels are cut at, said on the result; and prediction lets go
of its last batch before it empties the device cache (issue 22)."""

from __future__ import annotations

import math
import weakref

import numpy as np
import pytest
import torch

from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
from napari_segpl.engine import inference as inference_module


def _constant_model(method: str, p: tuple[float, float], mu: tuple[float, float]) -> TrainedModel:
    """A tiny untrained model whose probabilities are ``p`` (per class) at every voxel and, for
    SegPL-VI, whose threshold head gives mu ``mu`` for every slice: hand-computable cuts."""
    cfg = TrainConfig(method=method, dims=2, axis=2, base_channels=4, depth=2)
    model = TrainedModel.new(cfg, 2)
    with torch.no_grad():
        model.method.model.head.weight.zero_()
        model.method.model.head.bias.copy_(torch.logit(torch.tensor(p)))
        if method == "segpl-vi":
            model.method.head.mu.weight.zero_()
            model.method.head.mu.bias.copy_(torch.logit(torch.tensor(mu)))
    return model


IMAGE = np.random.default_rng(0).normal(size=(16, 12, 5)).astype(np.float32)


@pytest.mark.parametrize(
    ("p", "mu", "fixed", "at_mu"),
    [
        # class 1 most probable, above 0.5 but below its mu 0.7: 1 at the fixed cut, 0 at mu
        # (class 2 is above its mu 0.2 but is not the most probable: exclusive classes)
        ((0.6, 0.3), (0.7, 0.2), 1, 0),
        # nothing above 0.5; class 1 above its mu 0.4
        ((0.45, 0.3), (0.4, 0.2), 0, 1),
        # class 2 most probable and above both
        ((0.2, 0.65), (0.3, 0.6), 2, 2),
    ],
)
def test_fixed_and_mu_cuts_by_hand(p, mu, fixed, at_mu):
    model = _constant_model("segpl-vi", p, mu)
    a = predict_volume(model, IMAGE, device="cpu")
    assert np.all(a.labels == fixed) and a.labels.shape == IMAGE.shape
    assert a.threshold_note == "labels: p > 0.5 (fixed)"
    assert a.mu is None
    b = predict_volume(model, IMAGE, device="cpu", cut="mu")
    assert np.all(b.labels == at_mu)
    np.testing.assert_allclose(b.probabilities, a.probabilities)  # the cut alone differs
    np.testing.assert_allclose(b.mu, np.array(mu)[:, None].repeat(5, axis=1), atol=1e-6)
    assert b.threshold_note == (
        f"labels: p > the threshold head's mu for each slice (mean {mu[0]:.2f} / {mu[1]:.2f})"
    )


def test_the_fixed_cut_is_the_configured_threshold_for_every_method():
    model = _constant_model("segpl", (0.6, 0.3), (0.5, 0.5))
    model.config.threshold = 0.65
    pred = predict_volume(model, IMAGE, device="cpu")
    assert not pred.labels.any() and pred.threshold_note == "labels: p > 0.65 (fixed)"
    with pytest.raises(ValueError, match="learnt threshold"):
        predict_volume(model, IMAGE, device="cpu", cut="mu")
    with pytest.raises(ValueError, match="cut must be one of"):
        predict_volume(model, IMAGE, device="cpu", cut="median")


def test_mu_cut_varies_with_the_slice():
    """A head whose mu follows the slice's mean intensity: each slice cut at its own mu."""
    model = _constant_model("segpl-vi", (0.5, 0.1), (0.5, 0.5))
    method = model.method

    def distribution(x):
        logits = method.model(x)[0]
        centre = torch.tensor([0.3, 0.7]).repeat(x.shape[0], 1)  # slices alternate below 0.5
        mu = torch.where(torch.arange(x.shape[0])[:, None] % 2 == 0, centre, 1 - centre)
        return logits, mu, torch.full_like(mu, 0.1)

    method.threshold_distribution = distribution
    pred = predict_volume(model, IMAGE, device="cpu", cut="mu", batch_size=1)
    # batch_size 1: every slice is image 0 of its batch, mu (0.3, 0.7); class 1 (p 0.5) is on
    assert np.all(pred.labels == 1)
    pred = predict_volume(model, IMAGE, device="cpu", cut="mu", batch_size=5)
    # one batch of 5: slices 0, 2, 4 get mu (0.3, 0.7), slices 1, 3 get (0.7, 0.3)
    expected = np.array([1, 0, 1, 0, 1])
    np.testing.assert_array_equal(pred.labels[0, 0], expected)
    assert np.all(pred.labels == expected[None, None])


@pytest.mark.parametrize("mc_samples", [0, 3])
def test_the_last_batch_is_released_before_the_cache_is_emptied(monkeypatch, mc_samples):
    model = _constant_model("segpl-vi", (0.6, 0.3), (0.5, 0.5))
    method = model.method
    seen: list[weakref.ref] = []
    real = method.threshold_distribution if mc_samples else method.logits

    def spy(x):
        out = real(x)
        seen.append(weakref.ref(x))
        for t in out if isinstance(out, tuple) else (out,):
            seen.append(weakref.ref(t))
        return out

    setattr(method, "threshold_distribution" if mc_samples else "logits", spy)
    alive_at_release = []

    def check(device):
        alive_at_release.append(sum(ref() is not None for ref in seen))

    monkeypatch.setattr(inference_module, "release_memory", check)
    predict_volume(model, IMAGE, device="cpu", mc_samples=mc_samples, batch_size=2)
    assert len(seen) == math.ceil(5 / 2) * (4 if mc_samples else 2)  # every batch was seen
    assert alive_at_release == [0]  # inputs, logits, mu and sigma of every batch: gone
