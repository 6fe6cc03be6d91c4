"""The safeguard in the dock: the kept model becomes the dock's and the results say which and
why; the checkbox turns the check off; held-out slices never train and get a Dice score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import add_toy_layers
from test_dock import quick_params

from napari_segpl.engine import FinishedEvent, GuardedTrainer, Trainer
from napari_segpl.gui import SegPLDock, notify
from napari_segpl.gui.data_panel import HELDOUT_KEY

pytestmark = pytest.mark.gui

PAINTED = [5, 10, 15]


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    """A tiny two-class volume with three painted slices along axis 2, and a quick SegPL run."""
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    truth = add_toy_layers(viewer, (32, 28, 20), PAINTED)
    widget = SegPLDock(viewer)
    quick_params(widget.params)
    widget.params.safeguard.value = True  # as a user gets it (quick_params turns it off)
    widget.params.method.value = "segpl"
    widget.params.dims.value = 2
    widget.params.steps.value = 12
    widget.params.patch.value = 32
    widget.truth = truth
    widget.seen = {"error": [], "warning": [], "info": []}
    for kind, seen in widget.seen.items():
        monkeypatch.setattr(notify, f"show_{kind}", seen.append)
    widget.events = {"started": [], "safeguard_step": [], "safeguarded": []}
    for name, seen in widget.events.items():
        getattr(widget.state, name).connect(seen.append)
    yield widget
    widget.shutdown()


def _train(dock, qtbot) -> None:
    assert dock.start_training()
    qtbot.waitUntil(
        lambda: not dock.state.busy and dock.state.predict_queued is None, timeout=120_000
    )
    assert not dock.seen["error"], dock.seen["error"]


def test_over_growth_keeps_supervised_and_the_dock_uses_it(dock, qtbot, monkeypatch):
    """SegPL's head is biased after its run so it predicts class 2 everywhere: the safeguard
    keeps the supervised twin, which Predict and Save then use, and the dock says so."""
    real_run = Trainer.run

    def run_then_grow(trainer):
        for event in real_run(trainer):
            if isinstance(event, FinishedEvent) and trainer.config.method == "segpl":
                with torch.no_grad():
                    trainer.model.method.model.head.bias[1] += 20.0
            yield event

    monkeypatch.setattr(Trainer, "run", run_then_grow)
    assert dock.params.safeguard.value and dock.params.safeguard.enabled  # the fixture's
    _train(dock, qtbot)
    (started,) = dock.events["started"]
    guarded = started.trainer
    assert isinstance(guarded.current, GuardedTrainer) and guarded.twin is not None
    assert dock.model is guarded.twin.model and dock.model is not guarded.trainer.model
    assert dock.model.config.method == "supervised"
    assert "supervised" in dock.results.model_label.text()
    steps = [e.step for e in dock.events["safeguard_step"]]
    assert steps == list(range(1, 13))
    assert len(dock.plots.loss_plot.steps) == 12  # the twin's steps are not the run's losses
    (verdict,) = dock.events["safeguarded"]
    assert verdict.kept == "supervised" and dock.state.safeguard is verdict
    line = dock.results.safeguard_label.text()
    assert line.startswith("Safeguard: kept supervised — ") and "class 1" in line
    assert dock.results.safeguard_label.isVisibleTo(dock)
    assert "held-out Dice" not in line  # nothing was held out
    assert any("safeguard kept supervised" in w for w in dock.seen["warning"])
    assert verdict.message in dock.training.status.text()
    # a loaded model is not the one the safeguard kept: the line goes
    dock.state.set_model(guarded.trainer.model)
    assert not dock.results.safeguard_label.isVisibleTo(dock)


def test_checkbox_off_runs_no_check(dock, qtbot):
    dock.params.safeguard.value = False
    _train(dock, qtbot)
    (started,) = dock.events["started"]
    assert type(started.trainer) is Trainer
    assert not dock.events["safeguard_step"] and not dock.events["safeguarded"]
    assert dock.model is started.trainer.model and dock.model.config.method == "segpl"
    assert not dock.results.safeguard_label.isVisibleTo(dock)
    dock.params.method.value = "supervised"
    assert not dock.params.safeguard.enabled  # supervised runs are never checked
    dock.params.method.value = "segpl"
    assert dock.params.safeguard.enabled and not dock.params.safeguard.value  # the user's "off"


def test_the_box_shows_unticked_where_no_check_runs(dock):
    form = dock.params
    assert form.safeguard.value
    form.method.value = "ensemble"
    assert not form.safeguard.enabled and not form.safeguard.value
    form.method.value = "segpl-vi"
    assert form.safeguard.enabled and form.safeguard.value


def test_held_out_slice_is_not_trained_on_and_is_scored(dock, qtbot):
    data, viewer = dock.data, dock.viewer
    labels = viewer.layers["toy labels"]
    before = np.array(labels.data, copy=True)
    viewer.dims.set_current_step(2, 10)
    assert data.hold_button.text() == "Hold out"
    data.hold_button.click()
    assert data.hold_button.text() == "Train on it"
    assert data.held_out() == [10] and data.labelled() == [5, 15]
    rows = [data.slice_list.item(i).text() for i in range(data.slice_list.count())]
    assert rows[1] == "slice 10  ·  painted, held out" and "held out" not in rows[0]
    assert data.slice_summary.text() == "3 labelled slices along axis 2, 1 held out"
    data.axis_spin.setValue(0)  # another axis has its own (empty) held-out set
    assert data.held_out() == []
    data.axis_spin.setValue(2)
    assert data.held_out() == [10] and labels.metadata[HELDOUT_KEY] == {2: [10]}
    _train(dock, qtbot)
    (started,) = dock.events["started"]
    assert started.labelled == [5, 15]
    trained_on = started.trainer.trainer.data.labels  # the slicing axis first
    assert not trained_on[10].any() and trained_on[5].any()
    np.testing.assert_array_equal(labels.data, before)  # the user's layer is untouched
    (verdict,) = dock.events["safeguarded"]
    assert set(verdict.heldout) == {"segpl", "supervised"}
    assert all(len(d) == 2 and all(0 <= x <= 1 for x in d) for d in verdict.heldout.values())
    line = dock.results.safeguard_label.text()
    assert "held-out Dice, mean (per class): segpl " in line and "; supervised " in line


def test_at_least_one_painted_slice_must_train(dock):
    for s in PAINTED:
        dock.viewer.dims.set_current_step(2, s)
        dock.data.toggle_held_out()
    assert dock.data.held_out() == PAINTED and dock.data.labelled() == []
    assert not dock.start_training()
    assert dock.seen["error"] and "Every painted slice is held out" in dock.seen["error"][-1]
    dock.data.toggle_held_out()  # slice 15 trains again
    assert dock.data.labelled() == [15] and dock.data.hold_button.text() == "Hold out"
    dock.viewer.dims.set_current_step(2, 3)
    dock.data.toggle_held_out()  # not labelled: nothing to hold out
    assert dock.data.held_out() == [5, 10] and "not labelled" in dock.seen["info"][-1]


def test_the_progress_bar_follows_the_steps_the_run_reports(dock):
    """An ensemble trains its members in one run of members x steps: the bar takes the
    total its StepEvents carry, not the form's step count."""
    from napari_segpl.engine import StepEvent

    panel = dock.training
    panel.progress.setRange(0, 10)
    panel._step(StepEvent(step=3, total=50, losses={"loss": 0.5}, lr=0.01, seconds_per_step=0.1))
    assert panel.progress.maximum() == 50 and panel.progress.value() == 3
    assert "3/50" in panel.progress.format()


