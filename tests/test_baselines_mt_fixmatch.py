"""Mean teacher and FixMatch: the teacher is an exact moving average, FixMatch's mask drops
unsure pixels, the CutMix box moves image and pseudo label together, no gradient reaches a
pseudo label or a teacher output, and both train, predict, save and load end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_batch, make_toy_volume

from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume, prepare_data
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.methods import Batch, get_method
from napari_segpl.engine.methods.fixmatch import confident, masked_dice_bce
from napari_segpl.engine.methods.ramps import sigmoid_rampup
from napari_segpl.engine.strong_augment import StrongAugment
from napari_segpl.engine.trainer import FinishedEvent, Trainer

SMALL = {"base_channels": 4, "depth": 2, "steps": 10, "dims": 2}


def _method(name: str, classes: int = 1, extra: dict | None = None, **config):
    torch.manual_seed(0)
    cfg = TrainConfig(method=name, **{**SMALL, **config}, extra=extra or {}).validate()
    return get_method(name)(cfg, classes)


def _batch(dims: int = 2, n_u: int = 4, classes: int = 1, size: int = 16) -> Batch:
    return make_batch(dims, 2, n_u, size, classes, seed=1)


def _grads(method) -> list[torch.Tensor]:
    return [p.grad.clone() for p in method.parameters()]


# ---------------------------------------------------------------------------- mean teacher


def test_teacher_is_an_exact_moving_average_of_the_network():
    method = _method("mean-teacher", extra={"decay": 0.6})
    optimiser = torch.optim.Adam(method.parameters(), lr=0.01)
    batch = _batch()
    # d_t = min(1 - 1 / (t + 1), decay): the true average, then the decay
    for d in [0.0, 0.5, 0.6, 0.6]:
        before = [t.detach().clone() for t in method.teacher.parameters()]
        optimiser.zero_grad()
        method.compute_loss(batch, 0, lambda s: 1.0).loss.backward()
        optimiser.step()
        method.after_step()
        pairs = zip(method.teacher.parameters(), before, method.model.parameters(), strict=True)
        for t, b, s in pairs:
            torch.testing.assert_close(t, d * b + (1 - d) * s.detach(), rtol=1e-6, atol=1e-7)
            assert t.grad is None and not t.requires_grad
    pairs = zip(method.teacher.parameters(), method.model.parameters(), strict=True)
    assert any(
        not torch.equal(t, s) for t, s in pairs
    )  # after the first step the teacher lags the network


def test_consistency_weight_is_the_sigmoid_ramp_over_a_fraction_of_the_steps():
    method = _method("mean-teacher", steps=100)
    assert method.consistency_weight(0) == pytest.approx(0.1 * math.exp(-5))
    assert method.consistency_weight(50) == pytest.approx(0.1 * math.exp(-1.25))
    assert method.consistency_weight(100) == pytest.approx(0.1)
    half = _method("mean-teacher", steps=100, extra={"rampup": 0.5, "consistency": 2.0})
    assert half.consistency_weight(50) == pytest.approx(2.0)
    assert half.consistency_weight(25) == pytest.approx(2.0 * math.exp(-1.25))
    assert sigmoid_rampup(3, 0) == 1.0


def test_teacher_sees_clipped_noise_and_the_network_clean_images():
    method = _method("mean-teacher")
    batch = _batch()
    seen = {}
    method.teacher.register_forward_pre_hook(lambda m, a: seen.setdefault("teacher", a[0]))
    method.model.register_forward_pre_hook(lambda m, a: seen.setdefault("model", a[0]))
    method.compute_loss(batch, 5, lambda s: 1.0)
    noise = seen["teacher"] - batch.x_u
    assert noise.abs().max() <= 0.2 + 1e-6 and noise.abs().max() > 0.1
    torch.testing.assert_close(seen["model"][2:], batch.x_u, rtol=0, atol=0)


def test_mean_teacher_loss_and_no_gradient_reaches_the_teacher():
    """The loss is sup + w * MSE, and its gradient equals that of the same loss with the
    teacher's probabilities supplied from outside as plain data."""
    method = _method("mean-teacher", extra={"noise": 0.0})
    batch = _batch()
    torch.manual_seed(9)
    for p in method.teacher.parameters():  # a teacher that differs from the network
        p.data.add_(0.05 * torch.randn_like(p))
    step = 7
    out = method.compute_loss(batch, step, lambda s: 1.0)
    out.loss.backward()
    grads = _grads(method)
    assert all(p.grad is None for p in method.teacher.parameters())
    method.model.zero_grad()
    with torch.no_grad():
        target = torch.sigmoid(method.teacher(batch.x_u)[0]).clone()
    w = 0.1 * math.exp(-5 * (1 - step / 10) ** 2)
    logits_l, logits_u = method.model(batch.x_l)[0], method.model(batch.x_u)[0]
    loss = segmentation_loss(logits_l, batch.y_l, "dice")
    loss = loss + w * ((torch.sigmoid(logits_u) - target) ** 2).mean()
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert out.logs["unsup"] > 0
    loss.backward()
    for g, p in zip(grads, method.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


# -------------------------------------------------------------------------------- fixmatch


def test_fixmatch_mask_drops_unsure_pixels_by_hand():
    p = torch.tensor([0.97, 0.5, 0.02]).reshape(1, 1, 1, 3)
    assert confident(p, 0.95).flatten().tolist() == [True, False, True]
    assert (p > 0.5).flatten().tolist() == [True, False, False]
    # and the unsure pixel gets no gradient from the masked loss; the sure ones do
    logits = torch.tensor([0.3, -0.2, 0.1]).reshape(1, 1, 1, 3).requires_grad_(True)
    masked_dice_bce(logits, (p > 0.5).float(), confident(p, 0.95), None).backward()
    grad = logits.grad.flatten()
    assert grad[1] == 0 and grad[0] != 0 and grad[2] != 0


@pytest.mark.parametrize("dims", [2, 3])
def test_cutmix_box_moves_image_and_pseudo_label_together(dims):
    """With only the box on, the pseudo label and the confidence of every strong-view pixel are
    those of the pixel now there: a 'network' whose probability is sigmoid(8 x)."""
    method = _method("fixmatch", dims=dims)
    x_u = _batch(dims, n_u=4).x_u
    only_box = StrongAugment(jitter_p=0, blur_p=0, noise_p=0, cutmix_p=1.0)
    torch.manual_seed(3)
    x_s, pseudo, sure = method.strong_view(x_u, torch.sigmoid(8 * x_u), only_box)
    changed = x_s != x_u
    assert changed.any(dim=(1, *range(2, x_s.ndim))).all()  # every image got a box
    torch.testing.assert_close(pseudo, (x_s > 0).float(), rtol=0, atol=0)
    torch.testing.assert_close(sure, confident(torch.sigmoid(8 * x_s), 0.95).float())
    if dims == 3:  # one box for the whole stack
        assert torch.equal(changed[:, :, 0], changed[:, :, 1])
        assert torch.equal(changed[:, :, 1], changed[:, :, 2])


def test_strong_view_changes_intensities_and_keeps_shapes():
    method = _method("fixmatch", dims=3)
    x_u = _batch(3).x_u
    torch.manual_seed(0)
    no_box = StrongAugment(jitter_p=1, blur_p=1, noise_p=1, cutmix_p=0)
    x_s, pseudo, sure = method.strong_view(x_u, torch.sigmoid(x_u), no_box)
    assert x_s.shape == x_u.shape and torch.isfinite(x_s).all()
    assert (x_s - x_u).abs().mean() > 0.05
    torch.testing.assert_close(pseudo, (x_u > 0).float())  # nothing moved: labels in place


def test_no_gradient_reaches_fixmatch_pseudo_labels():
    """The gradient equals that of the same loss with the strong view, its pseudo labels and
    its mask supplied from outside as plain data."""
    method = _method("fixmatch", extra={"tau": 0.505})
    batch = _batch()
    torch.manual_seed(5)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    out.loss.backward()
    grads = _grads(method)
    method.model.zero_grad()
    logits_l, logits_w = method.model(batch.x_l)[0], method.model(batch.x_u)[0]
    torch.manual_seed(5)  # the same strong view as in the step
    x_s, pseudo, sure = method.strong_view(batch.x_u, torch.sigmoid(logits_w).detach())
    assert not pseudo.requires_grad and not sure.requires_grad
    assert 0 < sure.mean() < 1  # some pixels kept, some dropped
    unsup = masked_dice_bce(method.model(x_s)[0], pseudo, sure, None)
    loss = 0.5 * (segmentation_loss(logits_l, batch.y_l, "dice") + unsup)
    assert out.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    assert out.logs["unsup"] > 0
    loss.backward()
    for g, p in zip(grads, method.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_masked_dice_bce_by_hand():
    # three pixels, the middle one unsure (dropped): Dice over pixels 1 and 3 (smooth 1), BCE
    # summed over them and divided by all three
    logits = torch.tensor([0.3, -0.2, 0.1]).view(1, 1, 3)
    target = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 3)
    keep = torch.tensor([1.0, 0.0, 1.0]).view(1, 1, 3)
    p1, p3 = _sigmoid(0.3), _sigmoid(0.1)
    dice = 1 - (2 * p1 + 1) / (p1 + p3 + 1 + 1)
    bce = (-math.log(p1) - math.log(1 - p3)) / 3
    got = masked_dice_bce(logits, target, keep, None)
    assert got.item() == pytest.approx(0.5 * dice + 0.5 * bce, rel=1e-6)
    # 3D stacks: only the centre slice counts (``valid``), and the BCE is over its pixels
    logits3 = torch.tensor([[2.0, -1.0], [0.5, -0.4], [1.5, 3.0]]).view(1, 1, 3, 1, 2)
    target3 = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).view(1, 1, 3, 1, 2)
    keep3 = torch.ones_like(target3)
    valid = torch.tensor([0.0, 1.0, 0.0]).view(1, 1, 3, 1, 1)
    q1, q2 = _sigmoid(0.5), _sigmoid(-0.4)  # the centre slice's two pixels, labels 1 and 0
    dice3 = 1 - (2 * q1 + 1) / (q1 + q2 + 1 + 1)
    bce3 = (-math.log(q1) - math.log(1 - q2)) / 2
    got3 = masked_dice_bce(logits3, target3, keep3, valid)
    assert got3.item() == pytest.approx(0.5 * dice3 + 0.5 * bce3, rel=1e-6)


