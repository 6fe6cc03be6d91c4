"""The dock's garbage collection (``gui/heap.py``): while a dock is open only the GUI thread
collects (a worker's allocations never start a collection there), torch's objects are frozen
once the dock's warm-up is done, cyclic garbage that was frozen is freed when a layer leaves
the viewer or a run ends, and the last dock to close, or to be freed, hands the collector back
as it was."""

from __future__ import annotations

import gc
import sys
import threading
import weakref

import numpy as np
import pytest

from napari_segpl.gui import SegPLDock, heap

pytestmark = pytest.mark.gui


class _Cycle:
    """An object only the cyclic collector can free (it refers to itself)."""

    def __init__(self) -> None:
        self.me = self


class _Owner:
    """Stands for a dock."""


@pytest.fixture(autouse=True)
def alone(monkeypatch):
    """No dock of an earlier test holds the heap (one left open would), nothing frozen, the
    collector on; each as it was afterwards."""
    monkeypatch.setattr(heap, "_holders", {})
    monkeypatch.setattr(heap, "_last_full", 0.0)
    was_enabled = gc.isenabled()
    gc.enable()
    gc.unfreeze()
    yield
    gc.unfreeze()
    if not was_enabled:
        gc.disable()


@pytest.fixture
def holder():
    owner = _Owner()
    heap.hold(owner)
    yield owner
    heap.release(owner)


def test_refreeze_freezes_only_while_a_dock_holds_the_heap():
    assert not heap.refreeze()
    assert gc.get_freeze_count() == 0
    owner = _Owner()
    heap.hold(owner)
    try:
        assert heap.refreeze()
        assert gc.get_freeze_count() > 0
    finally:
        heap.release(owner)
    assert gc.get_freeze_count() == 0


def test_the_collector_is_off_while_held_and_back_after_the_last_holder():
    first, second = _Owner(), _Owner()
    heap.hold(first)
    heap.hold(second)
    assert not gc.isenabled()
    heap.release(first)
    assert not gc.isenabled() and heap.held() and heap.held(second) and not heap.held(first)
    heap.release(second)
    heap.release(second)  # a second close releases nothing more
    assert gc.isenabled() and not heap.held()
    gc.disable()  # a collector the user had turned off stays off
    try:
        heap.hold(first)
        heap.release(first)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_holder_freed_without_release_hands_the_collector_back():
    owner = _Owner()
    heap.hold(owner)
    heap.refreeze()
    del owner  # freed by its reference count: a dock deleted without its close
    assert gc.isenabled() and gc.get_freeze_count() == 0 and not heap.held()


def test_a_worker_thread_starts_no_collection_while_held(holder):
    """The crash in CI: a collection started by the training thread's allocations deleted a
    Qt object there. Held, a thread making cyclic garbage starts none; the GUI thread's
    ``collect_due`` does the collecting and frees that garbage."""
    where: list[str] = []

    def seen(phase: str, info: dict) -> None:
        if phase == "start":
            where.append(threading.current_thread().name)

    def allocate() -> None:
        for _ in range(200_000):
            _Cycle()

    gc.callbacks.append(seen)
    try:
        worker = threading.Thread(target=allocate, name="worker")
        worker.start()
        worker.join()
        assert "worker" not in where
        assert gc.get_count()[0] > gc.get_threshold()[0]
        cycle = weakref.ref(_Cycle())
        assert heap.collect_due() is not None
        assert where and set(where) == {threading.main_thread().name}
        assert cycle() is None
    finally:
        gc.callbacks.remove(seen)
    heap.release(holder)  # the same thread, unheld: Python's own collector is back
    where.clear()
    gc.callbacks.append(seen)
    try:
        worker = threading.Thread(target=allocate, name="worker")
        worker.start()
        worker.join()
    finally:
        gc.callbacks.remove(seen)
    assert "worker" in where


def test_collect_due_follows_the_thresholds_and_spaces_full_collections(holder):
    gc.collect()
    assert heap.collect_due() is None  # nothing allocated since
    t0, t1, t2 = gc.get_threshold()
    done = []
    now = 1000.0
    for _ in range((t1 + 1) * (t2 + 1) + 5):
        keep = [_Cycle() for _ in range(t0 + 1)]
        done.append(heap.collect_due(now=now))
        del keep
    assert done.count(0) and done.count(1)
    assert done.count(2) == 1  # later full ones wait FULL_EVERY_S (the clock stood still)
    later = []
    for _ in range((t1 + 1) * (t2 + 1)):  # once the clock has moved on, a full one comes
        keep = [_Cycle() for _ in range(t0 + 1)]
        later.append(heap.collect_due(now=now + heap.FULL_EVERY_S))
        del keep
    assert 2 in later


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
    assert not gc.isenabled()
    ref = weakref.ref(layer)
    viewer.layers.remove(layer)
    del layer
    qtbot.waitUntil(lambda: ref() is None, timeout=5000)
    widget.shutdown()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
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
