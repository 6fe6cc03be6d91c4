"""Masks while a run trains ("Mask now"): the run is not changed by them, each is what a Stop
at that step and then Predict would give, and a failing or stopped one leaves the run going
(or ending) as it should."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import (
    METHODS,
    FinishedEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    painted_slices,
    predict_volume,
    prepare_data,
)
from napari_segpl.engine import snapshot as snapshot_module
from napari_segpl.engine.snapshot import SnapshotEvent, SnapshotFailed, frozen_copy
from napari_segpl.gui.session import RunControl, Started, training_events

LABELLED = [5, 10, 15]
SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "ratio": 2, "lr": 0.01, "patch": 32}


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{**SMALL, "method": "segpl-vi", "steps": 8, "preview_every": 3,
                          **overrides})  # fmt: skip


def _run(volume, config, *, ask_at=(), stop_at=None, auto=False, between=None, **kw):
    """Iterate the dock's training generator; ask for a mask after the steps in ``ask_at``,
    Stop after ``stop_at``, call ``between()`` after every step. Returns (events, trainer)."""
    image, labels = volume
    control = RunControl.new()
    if auto:
        control.snapshots.auto.set()
    events: list[object] = []
    started = None
    kw.setdefault("safeguard", False)
    kw.setdefault("retry", False)  # a few-step mask contradicts the paint: no second run here
    for event in training_events(image, labels.copy(), config, LABELLED, control, **kw):
        events.append(event)
        if isinstance(event, Started):
            started = event.trainer
        if isinstance(event, StepEvent):
            if event.step in ask_at:
                control.snapshots.now.set()
            if event.step == stop_at:
                started.stop()  # at once (the dock's Stop reaches it with the next event)
            if between is not None:
                between()
    assert control.done.is_set()
    return events, getattr(started, "trainer", started)


def _weights(trainer) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": tensor
        for name, module in trainer.model.method.modules().items()
        for key, tensor in module.state_dict().items()
    }


def _same_weights(a, b) -> bool:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("dims", [2, 3])
def test_masks_mid_run_leave_the_weights_identical(toy_volume, dims):
    """SegPL-VI draws thresholds, noise and affine maps from torch's generator every step: a
    mask that drew one number or moved the network would change the end weights."""
    torch.set_num_threads(1)
    config = _config(dims=dims)
    _, reference = _run(toy_volume, config)
    events, trainer = _run(toy_volume, config, ask_at=(2, 5), auto=True)
    shots = [e for e in events if isinstance(e, SnapshotEvent)]
    # asked after steps 2 and 5; automatic at each quarter (every 2 steps) but the last; one
    # mask serves both at step 2
    assert [s.step for s in shots] == [2, 4, 5, 6]
    assert all(s.total == 8 and s.labels.shape == toy_volume[0].shape for s in shots)
    assert all(s.name == f"SegPL mask (step {s.step} of 8)" and s.seconds > 0 for s in shots)
    assert _same_weights(trainer, reference)
    assert next(trainer.model.method.parameters()).device.type == "cpu"

    # the check sees a changed random stream: one number drawn between steps changes the run
    _, drawn = _run(toy_volume, config, between=lambda: torch.rand(1))
    assert not _same_weights(drawn, reference)


def test_the_network_trains_on_in_train_mode_after_a_mask(toy_volume):
    torch.set_num_threads(1)
    image, labels = toy_volume
    control = RunControl.new()
    config = _config(steps=4, preview_every=0)
    seen = []
    trainer = None
    for event in training_events(image, labels.copy(), config, LABELLED, control,
                                 safeguard=False, retry=False):  # fmt: skip
        if isinstance(event, Started):
            trainer = event.trainer
        if isinstance(event, StepEvent) and event.step == 2:
            control.snapshots.now.set()
        if isinstance(event, SnapshotEvent):
            method = trainer.model.method
            seen.append([m.training for m in method.modules().values()])
            seen.append(method.finished)
    assert seen == [[True] * len(trainer.model.method.modules()), False]


@pytest.mark.parametrize(
    ("method", "safeguard"),
    [("segpl", False), ("segpl", True), *[(m, False) for m in METHODS if m != "segpl"]],
)
def test_a_mask_is_what_stop_then_predict_gives(toy_volume, method, safeguard):
    """Independent of the snapshot's code: a second seeded run stopped at the same step (the
    trainer finishes its model) and ``predict_volume`` of that model, as Predict would. Every
    method (the ensemble's second member half trained); with the safeguard, its run's own
    network. The dock's default keeps only the parts touching the trained-on paint, as
    Predict then does."""
    torch.set_num_threads(1)
    steps, extra = (4, {"members": 2}) if method == "ensemble" else (8, {})
    config = _config(method=method, steps=steps, extra=extra)
    events, _ = _run(toy_volume, config, ask_at=(5,), safeguard=safeguard)
    (shot,) = [e for e in events if isinstance(e, SnapshotEvent)]
    stopped_events, stopped = _run(toy_volume, config, stop_at=5)
    assert stopped_events[-1].stopped and stopped_events[-1].steps_done == 5
    paint = painted_slices(toy_volume[1], LABELLED, axis=2)
    predicted = predict_volume(stopped.model, toy_volume[0], device="cpu", paint=paint)
    expected = predicted.labels
    assert shot.removed is not None
    assert shot.step == 5 and shot.total == 8 and shot.labels.dtype == expected.dtype
    np.testing.assert_array_equal(shot.labels, expected)
    assert expected.any()  # a real mask, not two empty ones
    assert shot.paint_note == predicted.paint_note  # the same missing-class note as Predict's


def test_a_mask_that_lost_a_painted_class_says_so(toy_volume, monkeypatch):
    """The network's labels made to hold class 1 only: the painted class 2 is in the note."""
    from napari_segpl.engine.model import TrainedModel

    assert 2 in np.unique(toy_volume[1])
    real = TrainedModel.labels  # how every prediction of a model labels its probabilities
    monkeypatch.setattr(
        TrainedModel,
        "labels",
        lambda self, p: np.where(real(self, p) == 2, 0, real(self, p)).astype(np.uint8),
    )
    events, _ = _run(toy_volume, _config(method="supervised", steps=4), ask_at=(2,))
    (shot,) = [e for e in events if isinstance(e, SnapshotEvent)]
    assert not (shot.labels == 2).any()
    named = shot.paint_note.split(" painted but nowhere in the mask")[0].split(" ", 1)[1]
    assert "2" in named.split(", ")  # (this early, class 1 may be missing too)


def test_frozen_copy_is_finished_and_apart(toy_volume):
    """Mid-run, the copy's network holds the averaged (teacher's) weights, as after a Stop;
    the live network keeps its own, and changing the copy changes nothing of the run."""
    torch.set_num_threads(1)
    image, labels = toy_volume
    config = _config(method="segpl", steps=6, preview_every=0)
    trainer = Trainer(config, prepare_data(image, labels, config, LABELLED))
    run = trainer.run()
    while getattr(next(run), "step", 0) < 3:
        pass
    live = trainer.model
    frozen = frozen_copy(live)
    assert frozen.method.finished and not live.method.finished
    assert frozen.steps_done == live.steps_done == 3
    teacher = live.method.teacher.state_dict()
    for key, value in frozen.method.model.state_dict().items():
        assert torch.equal(value, teacher[key])
    assert not all(torch.equal(v, teacher[k]) for k, v in live.method.model.state_dict().items())
    with torch.no_grad():
        next(frozen.method.parameters()).add_(1.0)
    assert not torch.equal(next(frozen.method.parameters()), next(live.method.parameters()))
    run.close()


def test_a_failing_mask_is_reported_and_training_goes_on(toy_volume, monkeypatch):
    torch.set_num_threads(1)
    config = _config(steps=6)
    _, reference = _run(toy_volume, config)

    def broken(*args, **kwargs):
        torch.rand(3)  # drawn before failing: the fork keeps the run's stream anyway
        raise MemoryError("no room for the volume")

    monkeypatch.setattr(snapshot_module, "predict_volume", broken)
    events, trainer = _run(toy_volume, config, ask_at=(3,))
    (failed,) = [e for e in events if isinstance(e, SnapshotFailed)]
    assert failed.step == 3 and failed.total == 6
    assert "MemoryError: no room for the volume" in failed.message
    finished = events[-1]
    assert isinstance(finished, FinishedEvent) and not finished.stopped
    assert finished.steps_done == 6
    assert _same_weights(trainer, reference)


def test_stop_during_a_mask_cancels_it_and_ends_the_run(toy_volume, monkeypatch):
    """The window closing (or Stop) while a mask is predicted: it ends after one batch of
    slices, nothing is shown, and the run stops there with its model."""
    torch.set_num_threads(1)
    real = snapshot_module.predict_volume
    control = RunControl.new()
    batches: list[int] = []

    def stopped_meanwhile(*args, progress, **kwargs):
        control.stop.set()

        def counting(done, total):
            batches.append(done)
            progress(done, total)

        return real(*args, progress=counting, **kwargs)

    monkeypatch.setattr(snapshot_module, "predict_volume", stopped_meanwhile)
    image, labels = toy_volume
    config = _config(steps=10)
    events = []
    for event in training_events(image, labels.copy(), config, LABELLED, control,
                                 safeguard=False, retry=False):  # fmt: skip
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 3:
            control.snapshots.now.set()
    assert batches == [8]  # one batch of 8 of the 20 slices, then cancelled
    assert not [e for e in events if isinstance(e, (SnapshotEvent, SnapshotFailed))]
    assert events[-1].stopped and events[-1].steps_done == 3
    assert control.done.is_set()
