"""The dock under what a user may do around a run: a window close they cancel changes
nothing (an accepted one still stops every worker), a compare after a stopped one still
reports, a duplicate of a compare layer and a result layer painted on are theirs (never
overwritten or hidden)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import threshold_rule
from napari._qt.qt_main_window import ConfirmCloseDialog
from qtpy.QtWidgets import QDialog
from test_dock import toy_dock

from napari_segpl.engine import StepEvent, Trainer
from napari_segpl.gui import notify
from napari_segpl.gui.compare_runner import COMPARE_ROLE, RUN_KEY
from napari_segpl.gui.result_layers import PREDICTION, PSEUDO, ROLE_KEY, role_of

pytestmark = pytest.mark.gui

PAINTED = [5, 10, 15]
SHAPE = (32, 28, 20)


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    """The toy volume, the dock in napari's window (it watches that window), quick runs."""
    widget = toy_dock(make_napari_viewer(), SHAPE, PAINTED)
    widget.params.patch.value = 32
    widget.seen = {"error": [], "warning": []}
    for kind, seen in widget.seen.items():
        monkeypatch.setattr(notify, f"show_{kind}", seen.append)
    yield widget
    widget.shutdown()


def _idle(dock) -> bool:
    return not dock.state.busy and dock.state.predict_queued is None


def _hold_step_one(monkeypatch, dock) -> threading.Event:
    """Training waits after its first step until the returned gate opens (or it is told to
    stop), so the test acts while the run is surely under way."""
    gate, real_run = threading.Event(), Trainer.run

    def held(trainer):
        control = dock.runner.control
        for event in real_run(trainer):
            yield event
            if isinstance(event, StepEvent) and event.step == 1:
                while not gate.is_set() and not control.stop.is_set():
                    time.sleep(0.01)

    monkeypatch.setattr(Trainer, "run", held)
    return gate


@pytest.mark.parametrize("cancel", ["napari's dialog", "closeEvent"])
def test_a_cancelled_close_changes_nothing(dock, qtbot, monkeypatch, cancel):
    """napari may ask before its window closes and the user may press Cancel: the run then
    goes on to its end as if nothing happened (it used to be stopped, its end never reached
    the dock, and Train stayed disabled). Cancelled in napari's own dialog, asked on a close
    from the window system (a spontaneous event: a run is a task napari asks about), or by a
    closeEvent that ignores the event."""
    window = dock.viewer.window._qt_window
    gate = _hold_step_one(monkeypatch, dock)
    finished: list = []
    dock.state.finished.connect(finished.append)
    dock.params.steps.value = 4
    assert dock.start_training()
    qtbot.waitUntil(lambda: dock.training.progress.value() >= 1, timeout=60_000)
    control = dock.runner.control
    asked: list[str] = []
    with monkeypatch.context() as m:
        if cancel == "closeEvent":
            m.setattr(type(window), "closeEvent", lambda self, event: event.ignore())
            assert window.close() is False
        else:
            dock.viewer.window.show()
            m.setattr(ConfirmCloseDialog, "exec_", lambda d: asked.append("?") or QDialog.Rejected)
            assert window.windowHandle().close() is False  # as the title bar's close button
            assert asked  # napari asked (the event still spontaneous when napari read it)
    assert not control.stop.is_set() and not control.done.is_set()
    assert dock.state.training and dock.training.stop_button.isEnabled()
    gate.set()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    assert not dock.seen["error"], dock.seen["error"]
    (event,) = finished
    assert event.steps_done == 4 and not event.stopped
    assert dock.model.steps_done == 4
    assert dock.layers.get(PSEUDO).data.any()  # the fill after the run ran too
    assert dock.training.train_button.isEnabled() and not dock.training.stop_button.isEnabled()


def test_an_accepted_close_stops_the_run_and_leaves_the_state_consistent(dock, qtbot):
    window = dock.viewer.window._qt_window
    dock.params.steps.value = 10_000
    assert dock.start_training()
    qtbot.waitUntil(lambda: dock.training.progress.value() >= 1, timeout=60_000)
    control = dock.runner.control
    assert window.close()
    assert control.stop.is_set() and control.done.is_set()  # stopped before close returned
    assert not dock.seen["warning"]  # no "did not stop in time": it stopped between steps
    assert not dock.state.busy and dock.runner.worker is None
    assert dock.training.train_button.isEnabled() and not dock.training.stop_button.isEnabled()


def _compare(dock, qtbot, methods: list[str]) -> None:
    panel = dock.compare
    for name, box in panel.method_boxes.items():
        box.setChecked(name in methods)
    panel.gammas, panel.epsilons = (0.0, 1.0), (0.0, 0.05)
    panel.hd95.setChecked(False)
    assert panel.start()
    qtbot.waitUntil(lambda: not dock.state.comparing, timeout=120_000)
    assert not dock.seen["error"], dock.seen["error"]


def _hold_out_10(dock) -> None:
    dock.viewer.dims.set_current_step(2, 10)
    dock.data.toggle_held_out()
    dock.params.steps.value = 2


