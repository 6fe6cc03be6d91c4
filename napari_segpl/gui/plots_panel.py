"""Live plots of a run: the losses, and SegPL-VI's threshold T against its prior.

A panel of its own so the dock can keep it in view, outside the scrolling part, while
training: the plots are what a run is watched for."""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..engine import METHODS, FinishedEvent, StepEvent, TrainConfig
from .plots import LossPlot, ThresholdPlot
from .state import DockState


class PlotsPanel(QWidget):
    """The losses above the threshold (shown for methods that learn it), both in view."""

    def __init__(self, state: DockState) -> None:
        super().__init__()
        theme = getattr(state.viewer, "theme", "dark")
        self.loss_plot = LossPlot(theme)
        self.threshold_plot = ThresholdPlot(theme)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.threshold_plot)
        self.threshold_plot.setVisible(False)  # until a run of a method that learns T
        state.run_reset.connect(self._reset)
        state.step.connect(self._step)
        state.finished.connect(self._finished)

    def _reset(self, config: TrainConfig) -> None:
        self.loss_plot.reset(config.steps)
        self.threshold_plot.reset(config.prior_mu, config.prior_sigma, config.steps)
        self.threshold_plot.setVisible(METHODS[config.method].learns_threshold)

    def _step(self, event: StepEvent) -> None:
        self.loss_plot.add(event.step, event.losses)
        self.loss_plot.refresh()
        if event.mu is not None:
            self.threshold_plot.add(event.step, event.mu, event.sigma)
            self.threshold_plot.refresh()

    def _finished(self, _event: FinishedEvent) -> None:
        self.loss_plot.refresh(force=True)
        self.threshold_plot.refresh(force=True)