@pytest.mark.parametrize("name", ["mean-teacher", "fixmatch"])
def test_runs_in_3d(name):
    method = _method(name, classes=2, dims=3, extra={"tau": 0.5} if name == "fixmatch" else None)
    out = method.compute_loss(_batch(3, classes=2), 9, lambda s: 1.0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.logs["unsup"] > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.parameters())


def test_mean_teacher_consistency_in_3d_is_the_centre_slice_only():
    """The consistency of 3-slice stacks is the MSE of the centre slices' probabilities: the
    outer slices, which no label supervises and nothing predicts, do not count."""
    method = _method("mean-teacher", dims=3, extra={"noise": 0.0})
    batch = _batch(3)
    torch.manual_seed(9)
    with torch.no_grad():  # a teacher that differs from the network
        for p in method.teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    out = method.compute_loss(batch, 7, lambda s: 1.0)
    with torch.no_grad():
        student = torch.sigmoid(method.model(batch.x_u)[0])
        teacher = torch.sigmoid(method.teacher(batch.x_u)[0])
    squared = (student - teacher) ** 2  # (N, C, 3, H, W)
    centre, every = squared[:, :, 1].mean().item(), squared.mean().item()
    assert out.logs["unsup"] == pytest.approx(centre, rel=1e-5)
    assert abs(centre - every) > 1e-3 * centre  # so the two could not be confused
    w = 0.1 * math.exp(-5 * (1 - 7 / 10) ** 2)
    sup = segmentation_loss(method.model(batch.x_l)[0], batch.y_l, "dice", batch.mask_l)
    assert out.loss.item() == pytest.approx(sup.item() + w * centre, rel=1e-5)


