"""SegPL-VI's threshold signals (issue 25): the default "labelled" fit reaches only the head and
leaves mu at the prior where the painted slices are saturated; the "augmented" fit (the painted
slices as the student sees unlabelled images) is removed (RESULTS.md (H2)) and refused by name,
and the moved view survives only in the benchmark's diagnostic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_batch

from napari_segpl.engine import TrainConfig, get_method
from napari_segpl.engine.config import ConfigError
from napari_segpl.engine.losses import gaussian_kl
from napari_segpl.engine.methods import Batch


def _method(signal: str, **config):
    torch.manual_seed(0)
    cfg = TrainConfig.from_preset(
        "paper", method="segpl-vi", base_channels=4, depth=2, threshold_signal=signal, **config
    )
    return get_method("segpl-vi")(cfg, 1)


class MemorisingEStep:
    """An E-step that knows the painted images by heart (0.99 on the structure, 0.01 off it, as
    a teacher that has fitted them) and reads any other image only weakly: ``off + (on - off)
    * x`` for images that are 1 on the structure and 0 off it, so the labels say to cut half
    way between ``on`` and ``off``."""

    def __init__(self, x_l: torch.Tensor, y_l: torch.Tensor, on: float, off: float) -> None:
        self.x_l, self.y_l, self.on, self.off = x_l, y_l, on, off
        self.calls: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape == self.x_l.shape and torch.equal(x, self.x_l):
            p = torch.where(self.y_l > 0, 0.99, 0.01)
        else:
            p = (self.off + (self.on - self.off) * x).clamp(0.01, 0.99)
        self.calls.append(p)
        return p


def _discs(n: int = 2, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Images 1 inside a disc (a different one each) and 0 outside, and the discs as labels."""
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    y = torch.stack(
        [((ys - 14 - 3 * i) ** 2 + (xs - 15 + 2 * i) ** 2 < (7 + i) ** 2).float() for i in range(n)]
    )[:, None]
    return y.clone(), y


def _fit_head(signal: str, on: float, off: float, steps: int = 300) -> float:
    """Train only the head (KL plus the signal's fit) on fixed features against a memorising
    E-step; mu averaged over the last half of the run (each step draws T and a view, so mu
    wanders around where the objective is least)."""
    method = _method(signal, warp=0.2, perturb=0.0)
    x, y = _discs()
    method.e_step_probabilities = MemorisingEStep(x, y, on, off)
    feats = method.model(x)[1].detach()
    logits_l = torch.logit(torch.where(y > 0, 0.99, 0.01))
    batch = Batch(x, y, None, None)
    optimiser = torch.optim.Adam(method.head.parameters(), lr=0.01)
    torch.manual_seed(1)
    trace = []
    for step in range(steps):
        optimiser.zero_grad()
        mu, sigma = method.head(feats)
        loss = gaussian_kl(mu, sigma, 0.5, 0.1).mean()
        loss = loss + method._threshold_fit(batch, logits_l, feats)
        loss.backward()
        optimiser.step()
        if step >= steps // 2 and step % 10 == 9:
            trace.append(mu.mean().item())
    return float(np.mean(trace))


def test_the_labelled_signal_leaves_mu_at_the_prior_where_the_painted_slices_are_saturated():
    # the painted slices at 0.99 / 0.01: any T fits the labels, so the prior wins; other views
    # (0.4 / 0.2) would say 0.3, but the labelled fit never sees them
    assert _fit_head("labelled", on=0.4, off=0.2) == pytest.approx(0.5, abs=0.003)


def _grads(signal: str, batch: Batch):
    method = _method(signal, ema=0.9, warp=0.2, perturb=0.2)
    torch.manual_seed(7)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    out.loss.backward()
    model = [p.grad.clone() if p.grad is not None else None for p in method.model.parameters()]
    head = [p.grad.clone() for p in method.head.parameters()]
    return method, out, model, head


