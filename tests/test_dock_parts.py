""" "Only parts touching the paint" in the dock: Predict, Mask now and the safeguard's check keep
only the predicted parts that touch the trained-on paint when the box is on (the default), as
the CLI's export does, and every part when it is off or the model was loaded from a file.

The network's labels are replaced by a known pattern (``fake_labels``): class 1 in a column
inside the painted tube and in a look-alike column far from any paint, on every slice, so
what the box removes is known whatever a few training steps made of the network."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import set_model_labels
from test_dock_safeguard import _train
from test_dock_safeguard import dock as safeguard_dock  # noqa: F401 (the fixture, reused)

from napari_segpl.engine import painted_slices, predict_volume
from napari_segpl.engine import safeguard as safeguard_module
from napari_segpl.gui.result_layers import PREDICTION, SNAPSHOT

pytestmark = pytest.mark.gui

PAINTED = [5, 10, 15]
#: inside class 1's tube on every slice (painted 1 on slices 5, 10 and 15)
COLUMN = (slice(6, 12), slice(6, 12))
#: background on every slice of the truth, far from any paint: the look-alike
BLOB = (slice(26, 30), slice(22, 26))
#: the look-alike's voxels: 4 x 4 on each of the 20 slices
BLOB_VOXELS = 4 * 4 * 20
NOTE = f"parts not touching the paint removed: class 1: {BLOB_VOXELS} voxels"


def fake_labels(prob: np.ndarray, threshold: object, nested: bool) -> np.ndarray:
    """Class 1 in ``COLUMN`` and ``BLOB`` of every slice of the batch, whatever ``prob`` says."""
    plane = np.zeros(prob.shape[-2:], np.uint8)
    plane[COLUMN] = plane[BLOB] = 1
    return np.broadcast_to(plane, (prob.shape[1], *plane.shape)).copy()


@pytest.fixture
def dock(safeguard_dock, monkeypatch):  # noqa: F811
    """The safeguard tests' tiny volume, 6 steps, no safeguard, no TTA, known labels."""
    safeguard_dock.params.steps.value = 6
    safeguard_dock.params.safeguard.value = False
    safeguard_dock.results.tta_spin.setValue(0)
    set_model_labels(monkeypatch, lambda p, labels: fake_labels(p, None, None))
    return safeguard_dock


def _predict(dock, qtbot) -> np.ndarray:
    shown: list[object] = []
    dock.state.predicted.connect(shown.append)
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: not dock.state.busy and bool(shown), timeout=60_000)
    assert not dock.seen["error"], dock.seen["error"]
    return np.asarray(dock.layers.get(PREDICTION).data)


def _expected(dock, paint: dict | None) -> np.ndarray:
    image = np.asarray(dock.viewer.layers["toy"].data)
    return predict_volume(dock.model, image, device=dock.runner.device(), paint=paint).labels


def _users_paint(dock) -> dict[int, np.ndarray]:
    return painted_slices(np.asarray(dock.viewer.layers["toy labels"].data), PAINTED, axis=2)


def test_predict_keeps_only_the_parts_touching_the_paint(dock, qtbot):
    assert dock.results.parts_box.isChecked() and dock.state.painted_parts  # the default
    labels = np.array(dock.viewer.layers["toy labels"].data, copy=True)
    _train(dock, qtbot)
    assert sorted(dock.state.run.paint) == PAINTED  # the run's trained-on slices
    for s, painted in _users_paint(dock).items():
        np.testing.assert_array_equal(dock.state.run.paint[s], painted)
    shown = _predict(dock, qtbot)
    np.testing.assert_array_equal(shown, _expected(dock, _users_paint(dock)))
    assert (shown[BLOB] == 0).all() and (shown[COLUMN] == 1).all()  # the look-alike went
    assert NOTE in dock.results.threshold_label.text()
    assert any(NOTE in text for text in dock.seen["info"]), dock.seen["info"]
    np.testing.assert_array_equal(dock.viewer.layers["toy labels"].data, labels)


def test_with_the_box_off_predict_keeps_every_part(dock, qtbot):
    dock.results.parts_box.setChecked(False)
    assert not dock.state.painted_parts  # the state holds the choice, not only the widget
    _train(dock, qtbot)
    shown = _predict(dock, qtbot)
    np.testing.assert_array_equal(shown, _expected(dock, None))
    assert (shown[BLOB] == 1).all() and (shown[COLUMN] == 1).all()
    assert "removed" not in dock.results.threshold_label.text()
    # every part kept, but class 2, painted, is in none of them: said all the same
    warning = "class 2 painted but nowhere in the mask"
    assert warning in dock.results.threshold_label.text()
    assert any(warning in text for text in dock.seen["warning"]), dock.seen["warning"]
    dock.state.painted_parts = True  # from a script: the box follows
    assert dock.results.parts_box.isChecked()