def test_fixmatch_in_3d_trains_the_centre_slice_only(monkeypatch):
    """The strong view's loss of 3-slice stacks counts the centre slice's pixels only (its
    weights are 0 on the outer slices, though every pixel there is confident), and the
    confident fraction logged is the centre slice's."""
    import napari_segpl.engine.methods.fixmatch as fixmatch

    calls = []

    def spy(logits, target, keep, valid):
        calls.append((logits.detach(), target, keep, valid))
        return masked_dice_bce(logits, target, keep, valid)

    monkeypatch.setattr(fixmatch, "masked_dice_bce", spy)
    method = _method("fixmatch", dims=3, extra={"tau": 0.5})  # tau 0.5: every pixel is sure
    batch = _batch(3)
    torch.manual_seed(2)
    out = method.compute_loss(batch, 0, lambda s: 1.0)
    assert len(calls) == 1
    logits, target, keep, valid = calls[0]
    assert logits.shape == target.shape == keep.shape == batch.x_u.shape
    assert (keep == 1).all()  # confident everywhere, outer slices included
    assert valid is not None  # 3D: which slices count
    weight = (keep * valid).expand_as(keep)  # what each pixel counts for
    assert (weight[:, :, [0, 2]] == 0).all() and (weight[:, :, 1] == 1).all()
    # by hand on the centre slice: Dice over the batch (smooth 1), BCE over its pixels
    p, y = torch.sigmoid(logits[:, :, 1]), target[:, :, 1]
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    bce = F.binary_cross_entropy_with_logits(logits[:, :, 1], y)
    assert out.logs["unsup"] == pytest.approx(0.5 * dice.item() + 0.5 * bce.item(), rel=1e-5)
    q, z = torch.sigmoid(logits), target  # every slice: another value
    every = 0.5 * (1 - (2 * (q * z).sum() + 1) / (q.sum() + z.sum() + 1))
    every = every + 0.5 * F.binary_cross_entropy_with_logits(logits, z)
    assert abs(out.logs["unsup"] - every.item()) > 1e-4
    # the logged confident fraction: the weak view's centre slice, by hand
    method2 = _method("fixmatch", dims=3, extra={"tau": 0.9})
    out2 = method2.compute_loss(batch, 0, lambda s: 1.0)
    with torch.no_grad():
        p_w = torch.sigmoid(method2.model(batch.x_u)[0])
    sure = torch.maximum(p_w, 1 - p_w) >= 0.9
    assert out2.logs["confident"] == pytest.approx(sure[:, :, 1].float().mean().item(), rel=1e-6)
    assert sure[:, :, 1].float().mean() != sure.float().mean()


