"""The dock's frozen heap (``gui/heap.py``): torch's objects are frozen once the dock's warm-up
is done, cyclic garbage that was frozen is freed when a layer leaves the viewer or a run ends,
and the last dock to close hands every object back to the collector."""

from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest

from napari_segpl.gui import SegPLDock, heap

pytestmark = pytest.mark.gui


class _Cycle:
    """An object only the cyclic collector can free (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def alone(monkeypatch):
    """No dock of an earlier test holds the heap (one left open would), nothing frozen."""
    monkeypatch.setattr(heap, "_holders", 0)
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.fixture
def holder():
    heap.hold()
    yield
    heap.release()


def test_refreeze_freezes_only_while_a_dock_holds_the_heap():
    assert not heap.refreeze()
    assert gc.get_freeze_count() == 0
    heap.hold()
    try:
        assert heap.refreeze()
        assert gc.get_freeze_count() > 0
    finally:
        heap.release()
    assert gc.get_freeze_count() == 0


def test_frozen_cyclic_garbage_is_freed_by_the_next_refreeze(holder):
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    heap.refreeze()  # the cycle is alive: frozen
    del cycle
    gc.collect()
    assert ref() is not None, "a plain collection skips frozen objects: the refreeze is needed"
    heap.refreeze()
    assert ref() is None


def test_the_dock_freezes_when_warm_frees_a_removed_layer_and_unfreezes_on_close(
    make_napari_viewer, qtbot
):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((8, 16, 16), np.float32), name="user's image")
    widget = SegPLDock(viewer)
    assert widget.warmed_up.wait(120)
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=5000)
    ref = weakref.ref(layer)
    viewer.layers.remove(layer)
    del layer
    qtbot.waitUntil(lambda: ref() is None, timeout=5000)
    widget.shutdown()
    assert gc.get_freeze_count() == 0
    widget.shutdown()  # a second close (the window after the dock) releases nothing more
    assert gc.get_freeze_count() == 0


def test_no_refreeze_while_a_run_is_under_way(make_napari_viewer, qtbot, monkeypatch):
    """Between a run's training and its fill the dock is idle for a moment: the refreeze the
    training's end asks for must wait for the fill's end, not pause the window inside it."""
    calls: list[int] = []

    def refreeze() -> bool:  # counts this dock's calls only (not a dock an earlier test left)
        if sys._getframe(1).f_locals.get("self") is widget:
            calls.append(1)
        return True

    monkeypatch.setattr(heap, "refreeze", refreeze)
    widget = SegPLDock(make_napari_viewer())
    assert widget.warmed_up.wait(120)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=3000)  # the warm-up's freeze
    widget.state.set_busy(training=True)
    widget.state.set_busy(training=False)  # the runner's training end: idle for a moment
    widget.state.set_busy(filling=True)  # then the fill
    widget._refreeze_soon()  # a layer removed meanwhile asks too
    qtbot.wait(700)
    assert len(calls) == 1
    widget.state.set_busy(filling=False)
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=3000)
    widget.shutdown()