def test_only_the_head_learns_from_the_labelled_term():
    batch = make_batch(n_l=2, n_u=3, size=16)
    _, _, model_kl, head_kl = _grads("kl", batch)
    method, out, model_aug, head_aug = _grads("labelled", batch)
    assert "t_fit" in out.logs
    # the term adds nothing to the network's gradient (same draws: it runs after them) ...
    for a, b in zip(model_kl, model_aug, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    # ... but changes the head's
    assert any(not torch.allclose(a, b, atol=1e-7) for a, b in zip(head_kl, head_aug, strict=True))
    assert all(p.grad is None for p in method.teacher.parameters())
    assert not out.pseudo.requires_grad

    # the term alone: no gradient reaches the network, the E-step's output carries none
    method.model.zero_grad(set_to_none=True)
    method.head.zero_grad(set_to_none=True)
    seen = []
    e_step = method.e_step_probabilities
    method.e_step_probabilities = lambda x, logits=None: seen.append(e_step(x, logits)) or seen[-1]
    logits, feats = method.model(batch.x_l)
    method._threshold_fit(batch, logits, feats).backward()
    assert seen and not any(p.requires_grad for p in seen)
    assert all(p.grad is None for p in method.model.parameters())
    assert method.head.mu.bias.grad.abs().sum() > 0  # its body's weights meet zeros at first


def test_the_diagnostics_moved_view_moves_the_labels_with_the_images_and_keeps_3d_centres():
    from benchmarks.threshold_signal import moved_view

    # the paper preset: warp and perturb 0, so the view uses the fallback strength
    method = _method("labelled", dims=3)
    x, y = _discs(n=2, size=32)
    x3, y3 = x[:, :, None].repeat(1, 1, 3, 1, 1), y[:, :, None].repeat(1, 1, 3, 1, 1)
    mask_l = torch.zeros(1, 1, 3, 1, 1)
    mask_l[:, :, 1] = 1
    method.e_step_probabilities = lambda x, logits=None: x  # the E-step sees the image itself
    torch.manual_seed(3)
    p, moved, mask = moved_view(method, Batch(x3, y3, mask_l, None))
    assert not torch.equal(moved, y3)  # moved ...
    assert not torch.equal(p, x3)  # ... and changed
    assert mask[:, :, [0, 2]].sum() == 0 and 0 < mask[:, :, 1].mean() < 1  # centre, inside
    # the labels moved with the image: the moved disc is bright, its surroundings dark
    centre = (mask[:, :, 1] > 0).expand_as(p[:, :, 1])
    p1, y1 = p[:, :, 1][centre], moved[:, :, 1][centre]
    assert p1[y1 > 0].mean() - p1[y1 == 0].mean() > 0.7


def test_a_3d_step_trains_with_the_labelled_signal():
    method = _method("labelled", dims=3, ema=0.9, warp=0.2)
    out = method.compute_loss(make_batch(dims=3, size=16), 0, lambda s: 1.0)
    out.loss.backward()
    assert 0 < out.logs["t_fit"] < 1 and torch.isfinite(out.loss)


def test_the_removed_signal_is_refused_by_name_in_configs_model_files_and_the_cli():
    from napari_segpl.cli import build_parser

    assert TrainConfig().threshold_signal == "labelled"  # the default is unchanged
    with pytest.raises(ConfigError, match="'kl' \\(paper\\) or 'labelled'"):
        TrainConfig(threshold_signal="augmented").validate()
    saved = {**TrainConfig().to_dict(), "threshold_signal": "augmented"}  # an older model file
    with pytest.raises(ConfigError, match="'augmented': a removed lever"):
        TrainConfig.from_dict(saved)
    assert TrainConfig.from_dict({**saved, "threshold_signal": "kl"}).threshold_signal == "kl"
    base = ["train", "a.nii", "b.nii", "--model", "m.pt", "--method", "segpl-vi"]
    assert build_parser().parse_args([*base, "--threshold-signal", "kl"]).threshold_signal == "kl"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--threshold-signal", "augmented"])