def test_the_safeguard_is_on_in_a_new_form(qtbot):
    """On by default, as in segpl train (RESULTS.md (r))."""
    from napari_segpl.gui.params import ParameterForm

    form = ParameterForm()
    qtbot.addWidget(form)
    assert form.safeguard.enabled and form.safeguard.value  # segpl: it applies, ticked
    form.method.value = "supervised"
    assert not form.safeguard.enabled and not form.safeguard.value
    form.method.value = "segpl-vi"
    assert form.safeguard.enabled and form.safeguard.value


def test_an_ensembles_status_line_counts_its_members_steps(dock):
    """The bar counts every member's steps; the status line said the steps of one."""
    from napari_segpl.engine import TrainConfig, TrainedModel
    from napari_segpl.gui.session import Started

    config = TrainConfig(method="ensemble", dims=2, steps=4, base_channels=4, depth=2,
                         extra={"members": 3})  # fmt: skip
    model = TrainedModel.new(config.validate(), 2)
    dock.training._started(Started(model, [1], 3, 2, "cpu"))
    assert "3 members x 4 steps, on cpu" in dock.training.status.text()


def test_predict_after_a_safeguarded_run_pools_tta_with_the_twin(dock, qtbot):
    """After a run with the safeguard, Predict also gives the TTA std pooled over the run's two
    models (RESULTS.md (I2), (M2)), the std over both models' TTA maps, shown first whichever
    model was kept; a model set from elsewhere has no twin and shows the TTA std."""
    from napari_segpl.engine import predict_volume
    from napari_segpl.engine.uncertainty import pooled_std

    _train(dock, qtbot)
    (started,) = dock.events["started"]
    guarded, state = started.trainer, dock.state
    pair = (guarded.twin.model, guarded.trainer.model)
    kept, other = pair if dock.model is guarded.twin.model else pair[::-1]
    assert dock.model is kept and state.safeguard_partner is other and other is not kept
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: not state.busy, timeout=120_000)
    viewer, kinds = dock.viewer, dock.results.kind_combo
    assert kinds.currentData() == "tta-twin"  # the default after a safeguarded run (M2)
    assert [kinds.itemData(i) for i in range(kinds.count())] == ["entropy", "tta", "tta-twin"]
    shown = viewer.layers["uncertainty: TTA std with twin"].data
    image = np.asarray(viewer.layers["toy"].data)
    m = dock.results.tta_spin.value()
    common = {"axis": 2, "tta_samples": m, "tta_mean": True, "device": dock.runner.device()}
    a, b = (predict_volume(x, image, **common) for x in (kept, other))
    expected = pooled_std([a.tta_mean, b.tta_mean], [a.tta_std, b.tta_std]).max(axis=0)
    np.testing.assert_allclose(shown, expected, atol=1e-5)
    assert np.abs(shown - a.tta_std.max(axis=0)).max() > 1e-3  # not the kept model's alone
    state.set_model(other)  # not the model the safeguard kept: no twin
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: not state.busy, timeout=120_000)
    assert kinds.currentData() == "tta" and "uncertainty: TTA std of p" in viewer.layers
