"""The SegPL dock: choose layers and slices, train in the background, watch, predict, export.

The dock only puts panels together; each panel has one job and its own file:

- ``data_panel.py``: image, labels, slicing axis and the labelled slices;
- ``method_panel.py`` (``params.py``): the method and its parameters;
- ``training_panel.py`` and ``plots_panel.py``: Train and Stop, progress, warnings, live plots;
- ``results_panel.py``: Predict, Accept, export and model files;
- ``suggest_panel.py``: the slice-score curve and "Suggest next slice";
- ``compare_panel.py`` (``compare_table.py``: its table): methods trained and scored on the
  held-out slices (``segpl compare``).

They share a ``DockState`` (``state.py``: the choices, the model, what is running, and a signal
for each change); the few reads across panels (the data panel's slices, the form's config)
are handed in as callables. ``runner.py`` runs the workers, and
``result_layers.py`` makes the dock's own layers and never touches a user's. The training part
stays in view below the scrolling part, so the plots are seen while training. A new panel (a
baseline's options, a comparison) is one new file and one line in ``SegPLDock.__init__``.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, Qt, QTimer
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from . import heap, notify
from .closing import watch_close
from .compare_panel import ComparePanel
from .data_panel import DataPanel
from .method_panel import MethodPanel
from .plots_panel import PlotsPanel
from .result_layers import ResultLayers
from .results_panel import ResultsPanel
from .runner import Runner
from .session import start_warm_up
from .state import DockState
from .suggest_panel import SuggestPanel
from .training_panel import TrainingPanel
from .view import ViewFollower

if TYPE_CHECKING:
    import napari

    from ..engine import TrainedModel


class SegPLDock(QWidget):
    """Dock widget for training SegPL models on a few labelled slices (napari.yaml's entry)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = DockState(napari_viewer)
        self.view = ViewFollower(self.state)
        self.layers = ResultLayers(napari_viewer, self.state.owner, lambda: self.state.labels)
        self.method = MethodPanel(self.state)
        self.params = self.method.form
        self.runner = Runner(
            self.state, self.layers, self.params.config, lambda: self.params.device.value,
            safeguard=lambda: self.params.safeguard.value,
            retry=lambda: self.params.retry.value,
        )  # fmt: skip
        self.data = DataPanel(self.state)
        self.results = ResultsPanel(self.state, self.runner, self.layers)
        self.suggest = SuggestPanel(  # after results: it reads the uncertainty layer they make
            self.state, self.layers, lambda: sorted({*self.data.labelled(), *self.data.held_out()})
        )
        self.training = TrainingPanel(self.state, self.start_training, self.runner.stop_training)
        self.plots = PlotsPanel(self.state)
        self.training.layout().addWidget(self.plots)
        self._watched: weakref.WeakSet[QWidget] = weakref.WeakSet()
        self.compare = ComparePanel(self.state, self.params.config, self.data)
        self.state.busy_changed.connect(self._on_busy)

        inner = QWidget()
        layout = QVBoxLayout(inner)
        for panel in (self.data, self.method, self.results, self.suggest, self.compare):
            layout.addWidget(panel)
        layout.addStretch(1)
        # Every row can shrink to well below the minimum width (combo boxes clip, texts wrap),
        # so the content always fits across and only ever scrolls down.
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.scroll_area.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll_area, 1)
        outer.addWidget(self.training)  # in view whatever the scrolling part shows
        self.setMinimumWidth(360)
        self.warmed_up = threading.Event()
        start_warm_up(self.warmed_up)
        # collections on this thread only, and torch's objects out of their way once loaded
        heap.hold(self)
        self._collect_timer = QTimer(self)  # the automatic collector's work (``heap.py``)
        self._collect_timer.setInterval(100)
        self._collect_timer.timeout.connect(heap.collect_due)
        self._collect_timer.start()
        self._warm_poll = QTimer(self)
        self._warm_poll.setInterval(200)
        self._warm_poll.timeout.connect(self._freeze_when_warm)
        self._warm_poll.start()
        self._refreeze_timer = QTimer(self)  # restarted by each request: one refreeze a burst
        self._refreeze_timer.setSingleShot(True)
        self._refreeze_timer.setInterval(300)
        self._refreeze_timer.timeout.connect(self._refreeze_if_idle)
        napari_viewer.layers.events.removed.connect(self._refreeze_soon)

    # ------------------------------------------------------ what scripts call
    @property
    def model(self) -> TrainedModel | None:
        return self.state.model

    @property
    def is_training(self) -> bool:
        return self.state.training

    def start_training(self) -> bool:
        """Start a run on the chosen layers; False (with a message) if it cannot start."""
        holdout = self.data.held_out()
        if holdout and not self.data.painted.slices - set(holdout):
            notify.error(
                "Every painted slice is held out: train on at least one (select it and press "
                "Train on it), or paint another slice."
            )
            return False
        return self.runner.start_training(self.data.labelled(), holdout)

    def start_prediction(self) -> bool:
        """Predict the chosen image (queued while the pseudo-label fill runs)."""
        return self.results.start_prediction()

    # --------------------------------------------------------------- closing
    def _watch_window(self) -> None:
        """Stop every worker once the window the dock is in (napari's, or the dock floating on
        its own) has accepted a close (``closing.py``: a close the user cancels changes
        nothing). Watched from when the dock is shown and again whenever a run starts, so a
        Predict or a Compare started from their panels is covered too. Only weak references
        are kept: holding the window would keep napari's whole QtViewer alive after the
        viewer closes."""
        window = self.window()
        if window is not None and window is not self and window not in self._watched:
            watch_close(window, self.shutdown)
            self._watched.add(window)

    def _on_busy(self) -> None:
        if self.state.busy:  # a run starts: the window may have changed (floated) since
            self._watch_window()
        else:  # what the run replaced (a model, a trainer) may be frozen garbage now
            self._refreeze_soon()

    # ------------------------------------------------------------------ heap
    def _freeze_when_warm(self) -> None:
        if self.warmed_up.is_set():
            self._warm_poll.stop()
            self._refreeze_soon()  # once nothing runs, as every refreeze

    def _refreeze_soon(self, event=None) -> None:
        """Collect and freeze a moment after the event at hand (a removed layer is still
        referenced while napari emits its removal)."""
        if heap.held(self):
            self._refreeze_timer.start()

    def _refreeze_if_idle(self) -> None:
        # not between a run's training and its fill: the run's end asks again
        if heap.held(self) and not self.state.busy:
            heap.refreeze()

    def _release_heap(self) -> None:
        if heap.held(self):
            self._warm_poll.stop()
            self._refreeze_timer.stop()
            self._collect_timer.stop()
            self.viewer.layers.events.removed.disconnect(self._refreeze_soon)
            heap.release(self)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self._watch_window()
        super().showEvent(event)

    def event(self, event: QEvent) -> bool:
        # napari's remove_dock_widget (the dock's own close button too) takes the dock out of
        # its window with setParent(None) and no close event: the workers must stop then
        if event.type() == QEvent.ParentChange and self.parent() is None and len(self._watched):
            self.shutdown()
        return super().event(event)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop any training, prediction or compare and wait for their threads (see
        ``Runner.shutdown``)."""
        compared = self.compare.shutdown(timeout)
        stopped = self.runner.shutdown(timeout) and compared
        self._release_heap()
        return stopped

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)