# ------------------------------------------------------------------------------ end to end


@pytest.mark.parametrize(("name", "ema"), [("mean-teacher", 0.99), ("fixmatch", 0.0)])
def test_trains_predicts_saves_and_loads(tmp_path, name, ema):
    image, labels = make_toy_volume((32, 28, 12))
    cfg = TrainConfig(method=name, axis=2, base_channels=4, depth=2, steps=6, patch=32,
                      ratio=2, preview_every=3, ema=ema)  # fmt: skip
    trainer = Trainer(cfg, prepare_data(image, labels, cfg, labelled=[3, 8]))
    initial = [p.detach().clone() for p in trainer.model.method.model.parameters()]
    events = list(trainer.run())
    finished = events[-1]
    assert isinstance(finished, FinishedEvent) and finished.steps_done == 6
    assert all(math.isfinite(h["loss"]) and "unsup" in h for h in finished.history)
    trained = list(trainer.model.method.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(initial, trained, strict=True))
    pred = predict_volume(trainer.model, image, device="cpu")
    assert pred.labels.shape == image.shape
    path = trainer.model.save(tmp_path / f"{name}.pt")
    again = predict_volume(TrainedModel.load(path), image, device="cpu")
    np.testing.assert_array_equal(pred.labels, again.labels)
    np.testing.assert_array_equal(pred.probabilities, again.probabilities)
