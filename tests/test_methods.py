"""The method interface: registry, pseudo labels, detached E-step, the SegPL-VI head's gradient."""

from __future__ import annotations

import pytest
import torch
from conftest import make_batch as _batch

from napari_segpl.engine.config import TrainConfig
from napari_segpl.engine.losses import gaussian_kl, segmentation_loss
from napari_segpl.engine.methods import METHODS, get_method


def _method(name, classes=1, **config):
    torch.manual_seed(0)
    # The paper's equations, so the paper's recipe (the levers have their own tests)
    cfg = TrainConfig.from_preset("paper", method=name, base_channels=4, depth=2, **config)
    return get_method(name)(cfg, classes)


def test_registry_lists_the_built_in_methods():
    assert {"supervised", "segpl", "segpl-vi"} <= set(METHODS)
    for name, cls in METHODS.items():
        assert cls.name == name and cls.title
    with pytest.raises(ValueError, match="unknown method"):
        get_method("nope")


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_segpl_pseudo_label_is_the_thresholded_prediction(threshold):
    method = _method("segpl", threshold=threshold)
    batch = _batch()
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        # Instance norm makes each image's output independent of the rest of the batch.
        p_u = torch.sigmoid(method.model(batch.x_u)[0])
    torch.testing.assert_close(out.pseudo, (p_u > threshold).float())
    assert not out.pseudo.requires_grad


def test_segpl_loss_is_eq3():
    method = _method("segpl")
    batch = _batch(classes=2)
    method = _method("segpl", classes=2)
    alpha = 0.3
    out = method.compute_loss(batch, 0, lambda s: alpha)
    with torch.no_grad():
        logits_l = method.model(batch.x_l)[0]
        logits_u = method.model(batch.x_u)[0]
        pseudo = (torch.sigmoid(logits_u) > 0.5).float()
        expected = segmentation_loss(logits_l, batch.y_l, "dice") + alpha * segmentation_loss(
            logits_u, pseudo, "dice"
        )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_no_gradient_flows_through_pseudo_labels():
    """The E-step is a constant for the M-step: the gradient equals that of the same loss with
    the pseudo labels supplied from outside as plain data."""
    method = _method("segpl")
    batch = _batch()
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    out.loss.backward()
    grads = [p.grad.clone() for p in method.parameters()]
    method.model.zero_grad()
    pseudo = out.pseudo.clone()
    logits, _ = method.model(torch.cat([batch.x_l, batch.x_u]))
    loss = segmentation_loss(logits[:2], batch.y_l, "dice") + segmentation_loss(
        logits[2:], pseudo, "dice"
    )
    loss.backward()
    for g, p in zip(grads, method.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def test_segpl_uses_one_forward_pass():
    method = _method("segpl")
    calls = []
    method.model.register_forward_hook(lambda *a: calls.append(1))
    method.compute_loss(_batch(), 0, lambda s: 1.0)
    assert len(calls) == 1


def test_segpl_vi_adds_the_exact_kl_and_head_learns_only_from_it():
    method = _method("segpl-vi", prior_mu=0.4, prior_sigma=0.1)
    batch = _batch()
    torch.manual_seed(3)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        mu, sigma = method.head(method.model(batch.x_u)[1])
    kl = gaussian_kl(mu, sigma, 0.4, 0.1).mean()
    assert out.logs["kl"] == pytest.approx(kl.item(), rel=1e-5)
    assert out.loss.item() == pytest.approx(out.logs["sup"] + out.logs["unsup"] + kl.item(), 1e-5)
    out.loss.backward()
    head_total = [p.grad.clone() for p in method.head.parameters()]
    backbone_total = [p.grad.clone() for p in method.model.parameters()]
    # The head's gradient is exactly the KL's; the backbone's exactly the segmentation terms'.
    method.head.zero_grad()
    method.model.zero_grad()
    mu, sigma = method.head(method.model(batch.x_u)[1].detach())
    gaussian_kl(mu, sigma, 0.4, 0.1).mean().backward()
    for g, p in zip(head_total, method.head.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-8)
    assert all(p.grad is None or not p.grad.any() for p in method.model.parameters())
    method.model.zero_grad()
    logits, _ = method.model(torch.cat([batch.x_l, batch.x_u]))
    seg = segmentation_loss(logits[:2], batch.y_l, "dice") + segmentation_loss(
        logits[2:], out.pseudo, "dice"
    )
    seg.backward()
    for g, p in zip(backbone_total, method.model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def test_segpl_vi_threshold_is_per_image_and_class():
    method = _method("segpl-vi", classes=2)
    # three unlike images (noise, sparse dots, a ramp), so their features differ
    g = torch.Generator().manual_seed(2)
    ramp = torch.linspace(-2, 2, 32).expand(32, 32)
    x_u = torch.stack(
        [
            torch.randn(32, 32, generator=g),
            3.0 * (torch.rand(32, 32, generator=g) > 0.9),
            ramp + 0.1 * torch.randn(32, 32, generator=g),
        ]
    )[:, None]
    head = method.head
    torch.manual_seed(1)
    with torch.no_grad():  # the convolutions start at zero (mu 0.5 everywhere): make them not
        head.mu.weight.normal_(0, 0.5)
        head.log_sigma.weight.normal_(0, 0.5)
    with torch.no_grad():
        _, mu, sigma = method.threshold_distribution(x_u)
        # by hand: the 1x1 convolutions' spatial mean is the weights times the mean feature
        h = head.body(method.model(x_u)[1]).mean(dim=(2, 3))  # (3, channels)
        w_mu, w_sigma = head.mu.weight.flatten(1), head.log_sigma.weight.flatten(1)
        expected_mu = torch.sigmoid(h @ w_mu.T + head.mu.bias)
        expected_sigma = (h @ w_sigma.T + head.log_sigma.bias).clamp(-9.0, 2.0).exp()
    assert mu.shape == sigma.shape == (3, 2)
    torch.testing.assert_close(mu, expected_mu, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sigma, expected_sigma, rtol=1e-5, atol=1e-6)
    # one threshold per image and per class: no two images, and no two classes, share one
    for a in range(3):
        for b in range(a + 1, 3):
            assert (mu[a] - mu[b]).abs().min() > 1e-5 and (sigma[a] - sigma[b]).abs().min() > 1e-5
    assert (mu[:, 0] - mu[:, 1]).abs().min() > 1e-5
    assert (sigma[:, 0] - sigma[:, 1]).abs().min() > 1e-5
    # each image's threshold is its own: the same when the image is run alone
    for i in range(3):
        with torch.no_grad():
            _, mu_i, sigma_i = method.threshold_distribution(x_u[i : i + 1])
        torch.testing.assert_close(mu_i[0], mu[i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sigma_i[0], sigma[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["supervised", "segpl", "segpl-vi"])
def test_every_method_runs_in_3d(name):
    method = _method(name, dims=3)
    out = method.compute_loss(_batch(dims=3), 0, lambda s: 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())
