""" "Mask now" in the dock: enabled only while a run trains; pressed, it shows the whole-volume
mask of the network as it is in the dock's own layer named after the step, replaced at each
press, with the time it took; the user's layers are never touched; a failing mask is
reported and the run goes on."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import torch
from conftest import add_toy_layers
from test_dock import quick_params

from napari_segpl.engine import snapshot as snapshot_module
from napari_segpl.gui import SegPLDock, notify
from napari_segpl.gui.result_layers import SNAPSHOT

pytestmark = pytest.mark.gui

PAINTED = [5, 10, 15]
NAME = re.compile(r"SegPL mask \(step (\d+) of 400\)")


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    """A tiny two-class volume and a SegPL run long enough to press buttons during it."""
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    add_toy_layers(viewer, (32, 28, 20), PAINTED)
    viewer.add_labels(np.zeros((32, 28, 20), np.uint8), name="SegPL mask")  # the user's own
    widget = SegPLDock(viewer)
    quick_params(widget.params)
    widget.params.method.value = "segpl"
    widget.params.dims.value = 2
    widget.params.steps.value = 400
    widget.params.patch.value = 32
    widget.seen = {"error": [], "warning": []}
    for kind, seen in widget.seen.items():
        monkeypatch.setattr(notify, f"show_{kind}", seen.append)
    widget.steps = []
    widget.state.step.connect(lambda event: widget.steps.append(event.step))
    yield widget
    widget.shutdown()


def _users(viewer) -> dict[str, np.ndarray]:
    return {
        name: np.array(viewer.layers[name].data, copy=True)
        for name in ("toy", "toy labels", "SegPL mask")
    }


def _stop_and_wait(dock, qtbot) -> None:
    dock.training.stop_button.click()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)


def test_mask_now_shows_the_step_and_leaves_the_users_layers(dock, qtbot):
    viewer, panel = dock.viewer, dock.training
    before = _users(viewer)
    assert not panel.snapshot_button.isEnabled()  # nothing trains yet
    assert dock.start_training()
    qtbot.waitUntil(lambda: len(dock.steps) >= 3, timeout=60_000)
    assert panel.snapshot_button.isEnabled()
    panel.snapshot_button.click()
    qtbot.waitUntil(lambda: dock.layers.get(SNAPSHOT) is not None, timeout=60_000)
    layer = dock.layers.get(SNAPSHOT)
    first = NAME.fullmatch(layer.name)
    assert first and int(first.group(1)) >= 3, layer.name
    assert layer.data.shape == before["toy"].shape and layer.data.dtype == np.uint8
    assert re.search(r"mask of step \d+ of 400 in \d+\.\d s", panel.snapshot_note.text())
    shown = int(first.group(1))
    qtbot.waitUntil(lambda: dock.steps[-1] > shown, timeout=60_000)  # training goes on
    panel.snapshot_button.click()  # the next press replaces it
    qtbot.waitUntil(lambda: dock.layers.get(SNAPSHOT).name != first.group(0), timeout=60_000)
    second = NAME.fullmatch(dock.layers.get(SNAPSHOT).name)
    assert second and int(second.group(1)) > shown
    assert dock.layers.get(SNAPSHOT) is layer  # the same layer, renamed
    _stop_and_wait(dock, qtbot)
    assert not panel.snapshot_button.isEnabled()
    assert not dock.seen["error"] and not dock.seen["warning"], dock.seen
    own = [x for x in viewer.layers if x.metadata.get("segpl_role") == SNAPSHOT]
    assert own == [layer]
    for name, data in before.items():  # the user's layers, "SegPL mask" too, untouched
        np.testing.assert_array_equal(viewer.layers[name].data, data)
    assert "segpl_role" not in viewer.layers["SegPL mask"].metadata


def test_a_failing_mask_is_reported_and_the_run_goes_on(dock, qtbot, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(snapshot_module, "predict_volume", broken)
    dock.params.steps.value = 40
    panel = dock.training
    assert dock.start_training()
    qtbot.waitUntil(lambda: len(dock.steps) >= 2, timeout=60_000)
    panel.snapshot_button.click()
    qtbot.waitUntil(lambda: bool(dock.seen["warning"]), timeout=60_000)
    assert "mask of step" in dock.seen["warning"][0] and "out of memory" in dock.seen["warning"][0]
    assert "training goes on" in panel.snapshot_note.text()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    assert dock.model.steps_done == 40  # the run went to its end
    assert dock.layers.get(SNAPSHOT) is None and not dock.seen["error"]


def test_automatic_masks_at_each_quarter(dock, qtbot):
    dock.params.steps.value = 12
    dock.training.auto_snapshot.setChecked(True)
    names: list[str] = []
    dock.viewer.layers.events.inserted.connect(lambda e: names.append(e.value.name))
    assert dock.start_training()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    layer = dock.layers.get(SNAPSHOT)
    assert layer is not None and layer.name == "SegPL mask (step 9 of 12)"  # 3, 6, 9: not 12
    assert names.count("SegPL mask (step 3 of 12)") == 1  # made once, then renamed


def test_closing_the_dock_during_a_mask_ends_it_at_once(dock, qtbot, monkeypatch):
    """The window closes while a mask is predicted (a big volume takes a while): the mask
    gives up at its next batch of slices and the run ends, well within the wait."""
    inside = threading.Event()
    checks: list[bool] = []  # each batch's progress check: was the stop asked by then?

    def slow(*args, progress, **kwargs):
        inside.set()
        for _ in range(600):  # 30 s unless the progress check stops it
            checks.append(control.stop.is_set())
            progress(0, 20)
            time.sleep(0.05)
        raise AssertionError("the mask was not stopped")

    monkeypatch.setattr(snapshot_module, "predict_volume", slow)
    assert dock.start_training()
    control = dock.runner.control  # the run's: shutdown sets its stop
    qtbot.waitUntil(lambda: len(dock.steps) >= 2, timeout=60_000)
    dock.training.snapshot_button.click()
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    assert not control.stop.is_set() and True not in checks
    assert dock.shutdown(timeout=20)
    # the mask gave up at its first batch after the stop was asked, not 600 batches later
    assert checks.count(True) <= 1 and len(checks) < 600
    assert control.done.is_set()
    assert not dock.state.training and dock.layers.get(SNAPSHOT) is None
    assert not dock.seen["error"] and not dock.seen["warning"], dock.seen


def test_a_mask_asked_for_and_not_made_says_so_when_the_run_ends(dock, qtbot):
    """Mask now, then Stop before the next step: the 'asked for' line stayed forever."""
    dock.training.train_button.click()
    qtbot.waitUntil(lambda: len(dock.steps) >= 2, timeout=120_000)
    dock.training.snapshot_note.setText("mask of the whole volume asked for: after this step…")
    _stop_and_wait(dock, qtbot)
    assert dock.training.snapshot_note.text() == "the run ended before the mask asked for was made"
