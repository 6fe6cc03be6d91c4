"""The collapse guard on constructed collapses, and the trainer emitting its warning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import (
    CollapseWarning,
    StepEvent,
    TrainConfig,
    Trainer,
    get_method,
    prepare_data,
)
from napari_segpl.engine.guard import CollapseGuard, labelled_fractions
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.methods import Batch


def test_guard_warns_once_per_class_and_direction():
    guard = CollapseGuard([0.03, 0.2], decay=0.5, min_steps=3)
    assert guard.update(1, [0.5, 0.0]) == []  # too early to judge
    assert guard.update(2, [0.5, 0.0]) == []
    warnings = guard.update(3, [0.5, 0.0])
    assert [(w.class_index, w.direction) for w in warnings] == [(1, "everything"), (2, "nothing")]
    assert "class 1" in warnings[0].message and "everything" in warnings[0].message
    assert guard.update(4, [0.5, 0.0]) == []  # said once, not every step


def test_guard_tolerates_plausible_drift():
    guard = CollapseGuard([0.01, 0.3], decay=0.5, min_steps=1)
    # a tenth of the labelled fraction (structure absent from many unlabelled slices) and
    # a 4x rise on a tiny structure are not collapses
    for step in range(20):
        assert guard.update(step, [0.04, 0.03]) == []


def test_guard_warns_when_one_class_takes_over_another():
    # both lungs painted at 10 %: lung 1 falls to 3 % while lung 2 grows to 20 %. Neither
    # crosses the nothing/everything bands (1/50 and 5x), the takeover bands (1/2, 1.5x) do.
    guard = CollapseGuard([0.10, 0.10], decay=0.5, min_steps=2)
    assert guard.update(1, [0.03, 0.20]) == []
    warnings = guard.update(2, [0.03, 0.20])
    assert [(w.class_index, w.direction, w.other_class) for w in warnings] == [(1, "taken over", 2)]
    assert warnings[0].pseudo_fraction == pytest.approx(0.03)
    assert "taken over by class 2" in warnings[0].message
    assert guard.update(3, [0.03, 0.20]) == []  # said once


@pytest.mark.parametrize(
    "fractions",
    [
        [0.06, 0.20],  # lung 1 still above half its painted fraction
        [0.03, 0.14],  # lung 2 below 1.5 times its own
        [0.03, 0.03],  # both shrink: no class gains, so no takeover (and no collapse)
        [0.04, 0.45],  # lung 2 grows 4.5x: the foreground as a whole is 2.45x, not a swap
    ],
)
def test_no_takeover_inside_the_bands(fractions):
    guard = CollapseGuard([0.10, 0.10], decay=0.5, min_steps=1)
    for step in range(5):
        assert guard.update(step, fractions) == []


def test_takeover_names_the_class_that_grew_most():
    guard = CollapseGuard([0.1, 0.1, 0.1], min_steps=1)
    assert guard.takeovers(np.array([0.02, 0.16, 0.3])) == [(1, 3)]
    assert guard.takeovers(np.array([0.0, 0.3, 0.0])) == [(1, 2), (3, 2)]
    # an unpainted class (reference 0) is never judged, nor counted as growing
    assert CollapseGuard([0.1, 0.0]).takeovers(np.array([0.01, 0.5])) == []


def test_labelled_fractions_by_hand():
    labels = np.zeros((4, 10, 10), np.uint8)
    labels[1, :5] = 1  # half of slice 1
    labels[2, :2, :5] = 2  # a tenth of slice 2
    cfg = TrainConfig(axis=0)
    data = prepare_data(np.random.default_rng(0).normal(size=labels.shape), labels, cfg)
    assert labelled_fractions(data) == pytest.approx([0.25, 0.05])


def test_trainer_warns_on_a_constructed_collapse(toy_volume):
    """A threshold of 0.01 makes every pixel a pseudo-label foreground pixel at once."""
    image, labels = toy_volume
    cfg = TrainConfig(
        method="segpl", axis=2, steps=14, threshold=0.01, base_channels=4, depth=2, ratio=1,
        preview_every=0, burn_in=0.0, ema=0.0, gate=False,
    )  # fmt: skip
    events = list(Trainer(cfg, prepare_data(image, labels, cfg, labelled=[5, 10, 15])).run())
    warnings = [e for e in events if isinstance(e, CollapseWarning)]
    assert warnings and all(w.direction == "everything" for w in warnings)
    assert warnings[0].pseudo_fraction > 0.5


def _alphas_and_warnings(toy_volume, **overrides):
    image, labels = toy_volume
    cfg = TrainConfig(
        method="segpl", axis=2, steps=16, base_channels=4, depth=2, ratio=1, preview_every=0,
        burn_in=0.25, warmup=0.25, ema=0.0, **overrides,
    )  # fmt: skip
    events = list(Trainer(cfg, prepare_data(image, labels, cfg, labelled=[5, 10, 15])).run())
    alphas = [e.losses["alpha"] for e in events if isinstance(e, StepEvent)]
    return alphas, [e for e in events if isinstance(e, CollapseWarning)]


def test_gate_holds_implausible_pseudo_labels_back(toy_volume):
    """Threshold 0.01: every pixel is a pseudo-label foreground pixel, never plausible. With
    the gate the pseudo-label loss never starts, and the run says so once per class at the
    end; without it alpha ramps in after the 4-step burn-in and the guard warns of the
    collapse. (Pseudo labels per class channel: exclusive ones would share the pixels out.)"""
    alphas, warnings = _alphas_and_warnings(toy_volume, threshold=0.01, exclusive=False)
    assert alphas == [0.0] * 16
    gate = [w for w in warnings if w.source == "gate"]
    assert [(w.class_index, w.direction, w.step) for w in gate] == [
        (1, "everything", 16), (2, "everything", 16),
    ]  # fmt: skip
    assert gate[0].pseudo_fraction > 0.5 and "never used" in gate[0].message
    assert not [w for w in warnings if w.source == "pseudo labels"]  # alpha 0: no collapse

    alphas, warnings = _alphas_and_warnings(toy_volume, threshold=0.01, gate=False, exclusive=False)
    assert alphas[:5] == [0.0] * 5 and alphas[5] == pytest.approx(0.25) and alphas[-1] == 1.0
    assert any(w.source == "pseudo labels" for w in warnings)
    assert not any(w.source == "gate" for w in warnings)


def test_gate_opens_at_the_burn_in_when_pseudo_labels_are_plausible(monkeypatch, toy_volume):
    """With plausible pseudo labels the schedule is exactly the ungated one."""
    monkeypatch.setattr(CollapseGuard, "plausible_classes", lambda self: [True, True])
    gated, _ = _alphas_and_warnings(toy_volume)
    plain, _ = _alphas_and_warnings(toy_volume, gate=False)
    assert gated == plain
    assert gated[:5] == [0.0] * 5 and gated[5:9] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_gate_lets_each_class_in_when_it_becomes_plausible(monkeypatch, toy_volume):
    """Class 1 plausible from step 9, class 2 from step 12: the ramp starts at step 9, and the
    method is told which classes' pseudo labels to use at every step."""
    seen: list[list[bool] | None] = []
    original = get_method("segpl").compute_loss

    def spy(self, batch, step, alpha_fn):
        seen.append(None if self.pseudo_classes is None else list(self.pseudo_classes))
        return original(self, batch, step, alpha_fn)

    def plausible_classes(self):
        return [self.updates >= 9, self.updates >= 12]

    monkeypatch.setattr(get_method("segpl"), "compute_loss", spy)
    monkeypatch.setattr(CollapseGuard, "plausible_classes", plausible_classes)
    alphas, warnings = _alphas_and_warnings(toy_volume)
    assert alphas[:10] == [0.0] * 10
    assert alphas[10:14] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert seen[9] == [True, False] and seen[12] == [True, True]  # from steps 9 and 12 on
    assert seen[4] == [False, False]  # burn-in over at step 4, nothing plausible yet
    assert not [w for w in warnings if w.source == "gate"]


