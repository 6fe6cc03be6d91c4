"""The dock's shared state without any widget: each choice signals only when it changes, and
"busy" covers training, the fill and a prediction."""

from __future__ import annotations

from types import SimpleNamespace

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
