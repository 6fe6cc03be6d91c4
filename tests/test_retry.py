"""One retry at the next seed when the exported mask contradicts the paint (engine/retry.py)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from napari_segpl.engine import FinishedEvent, StepEvent, TrainConfig, prepare_data
from napari_segpl.engine import retry as retry_module
from napari_segpl.engine.retry import RetriedRun, RetryDecision, RetryEvent

SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "lr": 0.01, "preview_every": 0, "dims": 2}
PAINTED = [3, 8, 13]


def _two_discs() -> tuple[np.ndarray, np.ndarray]:
    """Two bright discs side by side, class 1 on the left and 2 on the right, 16 slices."""
    rng = np.random.default_rng(0)
    shape = (32, 40, 16)
    x, y, _ = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    labels[(x - 16) ** 2 + (y - 10) ** 2 < 36] = 1
    labels[(x - 16) ** 2 + (y - 30) ** 2 < 36] = 2
    image = rng.normal(0.0, 1.0, shape) + 4.0 * (labels > 0)
    return (image * 40.0 + 100.0).astype(np.float32), labels


def _masks_by_seed(monkeypatch, truth: np.ndarray, swapped_seeds: set[int]) -> list[int]:
    """Each whole-volume prediction the retry makes returns the truth, with classes 1 and 2
    swapped for a model of a seed in ``swapped_seeds`` (the right disc given the left's class);
    returns the seeds predicted, in order."""
    seen: list[int] = []

    def predict(model, image, **kwargs):
        seen.append(model.config.seed)
        labels = truth.copy()
        if model.config.seed in swapped_seeds:
            labels[truth == 1], labels[truth == 2] = 2, 1
        return types.SimpleNamespace(labels=labels, removed=None, paint_note="")

    monkeypatch.setattr(retry_module, "predict_volume", predict)
    return seen


def _run(method: str = "supervised", seed: int = 5, **kwargs) -> tuple[list, RetriedRun]:
    image, labels = _two_discs()
    cfg = TrainConfig(**{**SMALL, "method": method, "steps": 4, "seed": seed})
    run = RetriedRun(cfg, prepare_data(image, labels, cfg, labelled=PAINTED), image, **kwargs)
    return list(run.run()), run


def test_a_mask_against_the_paint_is_trained_again_at_the_next_seed_and_the_better_kept(
    monkeypatch,
):
    _, truth = _two_discs()
    seen = _masks_by_seed(monkeypatch, truth, swapped_seeds={5})
    events, run = _run(keep_labels=True)
    kinds = [type(e) for e in events]
    retry = next(e for e in events if isinstance(e, RetryEvent))
    decision = next(e for e in events if isinstance(e, RetryDecision))
    assert retry.seed == 6 and "does not match your paint" in retry.reason
    assert "Dice class 1 0.00, class 2 0.00" in retry.reason
    # the first run's steps, the retry, the second run's steps from 1, the decision, the end
    at = kinds.index(RetryEvent)
    assert kinds.index(RetryDecision) == len(events) - 2 and kinds[-1] is FinishedEvent
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps == [1, 2, 3, 4, 1, 2, 3, 4] and kinds[at + 1] is StepEvent
    assert decision.kept_seed == 6 and decision.seeds == (5, 6) and decision.fits == (0.0, 1.0)
    assert seen == [5, 6]
    assert run.model.config.seed == 6 and run.trainer.config.seed == 6
    np.testing.assert_array_equal(run.kept_labels.labels, truth)  # the mask to write
    assert run.kept_labels.model is run.model


def test_a_mask_that_fits_the_paint_is_not_trained_again(monkeypatch):
    _, truth = _two_discs()
    seen = _masks_by_seed(monkeypatch, truth, swapped_seeds=set())
    events, run = _run()
    assert not any(isinstance(e, (RetryEvent, RetryDecision)) for e in events)
    assert seen == [5] and run.model.config.seed == 5
    assert run.kept_labels is None  # not kept unless asked for


def test_a_retry_no_better_keeps_the_first_run(monkeypatch):
    _, truth = _two_discs()
    _masks_by_seed(monkeypatch, truth, swapped_seeds={5, 6})
    events, run = _run()
    decision = next(e for e in events if isinstance(e, RetryDecision))
    assert decision.kept_seed == 5 and decision.fits == (0.0, 0.0)  # a tie keeps the first
    assert run.model.config.seed == 5 and "seed 5" in decision.message


def test_stop_during_the_retry_keeps_the_first_run(monkeypatch):
    _, truth = _two_discs()
    _masks_by_seed(monkeypatch, truth, swapped_seeds={5})
    image, labels = _two_discs()
    cfg = TrainConfig(**{**SMALL, "method": "supervised", "steps": 4, "seed": 5})
    run = RetriedRun(cfg, prepare_data(image, labels, cfg, labelled=PAINTED), image)
    events = []
    for event in run.run():
        events.append(event)
        if isinstance(event, RetryEvent):
            run.stop()
    assert not any(isinstance(e, RetryDecision) for e in events)
    finished = events[-1]
    assert isinstance(finished, FinishedEvent) and "stopped" in finished.note
    assert run.model.config.seed == 5


def test_without_retry_nothing_is_predicted(monkeypatch):
    _, truth = _two_discs()
    seen = _masks_by_seed(monkeypatch, truth, swapped_seeds={5})
    events, run = _run(retry=False)
    assert seen == [] and not any(isinstance(e, RetryEvent) for e in events)


@pytest.mark.parametrize("method", ["segpl"])
def test_a_safeguarded_run_is_retried_with_its_twin(monkeypatch, method):
    """With the safeguard checking, the retry is the whole run: the network and its twin at
    the next seed, the kept mask the safeguard's (its labels, not a prediction of the retry's)."""
    from napari_segpl.engine import safeguard as safeguard_module

    _, truth = _two_discs()
    seeds: list[int] = []

    def predict(model, image, **kwargs):  # the safeguard's two whole-volume predictions
        seeds.append(model.config.seed)
        labels = truth.copy()
        if model.config.seed == 5:
            labels[truth == 1], labels[truth == 2] = 2, 1
        return types.SimpleNamespace(labels=labels, removed=None, paint_note="")

    monkeypatch.setattr(safeguard_module, "predict_volume", predict)
    events, run = _run(method, check=True)
    assert [e.seed for e in events if isinstance(e, RetryEvent)] == [6]
    assert seeds == [5, 5, 6, 6]  # each run's model and twin, by the safeguard alone
    assert run.model.config.seed == 6 and run.verdict is not None