def test_closed_classes_are_left_out_of_the_pseudo_label_loss():
    method = get_method("segpl")(TrainConfig.from_preset("paper", base_channels=4, depth=2), 2)
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        torch.randn(2, 1, 16, 16, generator=g),
        (torch.rand(2, 2, 16, 16, generator=g) > 0.6).float(),
        None,
        torch.randn(3, 1, 16, 16, generator=g),
    )
    logits_l = torch.randn(2, 2, 16, 16, generator=g)
    logits_u = torch.randn(3, 2, 16, 16, generator=g, requires_grad=True)
    method.pseudo_classes = [True, False]
    out = method._loss(batch, logits_l, logits_u, 0.5, 1.0)
    out.loss.backward()
    assert logits_u.grad[:, 1].abs().max() == 0 and logits_u.grad[:, 0].abs().max() > 0
    pseudo = (torch.sigmoid(logits_u.detach()) > 0.5).float()
    keep = torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1)
    expected = segmentation_loss(logits_l, batch.y_l, "dice") + segmentation_loss(
        logits_u.detach(), pseudo, "dice", keep
    )
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_plausible_is_inside_every_band():
    guard = CollapseGuard([0.1, 0.1], decay=0.0)
    assert not guard.plausible() and guard.plausible_classes() == [False, False]
    guard.track([0.12, 0.08])
    assert guard.plausible()
    guard.track([0.7, 0.1])  # class 1 towards everything
    assert guard.plausible_classes() == [False, True]
    assert guard.implausible() == {1: ("everything", pytest.approx(0.7), 0.1)}
    guard.track([0.04, 0.17])  # class 1 taken over by class 2: neither is trusted
    assert guard.plausible_classes() == [False, False]
    found = guard.implausible()
    assert (found[1][0], found[2][0]) == ("taken over", "taking over")
    assert found[2][1:] == (pytest.approx(0.17), 0.1)


