"""The safeguard's mechanics: volume ratios, the decision, the supervised twin, Stop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import (
    FinishedEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    predict_volume,
    prepare_data,
    safeguard,
)
from napari_segpl.engine.holdout import withhold
from napari_segpl.engine.label_evidence import LabelEvidence
from napari_segpl.engine.safeguard import (
    GuardedTrainer,
    HeldoutEvent,
    SafeguardEvent,
    SafeguardProgress,
    decide,
    heldout_dice,
    volume_ratios,
)
from napari_segpl.engine.sampling import DataError
from napari_segpl.engine.snapshot import frozen_copy

LABELLED = [5, 10, 15]
SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "ratio": 2, "lr": 0.01, "preview_every": 0}


def test_volume_ratios_by_hand():
    semi = np.zeros((4, 4, 5), np.uint8)
    sup = np.zeros_like(semi)
    semi[:2, :2, 0] = 1  # 4 voxels of class 1 on slice 0
    semi[:, :, 1] = 1  # 16 on slice 1
    semi[0, 0, 2] = 1  # slice 2 is painted: not counted
    sup[:2, :2, 0] = 1  # 4
    sup[0, 0, 3] = 2  # 1 voxel of class 2
    ratios = volume_ratios(semi, sup, painted=[2], axis=2, areas=[2.0, 1.0])
    assert ratios == pytest.approx([(20 + 2) / (4 + 2), (0 + 1) / (1 + 1)])


def test_nested_classes_count_the_classes_inside():
    semi = np.zeros((2, 2, 2), np.uint8)
    semi[0, 0, 0], semi[1, 1, 0] = 1, 2
    ratios = volume_ratios(semi, np.zeros_like(semi), [1], 2, [1.0, 1.0], nested=True)
    assert ratios == pytest.approx([3.0, 2.0])  # class 1 holds class 2's voxel too


def test_decide_falls_back_only_when_a_class_is_lost():
    kept, reason = decide("segpl-vi", [0.5, 1.0], band=1.5)
    assert kept == "supervised" and "class 1 0.50x (class lost?)" in reason
    kept, reason = decide("segpl", [1.4, 0.7], band=1.5)
    assert kept == "segpl" and "none below 1/1.5" in reason
    kept, reason = decide("segpl", [5.2, 37.0], band=2)  # growth: kept
    assert kept == "segpl" and "none below 1/2" in reason
    kept, reason = decide("segpl-vi", [0.3, 1.9, 0.04], band=2)
    assert kept == "supervised" and "class 3 0.04x (class lost?); class 1 0.30x" in reason
    assert "class 2" not in reason and "below 1/2" in reason and "trade" not in reason
    assert decide("segpl", [0.51, 1.0], band=2)[0] == "segpl"


def test_a_fallback_says_when_the_twin_lost_a_class_too():
    # (gg): the lungs' twin gave the second lung to the first; the decision stays the twin,
    # and the reason names the twin's lost class with its own ratio (1 / 3.9)
    kept, reason = decide("segpl-vi", [0.3, 3.9, 0.04], band=2)
    assert kept == "supervised" and "class 3 0.04x (class lost?); class 1 0.30x" in reason
    assert "supervised training's volume against segpl-vi's is below 1/2 too (class 2 0.26x)" in (
        reason
    )
    assert "trade classes" in reason and "safeguard off shows segpl-vi's" in reason
    assert "trade" not in decide("segpl", [5.2, 37.0], band=2)[1]  # growth alone: kept, quiet


def test_decide_with_held_out_slices():
    better = {"segpl": [0.8, 0.7], "supervised": [0.9, 0.8]}
    kept, reason = decide("segpl", [1.0, 1.0], heldout=better)
    assert kept == "supervised" and "0.850" in reason and "0.750" in reason
    close = {"segpl": [0.845, 0.85], "supervised": [0.85, 0.85]}
    assert decide("segpl", [1.0, 1.0], heldout=close)[0] == "segpl"


def test_heldout_dice_by_hand():
    truth = np.zeros((3, 3, 4), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, :2, 1] = 1  # 2 voxels
    pred[0, :, 1] = 1  # 3 voxels, 2 right
    pred[2, 2, 3] = 2  # class 2 on a slice not scored
    truth[1, 1, 3] = 2
    assert heldout_dice(pred, truth, [1], axis=2) == pytest.approx([2 * 2 / 5, 1.0])


def _assert_same_weights(a, b) -> None:
    """Bit-identical networks (the twin against a standalone run, a run against itself)."""
    for x, y in zip(a.method.model.state_dict().values(),
                    b.method.model.state_dict().values(), strict=True):  # fmt: skip
        assert torch.equal(x, y)


def _guarded(volume, **config):
    image, labels = volume
    cfg = TrainConfig(**{**SMALL, **config})
    data = prepare_data(image, labels, cfg, labelled=LABELLED)
    return cfg, data, GuardedTrainer(cfg, data, image)


def test_twin_is_the_supervised_run_and_over_growth_keeps_it(toy_volume):
    """A constructed over-growth: after SegPL trains, its head is biased so it predicts class 2
    everywhere, over class 1. The safeguard must see class 1 lost and keep the twin, which is
    exactly the supervised run a user would get on the same slices, seed and preset."""
    cfg, data, guarded = _guarded(toy_volume, method="segpl", dims=2, steps=30)
    inner_run = guarded.trainer.run

    def run_then_grow():
        for event in inner_run():
            if isinstance(event, FinishedEvent):
                with torch.no_grad():
                    guarded.trainer.model.method.model.head.bias[1] += 20.0
            yield event

    guarded.trainer.run = run_then_grow
    events = list(guarded.run())
    progress = [e for e in events if isinstance(e, SafeguardProgress)]
    assert [e.step for e in progress] == list(range(1, 31))
    verdict = events[-2]
    assert isinstance(verdict, SafeguardEvent) and verdict.kept == "supervised"
    assert verdict.ratios[1] > 10 and verdict.ratios[0] < 0.5 and "class 1" in verdict.message
    lost, _, twin = verdict.message.partition(". But ")
    assert "class 2" not in lost and "class lost" in lost  # class 2 grew: not a loss of SegPL's
    assert "(class 2 " in twin and "trade classes" in twin  # but the twin lost it: said so
    assert verdict.message.startswith("safeguard kept supe")
    assert isinstance(events[-1], FinishedEvent) and not events[-1].stopped
    assert guarded.model is guarded.twin.model and guarded.model.config.method == "supervised"
    alone = Trainer(TrainConfig(**{**SMALL, "method": "supervised", "dims": 2, "steps": 30}), data)
    list(alone.run())
    _assert_same_weights(alone.model, guarded.model)


def test_agreeing_run_keeps_segpl_and_main_run_is_unchanged(toy_volume, monkeypatch):
    """No class lost and the image neutral (the toy's classes overlap the background's
    intensities, so the evidence sits near the margin: it is set to 0 here; its own tests are
    in test_safeguard_evidence.py): SegPL is kept, trained as it would be alone."""
    monkeypatch.setattr(safeguard, "label_evidence", lambda *a: LabelEvidence(0.0, 0))
    cfg, data, guarded = _guarded(toy_volume, method="segpl", dims=2, steps=40)
    events = list(guarded.run())
    verdict = next(e for e in events if isinstance(e, SafeguardEvent))
    assert verdict.kept == "segpl", verdict.message
    assert guarded.model is guarded.trainer.model
    alone = Trainer(cfg, data)
    list(alone.run())
    _assert_same_weights(alone.model, guarded.model)


def test_stop_skips_the_check_and_keeps_the_run(toy_volume):
    _, _, guarded = _guarded(toy_volume, method="segpl", dims=2, steps=30)
    events = []
    for event in guarded.run():
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 3:
            guarded.stop()
    assert not any(isinstance(e, (SafeguardProgress, SafeguardEvent)) for e in events)
    assert events[-1].stopped and guarded.model is guarded.trainer.model


def test_supervised_runs_are_not_checked(toy_volume):
    _, _, guarded = _guarded(toy_volume, method="supervised", dims=2, steps=3)
    events = list(guarded.run())
    assert not guarded.active and guarded.twin is None
    assert not any(isinstance(e, (SafeguardProgress, SafeguardEvent)) for e in events)


def test_withhold_zeroes_the_held_out_slices_of_a_copy():
    labels = np.zeros((3, 3, 6), np.uint8)
    labels[1, 1, [1, 3, 4]] = 1
    out, left = withhold(labels, 2, [3])
    assert left == [1, 4] and out[1, 1, 3] == 0 and labels[1, 1, 3] == 1
    assert out[1, 1, 1] == out[1, 1, 4] == 1
    with pytest.raises(DataError, match=r"\[2\] are not labelled"):
        withhold(labels, 2, [2])
    with pytest.raises(DataError, match="keep at least one"):
        withhold(labels, 2, [1, 3, 4])


def test_the_twin_drops_the_methods_own_parameters(toy_volume):
    _, _, guarded = _guarded(toy_volume, method="mean-teacher", dims=2, steps=3,
                             extra={"decay": 0.9})  # fmt: skip
    events = list(guarded.run())
    assert any(isinstance(e, SafeguardEvent) for e in events)
    assert guarded.twin.config.extra == {} and guarded.trainer.config.extra == {"decay": 0.9}


def test_held_out_slices_are_scored_while_training_without_the_check(toy_volume):
    """The validation curve: Dice on a held-out slice every few steps, equal to scoring the
    prediction of the model a Stop would leave at that moment (the averaged weights, as Mask
    now and Predict use; not the raw network); training is not changed by it."""
    image, labels = toy_volume
    cfg = TrainConfig(**{**SMALL, "method": "segpl", "dims": 2, "steps": 8})
    train_labels, labelled = withhold(labels, 2, [10], LABELLED)
    data = prepare_data(image, train_labels, cfg, labelled=labelled)
    guarded = GuardedTrainer(cfg, data, image, truth=labels, holdout=[10], check=False,
                             holdout_every=4)  # fmt: skip
    scores, raw_differs = [], []
    for event in guarded.run():
        if isinstance(event, HeldoutEvent):
            model = guarded.trainer.model
            # labelled as a Stop's end of run labels it
            stopped = frozen_copy(model, guarded.trainer.fit_decision)
            kept = predict_volume(stopped, image, device="cpu")
            pred = kept.labels
            scores.append((event.step, event.dice, heldout_dice(pred, labels, [10], 2, 2)))
            raw = predict_volume(model, image, device="cpu")  # the control: another model
            raw_differs.append(not np.allclose(raw.probabilities, kept.probabilities))
            model.method.train()
    assert [s for s, _, _ in scores] == [4, 8] and all(raw_differs)
    for _, dice, independent in scores:
        assert dice == pytest.approx(independent, abs=1e-9) and len(dice) == 2
    assert guarded.twin is None and not guarded.active
    alone = Trainer(cfg, data)
    list(alone.run())
    _assert_same_weights(alone.model, guarded.model)


@pytest.mark.parametrize("when", ["during the check", "during the run"])
def test_a_stop_before_the_verdict_says_the_model_is_unchecked(toy_volume, when):
    """Stop during the twin gave a plain "done": nothing said the kept model was unchecked."""
    _, _, guarded = _guarded(toy_volume, method="segpl", dims=2, steps=4)
    events = []
    for event in guarded.run():
        events.append(event)
        if (when == "during the check" and isinstance(event, SafeguardProgress)) or (
            when == "during the run" and isinstance(event, StepEvent) and event.step == 2
        ):
            guarded.stop()
    finished = events[-1]
    assert isinstance(finished, FinishedEvent)
    assert not any(isinstance(e, SafeguardEvent) for e in events)
    assert "segpl model is kept unchecked" in finished.note
    assert finished.stopped == (when == "during the run")
    _, _, whole = _guarded(toy_volume, method="segpl", dims=2, steps=2)
    assert list(whole.run())[-1].note == ""  # a check that ran adds nothing


def test_a_stop_during_the_checks_predictions_ends_them_between_batches(toy_volume, monkeypatch):
    """The check predicts the whole volume twice (minutes on a big CT): a Stop must end it at
    the next batch, not after both predictions, and say the model is kept unchecked."""
    from napari_segpl.engine import safeguard as safeguard_module

    _, _, guarded = _guarded(toy_volume, method="segpl", dims=2, steps=3)
    real, batches = safeguard_module.predict_volume, []

    def pressing_stop(*args, progress=None, **kwargs):
        def hook(done: int, total: int) -> None:
            batches.append(done)
            guarded.stop()  # the user presses Stop while the first batch is predicted
            progress(done, total)

        return real(*args, progress=hook, **kwargs)

    monkeypatch.setattr(safeguard_module, "predict_volume", pressing_stop)
    events = list(guarded.run())
    finished = events[-1]
    assert len(batches) == 1  # a prediction has 3 batches of 8 slices: it ended after one
    assert not any(isinstance(e, SafeguardEvent) for e in events)
    assert isinstance(finished, FinishedEvent) and not finished.stopped
    assert "segpl model is kept unchecked" in finished.note
    assert guarded.model is guarded.trainer.model


def test_held_out_dice_of_nested_classes_scores_regions():
    truth = np.array([[[0, 1, 2, 2, 1, 0]]])  # (1, 1, 6): one slice along axis 0
    pred = np.array([[[0, 1, 1, 2, 2, 0]]])
    assert heldout_dice(pred, truth, [0], 0, 2, nested=True) == [1.0, pytest.approx(0.5)]
    assert heldout_dice(pred, truth, [0], 0, 2) == [pytest.approx(0.5), pytest.approx(0.5)]