def test_a_held_out_slice_is_no_paint(dock, qtbot):
    dock.viewer.dims.set_current_step(2, 15)
    dock.data.toggle_held_out()
    assert dock.data.held_out() == [15]
    _train(dock, qtbot)
    assert sorted(dock.state.run.paint) == [5, 10]  # its paint is the truth it is scored on
    shown = _predict(dock, qtbot)
    paint = {s: p for s, p in _users_paint(dock).items() if s != 15}
    np.testing.assert_array_equal(shown, _expected(dock, paint))
    assert (shown[BLOB] == 0).all()


def test_a_loaded_model_has_no_paint_and_keeps_every_part(dock, qtbot, tmp_path):
    _train(dock, qtbot)
    path = dock.results.save_model(tmp_path / "m.pt")
    assert dock.results.load_model(path) is not None
    assert dock.state.painted_parts and dock.state.paint_for(dock.state.image) is None
    shown = _predict(dock, qtbot)
    np.testing.assert_array_equal(shown, _expected(dock, None))
    assert (shown[BLOB] == 1).all()


def test_mask_now_applies_the_paint_while_the_box_is_on(dock, qtbot):
    dock.params.steps.value = 400
    panel = dock.training
    steps: list[int] = []
    dock.state.step.connect(lambda event: steps.append(event.step))
    assert dock.start_training()
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=60_000)
    panel.snapshot_button.click()
    qtbot.waitUntil(lambda: dock.layers.get(SNAPSHOT) is not None, timeout=60_000)
    on = np.array(dock.layers.get(SNAPSHOT).data, copy=True)
    assert (on[BLOB] == 0).all() and (on[COLUMN] == 1).all()
    assert NOTE in panel.snapshot_note.text()
    # these labels never hold class 2, painted: the note says so (and Predict's warning does)
    assert "⚠ class 2 painted but nowhere in the mask" in panel.snapshot_note.text()
    first = dock.layers.get(SNAPSHOT).name
    dock.results.parts_box.setChecked(False)  # read when the next mask is made
    panel.snapshot_button.click()
    qtbot.waitUntil(lambda: dock.layers.get(SNAPSHOT).name != first, timeout=60_000)
    off = np.asarray(dock.layers.get(SNAPSHOT).data)
    assert (off[BLOB] == 1).all() and (off[COLUMN] == 1).all()
    assert "removed" not in panel.snapshot_note.text()
    assert "⚠ class 2 painted but nowhere in the mask" in panel.snapshot_note.text()
    panel.stop_button.click()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    assert not dock.seen["error"] and not dock.seen["warning"], dock.seen
    # what Predict with the box on gives for these labels (the network is not read). Only
    # once the run has stopped: predicting with the live network from this thread would race
    # the training thread (a snapshot itself is made between two steps, on that thread).
    np.testing.assert_array_equal(on, _expected(dock, _users_paint(dock)))


@pytest.mark.parametrize("on", [True, False])
def test_the_safeguard_compares_the_masks_the_box_gives(dock, qtbot, monkeypatch, on):
    paints: list[tuple[object, bool]] = []
    real = safeguard_module.predict_volume

    def spy(*args, **kwargs):
        paints.append((kwargs.get("paint"), kwargs.get("keep_parts", True)))
        return real(*args, **kwargs)

    monkeypatch.setattr(safeguard_module, "predict_volume", spy)
    dock.params.safeguard.value = True
    dock.results.parts_box.setChecked(on)
    _train(dock, qtbot)
    (started,) = dock.events["started"]
    assert started.trainer.parts is on
    assert len(paints) == 2  # the run's model and its supervised twin
    for paint, keep_parts in paints:  # the paint always (a missing class is named either way)
        assert keep_parts is on and sorted(paint) == PAINTED


def test_a_painted_class_missing_from_the_mask_is_said(dock, qtbot, monkeypatch):
    """The network's labels made empty: classes 1 and 2, painted, are nowhere in the prediction;
    the results panel and a warning say so (the mask is still shown as predicted)."""
    _train(dock, qtbot)
    set_model_labels(monkeypatch, lambda p, labels: np.zeros(p.shape[1:], np.uint8))
    shown = _predict(dock, qtbot)
    assert not shown.any()
    warning = "classes 1, 2 painted but nowhere in the mask: the model did not learn them"
    assert f"warning: {warning}" in dock.results.threshold_label.text()
    assert any(warning in text for text in dock.seen["warning"]), dock.seen["warning"]
