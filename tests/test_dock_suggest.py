"""The dock's uncertainty layer for every method, named for what it shows, and the "Next slice
to paint" panel: its curve and its button use the same engine scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import add_toy_layers
from qtpy.QtCore import Qt

from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
from napari_segpl.engine.suggest import GAP, UNCERTAINTY, largest_gap_middle, slice_scores
from napari_segpl.engine.uncertainty import (
    ENTROPY,
    KINDS,
    MC,
    binary_entropy,
    kinds_in,
    layer_name,
    uncertainty_volume,
)
from napari_segpl.gui import SegPLDock, notify
from napari_segpl.gui.result_layers import PREDICTION, UNCERTAINTY_KIND_KEY
from napari_segpl.gui.result_layers import UNCERTAINTY as UNC_ROLE

pytestmark = pytest.mark.gui

PAINTED = [3, 10]


def _dock(make_napari_viewer, monkeypatch, method: str, **extra):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer()
    add_toy_layers(viewer, (48, 40, 20), PAINTED)
    dock = SegPLDock(viewer)
    torch.manual_seed(0)
    config = TrainConfig(method=method, dims=2, base_channels=4, depth=2, axis=2, extra=extra)
    dock.state.set_model(TrainedModel.new(config.validate(), 2))  # untrained: unsure enough
    return viewer, dock, errors


def _predict(dock, qtbot) -> object:
    shown: list[object] = []
    dock.state.predicted.connect(shown.append)
    dock.results.mc_spin.setValue(3)
    dock.results.tta_spin.setValue(0)  # the methods' own kinds (TTA first: tests/test_tta.py)
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: not dock.state.busy and bool(shown), timeout=60_000)
    return shown[0]


@pytest.mark.parametrize(
    ("method", "extra", "name"),
    [
        ("segpl", {}, "uncertainty: entropy of p"),
        ("segpl-vi", {}, "uncertainty: entropy of p"),  # its default (RESULTS.md (t))
        ("ensemble", {"members": 2}, "uncertainty: ensemble spread"),
    ],
)
def test_every_method_gets_an_uncertainty_layer_named_for_its_kind(
    make_napari_viewer, qtbot, monkeypatch, method, extra, name
):
    viewer, dock, errors = _dock(make_napari_viewer, monkeypatch, method, **extra)
    try:
        pred = _predict(dock, qtbot)
    finally:
        dock.shutdown()
    assert not errors
    layer = dock.layers.get(UNC_ROLE)
    assert layer is not None and layer.name == name
    own = {"segpl": None, "segpl-vi": None, "ensemble": pred.spread}[method]
    expected = binary_entropy(pred.probabilities) if own is None else own
    np.testing.assert_allclose(layer.data, expected.max(axis=0), atol=1e-6)
    assert layer.data.max() > 0
    assert [la.name for la in viewer.layers].count(name) == 1


def test_the_shown_combo_redraws_the_layer_and_the_curve_from_the_same_prediction(
    make_napari_viewer, qtbot, monkeypatch
):
    viewer, dock, errors = _dock(make_napari_viewer, monkeypatch, "segpl-vi")
    combo, panel = dock.results.kind_combo, dock.suggest
    assert combo.count() == 0 and not combo.isEnabled()  # nothing to choose yet
    try:
        pred = _predict(dock, qtbot)
        names = [combo.itemText(i) for i in range(combo.count())]
        assert [combo.itemData(i) for i in range(combo.count())] == kinds_in(pred) == [ENTROPY, MC]
        assert names == [KINDS[ENTROPY].title, KINDS[MC].title] and combo.isEnabled()
        layer = dock.layers.get(UNC_ROLE)
        entropy_scores = panel.scores.copy()
        for kind in (MC, ENTROPY, MC):
            combo.setCurrentIndex(combo.findData(kind))
            assert dock.layers.get(UNC_ROLE) is layer  # one layer, redrawn and renamed
            assert layer.name == layer_name(kind) and layer.metadata[UNCERTAINTY_KIND_KEY] == kind
            np.testing.assert_array_equal(layer.data, uncertainty_volume(pred, kind))
            assert tuple(layer.contrast_limits) == (0.0, KINDS[kind].upper)
            expected = slice_scores(uncertainty_volume(pred, kind), pred.labels, axis=2)
            np.testing.assert_array_equal(panel.scores, expected)  # the curve follows
            assert panel.kind == kind
        assert not np.allclose(np.nan_to_num(panel.scores), np.nan_to_num(entropy_scores))
        assert [la.name for la in viewer.layers].count(layer_name(MC)) == 1
        pred2 = _predict(dock, qtbot)  # a new prediction: its default again
    finally:
        dock.shutdown()
    assert not errors
    assert pred2 is not pred and combo.currentData() == ENTROPY
    np.testing.assert_array_equal(layer.data, uncertainty_volume(pred2, ENTROPY))


def test_curve_and_button_use_the_same_scores(make_napari_viewer, qtbot, monkeypatch):
    viewer, dock, errors = _dock(make_napari_viewer, monkeypatch, "segpl")
    panel = dock.suggest
    try:
        assert panel.rule.currentText() == GAP  # the default until measured
        qtbot.mouseClick(panel.suggest_button, Qt.LeftButton)  # before any prediction
        middle, _ = largest_gap_middle(20, PAINTED)
        assert viewer.dims.current_step[2] == middle == 15 and "no score" in panel.status.text()
        _predict(dock, qtbot)
    finally:
        dock.shutdown()
    assert not errors
    unc, pred = dock.layers.get(UNC_ROLE), dock.layers.get(PREDICTION)
    expected = slice_scores(np.asarray(unc.data), np.asarray(pred.data), axis=2)
    np.testing.assert_array_equal(panel.scores, expected)
    assert panel.plot.scores is panel.scores  # the curve draws the very array
    (line,) = [ln for ln in panel.plot.ax.get_lines() if ln.get_marker() in ("None", "")][:1]
    np.testing.assert_array_equal(line.get_ydata(), expected)
    assert panel.plot.labelled == PAINTED

    panel.rule.setCurrentText(UNCERTAINTY)
    qtbot.mouseClick(panel.suggest_button, Qt.LeftButton)
    masked = expected.copy()
    masked[PAINTED] = np.nan
    best = int(np.nanargmax(masked))
    assert panel.suggestion.slice == best == viewer.dims.current_step[2]
    assert best not in PAINTED and np.isfinite(masked).sum() > 2
    text = panel.status.text()
    assert f"score {expected[best]:.3f} bits" in text
    nearest = min(PAINTED, key=lambda s: abs(s - best))
    assert f"from labelled slice {nearest}" in text and panel.plot.suggested == best

    dock.state.axis = 0  # another axis: scores along it, never stale ones
    assert panel.scores is not None and len(panel.scores) == 48
    assert panel.status.text() == "" and panel.suggestion is None  # nor a stale suggestion


def test_predict_slices_along_the_axis_the_model_trained_on(make_napari_viewer, qtbot, monkeypatch):
    """Another slicing axis chosen after training: the network still reads the slices it
    learnt (as Mask now and `segpl predict` do), and the user is told."""
    infos: list[str] = []
    monkeypatch.setattr(notify, "show_info", infos.append)
    viewer, dock, errors = _dock(make_napari_viewer, monkeypatch, "segpl")
    try:
        dock.state.axis = 0
        shown = _predict(dock, qtbot)
    finally:
        dock.shutdown()
    assert not errors and any("axis 2, the axis the model trained on" in i for i in infos)
    image = np.asarray(viewer.layers["toy"].data)
    expected = predict_volume(dock.state.model, image, axis=2, device="cpu").labels
    assert not np.array_equal(expected, predict_volume(dock.state.model, image, axis=0).labels)
    np.testing.assert_array_equal(shown.labels, expected)
