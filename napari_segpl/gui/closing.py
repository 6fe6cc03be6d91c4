"""Stop the dock's workers when the window it is in really closes, not when a close is asked.

napari's main window may ask the user before it closes (``confirm_close_window``, or tasks
still running) and the user may press Cancel: a close event seen before the window handled it
is only a request. ``watch_close`` therefore lets the window handle the event first and calls
back only once it was accepted; a cancelled close changes nothing.

One ``CloseWatcher`` per window, a child of it (it goes with the window), shared by every dock
and panel in it: two watchers would each handle the event in turn and the second would never
see it. The window handles the event in the watcher's filter, so an event filter installed on
that window before the watcher no longer sees its close events (napari installs none).

As napari's window closes it first cancels the tasks it knows of, the dock's workers among
them, with ``quit``: ``StopsBetweenSteps`` makes that the training's own Stop.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from napari.qt.threading import GeneratorWorker
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QWidget

from .session import RunControl


class CloseWatcher(QObject):
    """Calls back once its window has accepted a close event; see the module docstring."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        # weak: a callback never keeps a deleted dock alive
        self._callbacks: list[weakref.WeakMethod] = []
        window.installEventFilter(self)

    def add(self, callback: Callable[[], object]) -> None:
        if all(ref() != callback for ref in self._callbacks):
            self._callbacks.append(weakref.WeakMethod(callback))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() != QEvent.Close or obj is not self.parent():
            return False
        # the window decides first (event() itself, not through the filters: the spontaneous
        # flag napari reads to ask the user is kept, and this filter is not called again)
        obj.event(event)
        if event.isAccepted():
            for ref in list(self._callbacks):
                callback = ref()
                if callback is None:
                    continue
                try:
                    callback()
                except RuntimeError:  # a dock whose Qt side is already deleted
                    pass
        return True  # handled: Qt reads the acceptance from the event


def watch_close(window: QWidget, callback: Callable[[], object]) -> None:
    """Call ``callback`` (a bound method) after ``window`` accepts a close event."""
    watcher = window.findChild(CloseWatcher, "", Qt.FindDirectChildrenOnly)
    if watcher is None:
        watcher = CloseWatcher(window)
    watcher.add(callback)


class StopsBetweenSteps(GeneratorWorker):
    """The training worker. napari's close cancels it with ``quit`` before the dock's shutdown
    runs; a plain abort would leave the generator suspended for good, its ``finally`` (the
    trainer's clean-up, ``control.done``) never run and the shutdown waiting its whole
    timeout. Here ``quit`` asks for a stop between two steps instead, as Stop does."""

    control: RunControl | None = None

    def quit(self) -> None:
        if self.control is None:
            super().quit()
        else:
            self.control.stop.set()