def test_a_compare_after_a_stopped_one_still_reports_its_runs(dock, qtbot):
    """The compare panel's shutdown cuts its progress signals (the window was closing); a
    compare started afterwards must get them back."""
    panel = dock.compare
    _hold_out_10(dock)
    steps: list = []
    panel.runner.stepped.connect(steps.append)
    for name, box in panel.method_boxes.items():
        box.setChecked(name == "supervised")
    assert panel.start()
    qtbot.waitUntil(lambda: bool(steps), timeout=60_000)
    assert panel.shutdown(30)
    qtbot.waitUntil(lambda: not dock.state.comparing, timeout=30_000)
    _compare(dock, qtbot, ["supervised"])
    lines = panel.progress.text().splitlines()
    assert lines[0].startswith("supervised seed 0: 2 steps, Dice ") and lines[-1].startswith(
        "done: 1 run"
    )
    assert panel.table.rowCount() == 1
    assert "compare: supervised s0" in [layer.name for layer in dock.viewer.layers]


def test_a_duplicate_of_a_compare_layer_and_one_painted_on_are_the_users(dock, qtbot):
    """napari's Duplicate copies the metadata that marks a compare layer: the copy is the
    user's, never overwritten nor hidden by the next compare, whether the original was deleted
    or kept; and a compare layer the user painted on is theirs too. The next compare puts its
    predictions in new layers."""
    viewer = dock.viewer
    _hold_out_10(dock)
    _compare(dock, qtbot, ["supervised", "segpl"])
    copies, originals = {}, {}
    for method in ("supervised", "segpl"):
        original = originals[method] = viewer.layers[f"compare: {method} s0"]
        copy = viewer.add_labels(np.full(SHAPE, 7, np.uint8), metadata=dict(original.metadata),
                                 name=f"my {method}")  # fmt: skip
        copy.visible = True
        copies[method] = copy
    viewer.layers.remove(originals["supervised"])  # the user keeps only their copy
    painted = originals["segpl"]  # and paints on the other original
    painted.brush_size = 3
    painted.paint((16, 14, 3), 9)
    before = np.array(painted.data, copy=True)
    _compare(dock, qtbot, ["supervised", "segpl"])
    for method, copy in copies.items():
        assert (copy.data == 7).all() and copy.visible, method
        assert copy.name == f"my {method}"
    assert painted in viewer.layers and painted.metadata.get(RUN_KEY) is None
    np.testing.assert_array_equal(painted.data, before)
    for method in ("supervised", "segpl"):
        ours = [
            layer
            for layer in viewer.layers
            if layer.metadata.get(RUN_KEY) == f"compare: {method} s0"
            and layer.metadata.get(ROLE_KEY) == COMPARE_ROLE
            and layer is not copies[method]
        ]
        assert len(ours) == 1 and ours[0] is not originals[method], method
        assert ours[0].data.shape == SHAPE and not (ours[0].data == 7).all()


def test_a_result_layer_painted_on_is_the_users(dock, qtbot, monkeypatch):
    """A hand edit on the dock's prediction or pseudo labels makes the layer the user's: the
    next Predict and Train put their results in new layers and the edit stays."""
    threshold_rule(monkeypatch)  # a 2-step model's fitted decision: all background
    viewer = dock.viewer
    dock.params.steps.value = 2
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    dock.results.mc_spin.setValue(0)
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    painted = {}
    for role, label in ((PREDICTION, 5), (PSEUDO, 6)):
        layer = dock.layers.get(role)
        assert layer is not None
        layer.brush_size = 3
        layer.paint((16, 14, 3), label)  # as the brush does: the paint event fires
        assert (layer.data == label).any()
        painted[role] = (layer, np.array(layer.data, copy=True))
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    assert not dock.seen["error"], dock.seen["error"]
    for role, (layer, before) in painted.items():
        assert layer in viewer.layers, role
        np.testing.assert_array_equal(layer.data, before, err_msg=role)
        assert role_of(layer, dock.state.owner) is None
        fresh = dock.layers.get(role)
        assert fresh is not None and fresh is not layer and fresh.data.any(), role


def test_the_fill_of_a_run_whose_pseudo_labels_were_painted_goes_to_a_new_layer(dock):
    """Painted on while the run trains: the fill after it must neither overwrite the edit nor
    be lost."""
    image = dock.viewer.layers["toy"]
    dock.runner._image = image
    dock.state.run.axis, dock.state.run.labelled = 2, list(PAINTED)
    pseudo = dock.layers.ensure(PSEUDO, image)
    pseudo.brush_size = 3
    pseudo.paint((16, 14, 3), 4)
    before = np.array(pseudo.data, copy=True)
    dock.runner._show_fill(np.ones(SHAPE, np.uint8))
    np.testing.assert_array_equal(pseudo.data, before)
    fresh = dock.layers.get(PSEUDO)
    assert fresh is not None and fresh is not pseudo
    assert fresh.data[..., 3].all() and not fresh.data[..., PAINTED].any()
