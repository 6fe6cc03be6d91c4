"""The retry in the dock: a run whose mask contradicts the paint is made once more at the next
seed, the plots start again, and the kept run's model becomes the dock's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import add_toy_layers
from test_dock import quick_params

from napari_segpl.engine.model import TrainedModel
from napari_segpl.engine.retry import RetriedRun, RetryDecision, RetryEvent
from napari_segpl.gui import SegPLDock, notify

pytestmark = pytest.mark.gui

PAINTED = [5, 10, 15]


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    add_toy_layers(viewer, (32, 28, 20), PAINTED)
    widget = SegPLDock(viewer)
    quick_params(widget.params)
    widget.params.retry.value = True  # as a user gets it (quick_params turns it off)
    widget.params.method.value, widget.params.dims.value = "supervised", 2
    widget.params.seed.value, widget.params.patch.value = 3, 32
    widget.seen = {"error": [], "warning": [], "info": []}
    for kind, seen in widget.seen.items():
        monkeypatch.setattr(notify, f"show_{kind}", seen.append)
    widget.events = []
    widget.state.started.connect(widget.events.append)
    yield widget
    widget.shutdown()


def test_a_mask_against_the_paint_is_trained_again_and_the_kept_run_is_the_dock_s(
    dock, qtbot, monkeypatch
):
    """The first run's networks label nothing (every painted class missing): the dock says
    so, trains again at seed 4 with fresh plots, and keeps the run the decision names."""
    real = TrainedModel.labels

    def labels(self, p):
        out = real(self, p)
        return np.zeros_like(out) if self.config.seed == 3 else out

    monkeypatch.setattr(TrainedModel, "labels", labels)
    seen: list[object] = []
    real_on_event = dock.runner._on_event
    monkeypatch.setattr(dock.runner, "_on_event", lambda e: (seen.append(e), real_on_event(e)))
    assert dock.start_training()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    assert not dock.seen["error"], dock.seen["error"]
    (retry,) = [e for e in seen if isinstance(e, RetryEvent)]
    (decision,) = [e for e in seen if isinstance(e, RetryDecision)]
    assert retry.seed == 4 and "painted but nowhere in the mask" in retry.reason
    assert any("Training once more at seed 4" in w for w in dock.seen["warning"])
    assert any(decision.message in i for i in dock.seen["info"])
    run = dock.events[0].trainer
    assert isinstance(run, RetriedRun) and run.decision is decision
    assert dock.model is run.model and dock.model.config.seed == decision.kept_seed
    assert decision.fits[0] == 0.0  # nothing labelled: every painted class at Dice 0
    # the loss plot holds the second run's steps only: it started again at the retry
    assert len(dock.plots.loss_plot.steps) == 6
    assert dock.state.paint_for(dock.state.run.image()) is not None  # the kept model's paint
    assert dock.training.status.text() == f"retried: {decision.message}"
