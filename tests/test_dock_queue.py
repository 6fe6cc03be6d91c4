"""After a run, the pseudo-label fill comes from the E-step training used
(``Trainer.pseudo_label_volume``), Predict pressed during the fill is queued rather than
refused, and the dock says which threshold the preview and the prediction were cut at."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from test_dock import quick_params

from napari_segpl.engine import Prediction, PreviewEvent, Trainer
from napari_segpl.gui import SegPLDock, notify
from napari_segpl.gui.result_layers import PREDICTION, PSEUDO

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    widget = SegPLDock(viewer)
    quick_params(widget.params)
    widget.errors = []
    monkeypatch.setattr(notify, "show_error", widget.errors.append)
    yield widget
    widget.shutdown()


def test_predict_during_the_fill_is_queued_and_the_fill_is_the_e_step(dock, qtbot, monkeypatch):
    gate, fills = threading.Event(), []
    real_fill = Trainer.pseudo_label_volume

    def gated_fill(trainer, progress=None, should_stop=None, **kwargs):
        assert gate.wait(60), "the test never opened the gate"
        labels = real_fill(trainer, progress=progress, should_stop=should_stop, **kwargs)
        fills.append(np.array(labels, copy=True))
        return labels

    monkeypatch.setattr(Trainer, "pseudo_label_volume", gated_fill)
    dock.params.method.value = "segpl-vi"
    dock.params.steps.value = 2
    assert dock.start_training()
    qtbot.waitUntil(lambda: dock.state.filling, timeout=120_000)
    assert dock.results.predict_button.isEnabled()  # pressing it queues
    assert dock.start_prediction()  # was refused as "busy"
    assert "queued" in dock.training.progress.format()
    assert dock.layers.get(PREDICTION) is None  # not before the fill ends
    gate.set()
    qtbot.waitUntil(
        lambda: not dock.state.busy and dock.state.predict_queued is None, timeout=120_000
    )
    assert not dock.errors
    assert len(fills) == 1  # the engine's E-step filled the layer, once
    pseudo = dock.layers.get(PSEUDO).data
    expected = fills[0].copy()
    expected[..., [13, 20, 26]] = 0  # the painted slices keep no pseudo labels
    np.testing.assert_array_equal(pseudo, expected)
    prediction = dock.layers.get(PREDICTION)
    assert prediction is not None and prediction.data.shape == pseudo.shape
    assert dock.training.progress.format() == "prediction ready"


def _numbers(note: str) -> list[float]:
    """The decimal numbers a note names, in order."""
    return [float(v) for v in re.findall(r"\d+\.\d+|\d+", note)]


def _cut_by_hand(prob: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """Exclusive classes: foreground where the most probable class is above its threshold."""
    t = np.broadcast_to(np.reshape(threshold, (-1,) + (1,) * (prob.ndim - 1)), prob.shape)
    winner = prob.argmax(axis=0)[None]
    return np.take_along_axis(prob, winner, 0)[0] > np.take_along_axis(t, winner, 0)[0]


def test_preview_and_prediction_say_which_threshold_they_show(dock, qtbot):
    events: list[PreviewEvent] = []
    predictions: list[Prediction] = []
    dock.state.preview.connect(events.append)
    dock.state.predicted.connect(predictions.append)
    dock.params.method.value = "segpl-vi"
    dock.params.steps.value = 4
    dock.viewer.dims.set_current_step(2, 17)
    assert dock.start_training()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    last = events[-1]
    # SegPL-VI's preview is cut at the head's mu for the slice: the note names slice 17 and
    # each class's mu (to the 2 decimals shown), and the labels are cut at those values
    note = last.threshold_note
    assert "slice 17" in note and "mu" in note
    assert _numbers(note)[1:] == pytest.approx(last.threshold, abs=0.005)
    assert len(last.threshold) == 2 and all(0 < t < 1 for t in last.threshold)
    cut = _cut_by_hand(last.probabilities, np.asarray(last.threshold))
    np.testing.assert_array_equal(last.labels > 0, cut)
    shown = dock.training.preview_note.text()
    assert "slice 17" in shown and shown.endswith(note)
    assert dock.layers.get(PSEUDO).metadata["segpl_threshold_note"] == note
    dock.results.parts_box.setChecked(False)  # every part as cut (tests/test_dock_parts.py)
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    (pred,) = predictions
    # Predict labels with the decision fitted to the paint, started at the form's threshold:
    # the note says so and names it, and the labels are the decision's
    t, model = dock.params.threshold.value, dock.state.model
    note = pred.threshold_note
    assert _numbers(note) == [t] and "decision fitted to the paint" in note
    np.testing.assert_array_equal(pred.labels, model.decision.labels(pred.probabilities))
    model.decision = None  # a model without one (a file from before): cut at the threshold
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    pred = predictions[-1]
    assert _numbers(pred.threshold_note) == [t] and "fixed" in pred.threshold_note
    np.testing.assert_array_equal(pred.labels > 0, _cut_by_hand(pred.probabilities, t))
    # the note, then (this 6-step model's mask is unlike the paint) the paint's warning line
    warning = [f"warning: {pred.paint_note}"] if pred.paint_note else []
    lines = [f"last prediction's {pred.threshold_note}", *warning]
    assert dock.results.threshold_label.text() == "\n".join(lines)
    assert dock.layers.get(PREDICTION).metadata["segpl_threshold_note"] == pred.threshold_note
    assert not dock.errors


def test_the_prediction_note_is_shown_as_given(dock):
    """Whatever line the engine writes is shown whole, beside Predict and in the layer."""
    shape = dock.viewer.layers["lungs_ct"].data.shape
    pred = Prediction(np.zeros(shape, np.uint8), np.zeros((1, *shape), np.float32))
    pred.threshold_note = "labels: p > 0.37 (a note written for this test)"
    dock.runner._image = dock.viewer.layers["lungs_ct"]
    dock.runner._show_prediction(pred)
    assert dock.results.threshold_label.text() == "last prediction's " + pred.threshold_note
    layer = dock.layers.get(PREDICTION)
    assert layer.metadata["segpl_threshold_note"] == pred.threshold_note
    assert dock.results.export_combo.layer() is layer