@pytest.mark.parametrize(
    ("direction", "text"),
    [
        ("nothing", "stayed towards nothing"),
        ("taken over", "stayed taken over by another class"),
        ("taking over", "kept claiming another class's pixels"),
    ],
)
def test_gate_messages_read_for_every_direction(direction, text):
    message = CollapseWarning(300, 2, direction, 0.003, 0.1, "gate").message
    assert message.startswith("pseudo labels of class 2 were never used: the teacher's " + text)
    assert "(0.30 % against 10.00 % painted)" in message


def test_trainer_ignores_pseudo_labels_that_are_not_used_yet(toy_volume):
    """During a supervised-only burn-in (alpha = 0) pseudo labels train nothing: no warning."""
    image, labels = toy_volume
    cfg = TrainConfig(
        method="segpl", axis=2, steps=14, threshold=0.01, base_channels=4, depth=2, ratio=1,
        preview_every=0, burn_in=0.99,
    )  # fmt: skip
    events = list(Trainer(cfg, prepare_data(image, labels, cfg, labelled=[5, 10, 15])).run())
    # (the finished model, thresholded at 0.01, is rightly warned about: checked below)
    assert not [e for e in events if isinstance(e, CollapseWarning) and e.source != "trained model"]


def test_model_check_uses_the_guard_bands_by_hand():
    guard = CollapseGuard([0.0, 0.0, 0.0])
    warnings = guard.check_model(7, [0.001, 0.02, 0.9], [0.1, 0.05, 0.1])
    # 0.001 < 0.02 * 0.1; 0.02 against 0.05 is within the bands; 0.9 > 5 * 0.1 and by > 0.05
    assert [(w.class_index, w.direction) for w in warnings] == [(1, "nothing"), (3, "everything")]
    assert all(w.source == "trained model" and w.step == 7 for w in warnings)
    assert "labelled slices" in warnings[0].message and "0.10 %" in warnings[0].message


def _constant_model(trainer: Trainer, value: float) -> None:
    """Make the network answer ``value`` for every logit: a constructed collapse."""

    def logits(x):
        shape = (x.shape[0], trainer.data.num_classes, *x.shape[2:])
        return torch.full(shape, value, device=x.device)

    trainer.model.method.logits = logits


@pytest.mark.parametrize("method", ["supervised", "segpl"])
def test_trainer_warns_when_the_trained_model_predicts_nothing(toy_volume, method):
    image, labels = toy_volume
    cfg = TrainConfig(
        method=method, axis=2, steps=2, base_channels=4, depth=2, ratio=1, preview_every=0,
    )  # fmt: skip
    trainer = Trainer(cfg, prepare_data(image, labels, cfg, labelled=[5, 10, 15]))
    _constant_model(trainer, -20.0)
    events = list(trainer.run())
    final = [e for e in events if isinstance(e, CollapseWarning) and e.source == "trained model"]
    assert [(w.class_index, w.direction, w.pseudo_fraction) for w in final] == [
        (1, "nothing", 0.0), (2, "nothing", 0.0),
    ]  # fmt: skip
    painted = labelled_fractions(trainer.data)
    assert [w.labelled_fraction for w in final] == pytest.approx(painted)
    assert events.index(final[-1]) == len(events) - 2  # just before FinishedEvent
    assert "predicts nothing of class 1" in final[0].message


def test_a_stopped_run_is_not_judged(toy_volume):
    image, labels = toy_volume
    cfg = TrainConfig(method="supervised", axis=2, steps=5, base_channels=4, depth=2)
    trainer = Trainer(cfg, prepare_data(image, labels, cfg, labelled=[5, 10, 15]))
    _constant_model(trainer, -20.0)
    events = []
    for event in trainer.run():
        events.append(event)
        trainer.stop()
    assert events[-1].stopped and not [e for e in events if isinstance(e, CollapseWarning)]


def test_running_average_by_hand():
    guard = CollapseGuard([0.1], decay=0.9)
    assert guard.track([0.1])[0] == pytest.approx(0.1)  # the first step starts the average
    assert guard.track([0.5])[0] == pytest.approx(0.9 * 0.1 + 0.1 * 0.5)  # 0.14
    assert guard.track([0.5])[0] == pytest.approx(0.9 * 0.14 + 0.1 * 0.5)  # 0.176


def test_everything_needs_five_times_and_five_points():
    guard = CollapseGuard([0.001])
    # a tiny structure at six times its painted share is 0.5 points more: not a collapse
    assert guard.judge(0.006, 0.001) is None
    assert guard.judge(0.02, 0.001) is None  # 20x but 1.9 points
    assert guard.judge(0.06, 0.001) == "everything"  # 60x and 5.9 points
    assert guard.judge(0.12, 0.03) is None  # 6.3 points but 4x
    assert guard.judge(0.16, 0.03) == "everything"
    assert guard.judge(0.00001, 0.001) == "nothing"  # below 1/50
    assert guard.judge(0.5, 0.0) is None  # an unpainted class is never judged
