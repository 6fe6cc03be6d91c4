"""One E-step: the dock's preview and fill show the pseudo labels the training step uses
(issue 22), and the confidence band keeps pixels on both sides of any T."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import (
    FillStopped,
    PreviewEvent,
    StepEvent,
    TrainConfig,
    TrainedModel,
    Trainer,
    get_method,
    prepare_data,
)
from napari_segpl.engine.intensity import BINS, IntensityEvidence
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.methods import Batch
from napari_segpl.engine.methods import segpl_vi as segpl_vi_module
from napari_segpl.engine.methods.segpl import sure_pixels

LABELLED = [5, 10, 15]
#: No crop (patch 48 >= the toy's 48 x 40 slices) and no change of the student's view, so a
#: batch image is exactly the whole slice the preview reads
SMALL = {
    "base_channels": 4, "depth": 2, "axis": 2, "patch": 48, "batch": 1, "ratio": 1,
    "perturb": 0.0, "warp": 0.0, "mix": 0.0, "intensity": 1.0, "ema": 0.9, "preview_every": 0,
}  # fmt: skip


def _trainer(volume, **config) -> Trainer:
    image, labels = volume
    cfg = TrainConfig(**{**SMALL, **config})
    return Trainer(cfg, prepare_data(image, labels, cfg, labelled=LABELLED))


def _stack(trainer: Trainer, s: int) -> torch.Tensor:
    """Slice s (2D) or slices s-1, s, s+1 (3D) of the training volume, as a batch of one."""
    image = trainer.data.image
    if trainer.config.dims == 2:
        return torch.from_numpy(image[s][None, None].copy())
    return torch.from_numpy(image[[s - 1, s, s + 1]][None, None].copy())


def _make_teacher_and_evidence_matter(method) -> None:
    torch.manual_seed(1)
    with torch.no_grad():  # a teacher unlike the student, as after some steps
        for p in method.teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    table = torch.linspace(-3.0, 3.0, BINS).repeat(method.num_classes, 1)  # bright: foreground
    method.evidence = IntensityEvidence(torch.linspace(-2.0, 2.0, BINS + 1), table)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", ["segpl", "segpl-vi"])
def test_the_preview_shows_the_pseudo_labels_the_step_used(toy_volume, monkeypatch, name, dims):
    trainer = _trainer(toy_volume, method=name, dims=dims, threshold=0.4)
    method = trainer.model.method
    _make_teacher_and_evidence_matter(method)
    if name == "segpl-vi":
        with torch.no_grad():  # mu a function of the slice, away from 0.5 and from 0.4
            method.head.mu.weight.normal_(0.0, 0.05)
            method.head.mu.bias.fill_(-1.0)  # sigmoid(-1) = 0.27
    drawn = []

    def draw_mu(mu, sigma, generator=None):  # the step's T: its distribution's centre
        drawn.append(mu.detach().clone())
        return mu

    monkeypatch.setattr(segpl_vi_module, "sample_threshold", draw_mu)
    s = trainer.preview_slice
    event = trainer.preview(7)
    assert isinstance(event, PreviewEvent) and event.step == 7 and event.slice_index == s

    y_l = torch.from_numpy(
        np.stack([trainer.data.labels[LABELLED[0]] == k for k in (1, 2)]).astype(np.float32)
    )
    mask = None
    if dims == 3:
        y_l = y_l[:, None].repeat(1, 3, 1, 1)
        mask = torch.zeros(1, 1, 3, 1, 1)
        mask[:, :, 1] = 1
    batch = Batch(_stack(trainer, LABELLED[0]), y_l[None], mask, _stack(trainer, s))
    method.train()
    out = method.compute_loss(batch, 0, lambda step: 1.0)
    pseudo = out.pseudo[0].numpy()  # (K, h, w): the centre slice in 3D
    assert pseudo.sum(axis=0).max() <= 1  # exclusive: at most one class a pixel
    expected = pseudo[0] * 1 + pseudo[1] * 2
    np.testing.assert_array_equal(event.labels, expected)
    assert 0 < (expected > 0).mean() < 1

    # and not what the preview showed before: the student's logits cut at the fixed T
    with torch.no_grad():
        z = method.model(batch.x_u)[0] + method.evidence(batch.x_u)
        p = torch.sigmoid(z)[0, :, 1] if dims == 3 else torch.sigmoid(z)[0]
    best = p.argmax(dim=0)
    student = torch.where(p.max(dim=0).values > 0.4, best + 1, 0).numpy()
    assert (student != event.labels).any()

    if name == "segpl":
        assert event.threshold == [0.4, 0.4]
        assert event.threshold_note == "T = 0.4 (fixed)"
    else:
        with torch.no_grad():
            mu = method.head(method.model(batch.x_u)[1])[0][0]
        torch.testing.assert_close(torch.tensor(event.threshold), mu, atol=1e-5, rtol=0)
        torch.testing.assert_close(drawn[0][0], mu, atol=1e-5, rtol=0)
        assert 0.1 < min(event.threshold) and max(event.threshold) < 0.38
        a, b = (f"{v:.2f}" for v in event.threshold)
        assert event.threshold_note == f"T = head's mu for slice {s}: {a} / {b}"


@pytest.mark.parametrize("name", ["segpl", "segpl-vi"])
def test_the_fill_is_the_e_step_of_every_unlabelled_slice_on_the_original_layout(toy_volume, name):
    image, labels = toy_volume
    cfg = TrainConfig(**{**SMALL, "axis": 1, "patch": 48}, method=name, steps=2)
    trainer = Trainer(cfg, prepare_data(image, labels, cfg, labelled=[8, 20, 30]))
    for event in trainer.run():
        assert not isinstance(event, StepEvent) or trainer._running
    calls = []
    method = trainer.model.method
    passes = {"model": 0, "teacher": 0}
    for key in passes:  # after training the network holds the teacher's weights: one pass
        getattr(method, key).register_forward_hook(
            lambda *a, k=key: passes.update({k: passes[k] + 1})
        )
    volume = trainer.pseudo_label_volume(progress=lambda done, total: calls.append((done, total)))
    assert passes == {"model": 5, "teacher": 0}
    assert volume.shape == image.shape and volume.dtype == np.uint8
    assert not volume[:, [8, 20, 30]].any()  # painted slices: the user's, left alone
    assert calls[-1] == (37, 37) and len(calls) == 5  # 37 slices in batches of 8
    assert next(method.parameters()).device.type == "cpu"
    for s in (0, 21, 39):  # by hand: the teacher (the trained model now) plus the evidence
        x = torch.from_numpy(trainer.data.image[s][None, None].copy())
        with torch.no_grad():
            z = method.teacher(x)[0] + method.evidence(x)
            t = 0.5 if name == "segpl" else method.head(method.model(x)[1])[0][0, :, None, None]
        p = torch.sigmoid(z)[0]
        best = p.argmax(dim=0)
        on = torch.gather(p > t, 0, best[None])[0]
        np.testing.assert_array_equal(volume[:, s], torch.where(on, best + 1, 0).numpy())
    assert volume.any()

    with pytest.raises(FillStopped, match="after 0 of 37"):
        trainer.pseudo_label_volume(should_stop=lambda: True)
    assert next(method.parameters()).device.type == "cpu"


def test_the_fill_is_refused_while_training(toy_volume):
    trainer = _trainer(toy_volume, method="segpl", steps=3)
    run = trainer.run()
    next(run)
    with pytest.raises(RuntimeError, match="after training"):
        trainer.pseudo_label_volume()
    run.close()
    assert trainer.pseudo_label_volume().shape == toy_volume[0].shape  # and fine after it


@pytest.mark.parametrize(
    ("t", "p", "kept"),
    [
        # band 0.3 is 0.6 of the room on each side: keep p >= T + 0.6 (1 - T), p <= 0.4 T
        (0.9, [0.99, 0.95, 0.92, 0.5, 0.3, 0.01], [1, 0, 0, 0, 1, 1]),  # >= 0.96, <= 0.36
        (0.05, [0.99, 0.6, 0.1, 0.03, 0.01], [1, 0, 0, 0, 1]),  # >= 0.62, <= 0.02
        (0.5, [0.85, 0.79, 0.5, 0.19, 0.21], [1, 0, 0, 1, 0]),  # |p - 0.5| >= 0.3, as before
    ],
)
def test_the_confidence_band_is_relative_to_t_by_hand(t, p, kept):
    got = sure_pixels(torch.tensor(p), torch.tensor(t), 0.3)
    assert got.int().tolist() == kept


@pytest.mark.parametrize("t", [0.02, 0.95])
def test_the_band_keeps_both_sides_in_the_loss_at_extreme_thresholds(t):
    cfg = TrainConfig.from_preset("paper", method="segpl", base_channels=4, depth=2)
    cfg.confidence = 0.3
    method = get_method("segpl")(cfg, 1)
    p = torch.tensor([0.999, 0.97, 0.7, 0.3, 0.015, 0.001]).reshape(1, 1, 1, 6)
    logits_u = torch.logit(p)
    batch = Batch(torch.zeros(1, 1, 1, 6), torch.zeros(1, 1, 1, 6), None, torch.zeros(1, 1, 1, 6))
    threshold = torch.full((1, 1, 1, 1), t)
    out = method._loss(batch, torch.zeros(1, 1, 1, 6), logits_u, threshold, 1.0)
    if t == 0.02:  # keep p >= 0.608 and p <= 0.008
        mask = torch.tensor([1.0, 1, 1, 0, 0, 1])
    else:  # keep p >= 0.98 and p <= 0.38
        mask = torch.tensor([1.0, 0, 0, 1, 1, 1])
    pseudo = (p > t).float()
    expected = segmentation_loss(logits_u, pseudo, "dice", mask.reshape(1, 1, 1, 6))
    assert out.logs["unsup"] == pytest.approx(expected.item(), rel=1e-5)
    kept = mask.reshape(1, 1, 1, 6).bool()
    assert (pseudo.bool() & kept).any() and (~pseudo.bool() & kept).any()  # both sides


def test_a_loaded_model_makes_pseudo_labels_with_its_saved_weights(tmp_path):
    """A loaded model's teacher is a fresh copy of the untrained network: the E-step must read
    the saved (trained, averaged) weights instead."""
    model = TrainedModel.new(TrainConfig(base_channels=4, depth=2, ema=0.9), 1)
    with torch.no_grad():
        model.method.model.head.bias.fill_(3.0)  # "trained": foreground everywhere
    loaded = TrainedModel.load(model.save(tmp_path / "m.pt"))
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        p, pseudo, _ = loaded.method.pseudo_labels(x)
        own = torch.sigmoid(loaded.method.model(x)[0])
    torch.testing.assert_close(p, own)
