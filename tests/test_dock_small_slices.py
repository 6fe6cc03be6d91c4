"""Slices too small for the 2D U-net (16 x 16: one voxel at a depth-4 net's deepest level)
in the dock: Predict, Train and Compare refuse them in the engine's words before any thread
starts, instead of torch's 'Expected more than 1 spatial element when training' from the
worker, with the network set or chosen from the painted slices (dims 0, as the trainer will)."""

from __future__ import annotations

import numpy as np
import pytest
from test_dock import toy_dock

from napari_segpl.engine import TrainConfig, TrainedModel
from napari_segpl.gui import notify
from napari_segpl.gui.result_layers import PREDICTION

pytestmark = pytest.mark.gui

SHAPE = (16, 16, 8)
PAINTED = [2, 5]
#: the engine's words (engine.inference.check_slice_size), the CLI's without the file's name
PREDICT_SAID = (
    "SegPL cannot predict this image: slices of 16 x 16 voxels along axis 2 are too small for "
    "this model's 2D U-net (it halves them to 1/16)"
)
#: the trainer's words (engine.sampling.check_in_plane), as `segpl train` says them
TRAIN_SAID = (
    "slices of 16 x 16 pixels are too small for the 2D U-net (its deepest level, 1/16 of a "
    "slice, would be one pixel): choose the 3D network"
)


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    widget = toy_dock(make_napari_viewer(), SHAPE, PAINTED)
    widget.errors = []
    monkeypatch.setattr(notify, "show_error", widget.errors.append)
    yield widget
    widget.shutdown()


def _idle(dock) -> bool:
    return not dock.state.busy and dock.state.predict_queued is None


def _model(dims: int) -> TrainedModel:
    config = TrainConfig(method="segpl", dims=dims, axis=2, depth=4, base_channels=4, patch=64)
    return TrainedModel.new(config, 1)


def test_predict_says_the_slices_are_too_small_not_torch(dock, qtbot):
    """A 2D model (trained on bigger slices, or loaded) and a 16 x 16 image: Predict showed
    'SegPL prediction failed: Expected more than 1 spatial element when training, got input
    size torch.Size([3, 64, 1, 1])' from the worker."""
    assert dock.state.image is dock.viewer.layers["toy"]
    dock.state.set_model(_model(2))
    started = dock.start_prediction()
    qtbot.waitUntil(lambda: _idle(dock), timeout=30_000)
    assert dock.errors == [PREDICT_SAID]
    assert not started  # refused before a worker started: nothing shown, the dock usable
    assert PREDICTION not in [layer.name for layer in dock.viewer.layers]
    assert dock.training.train_button.isEnabled()
    dock.state.set_model(_model(3))  # the 3D network reads these slices: it predicts
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: _idle(dock), timeout=30_000)
    assert dock.errors == [PREDICT_SAID]
    assert dock.viewer.layers[PREDICTION].data.shape == SHAPE


def test_train_and_compare_with_the_2d_network_refuse_before_a_thread_starts(dock):
    """Train failed in its worker (the trainer's check); the preflight says it first, for
    Compare too, in the trainer's words."""
    dock.viewer.dims.set_current_step(2, PAINTED[-1])
    dock.data.toggle_held_out()
    assert dock.compare.why_not() == ""  # the panel's own checks pass: the preflight refuses
    assert not dock.runner.start_training(PAINTED[:1])
    assert not dock.compare.start()
    assert not dock.state.busy and not dock.state.comparing
    assert dock.errors == [f"SegPL: {TRAIN_SAID}", f"Compare: {TRAIN_SAID}"]


def _thin(dock, slices: list[int]) -> None:
    """One voxel of class 1 on each of ``slices``: 0.4 % of a 16 x 16 slice, a thin structure,
    so that dims 0 trains the 2D U-net (engine.config.choose_dims)."""
    labels = dock.viewer.layers["toy labels"]
    painted = np.zeros(SHAPE, np.uint8)
    painted[8, 8, slices] = 1
    labels.data = painted


def test_train_and_compare_with_the_network_chosen_from_the_painting_refuse_first(dock):
    """With dims 0 the 2D U-net was chosen in the worker, which then refused these slices after
    its thread had started; the preflight chooses it the same way and refuses first."""
    dock.params.dims.value = 0
    assert dock.params.config(2).dims == 0  # the preset's "from the painted slices"
    _thin(dock, PAINTED)
    assert not dock.runner.start_training(PAINTED[:1])
    assert dock.runner.worker is None and not dock.state.busy
    dock.viewer.dims.set_current_step(2, PAINTED[-1])
    dock.data.toggle_held_out()
    assert dock.compare.why_not() == ""
    assert not dock.compare.start()
    assert dock.compare.runner.worker is None and not dock.state.comparing
    assert dock.errors == [f"SegPL: {TRAIN_SAID}", f"Compare: {TRAIN_SAID}"]
    assert dock.training.train_button.isEnabled()


def test_train_with_the_network_chosen_from_the_painting_trains_3d(dock, qtbot):
    """The toy's painting covers over 1 % of its slices: dims 0 picks the 3-slice 3D network,
    which reads 16 x 16 slices, so the preflight lets it through and it trains."""
    dock.params.dims.value = 0
    assert dock.runner.start_training(PAINTED)
    qtbot.waitUntil(lambda: _idle(dock), timeout=60_000)
    assert dock.errors == []
    assert dock.state.model is not None and dock.state.model.config.dims == 3
