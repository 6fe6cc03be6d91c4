"""The dock's shared state without any widget: each choice signals only when it changes, and
"busy" covers training, the fill and a prediction."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_segpl.gui.state import DockState


def test_choices_signal_only_on_change():
    state = DockState(viewer=SimpleNamespace())
    seen: list[tuple[str, object]] = []
    state.image_changed.connect(lambda layer: seen.append(("image", layer)))
    state.axis_changed.connect(lambda axis: seen.append(("axis", axis)))
    a, b = object(), object()
    state.image = a
    state.image = a  # the same layer again: nothing to re-orient
    state.image = b
    state.axis = 2  # already 2
    state.axis = 0
    assert seen == [("image", a), ("image", b), ("axis", 0)]


def test_busy_is_any_worker_and_each_change_is_signalled():
    state = DockState(viewer=SimpleNamespace())
    changes: list[bool] = []
    state.busy_changed.connect(lambda: changes.append(state.busy))
    assert not state.busy
    for flag in ("training", "filling", "predicting"):
        state.set_busy(**{flag: True})
        assert state.busy
        state.set_busy(**{flag: False})
    assert changes == [True, False] * 3 and not state.busy


def test_current_slice_follows_the_axis_and_needs_a_volume():
    dims = SimpleNamespace(ndim=3, current_step=(4, 9, 17))
    state = DockState(viewer=SimpleNamespace(dims=dims))
    assert state.current_slice() == 17
    state.axis = 1
    assert state.current_slice() == 9
    dims.ndim = 2
    assert state.current_slice() is None
    assert DockState(viewer=SimpleNamespace()).owner != state.owner  # one id per dock


def test_slice_numbers_are_the_layers_data_index_not_napari_s_slider():
    """An LPS file opens with a negative scale, and a second scan widens the world: napari's
    slider step is then not the data slice (step k showed slice n - 1 - k). Mark, Hold out,
    Accept slice and the jumps all use these two."""
    from napari.components import ViewerModel

    viewer = ViewerModel()
    ramp = np.broadcast_to(np.arange(6.0)[:, None, None], (6, 5, 4))
    layer = viewer.add_image(ramp, scale=(-2.0, 1.0, 1.0), translate=(10.0, 0.0, 0.0))
    viewer.add_image(np.zeros((30, 5, 4)), translate=(-20.0, 0.0, 0.0))  # another scan
    state = DockState(viewer=viewer)
    state.image, state.axis = layer, 0
    for k in range(6):
        state.go_to_slice(k)
        assert viewer.dims.point[0] == 10.0 - 2.0 * k  # where data slice k lies in the world
        assert state.current_slice() == k
    viewer.dims.set_point(0, -15.0)  # on the other scan only
    assert state.current_slice() is None
