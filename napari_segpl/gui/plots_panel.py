"""Live plots of a run: the losses, SegPL-VI's threshold T against its prior, and the Dice per
class on held-out slices.

A panel of its own so the dock can keep it in view, outside the scrolling part, while
training: the plots are what a run is watched for. The held-out Dice is a plot of its own, not
lines among the losses: it rises while they fall, and a shared legend of five entries would not
fit a 360 px dock; it is shown only for runs with held-out slices, which alone can draw it."""

from __future__ import annotations

from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..engine import METHODS, FinishedEvent, HeldoutEvent, StepEvent, TrainConfig
from .plots import DicePlot, LossPlot, ThresholdPlot
from .session import Started
from .state import DockState


class PlotsPanel(QWidget):
    """The losses above the threshold (shown for methods that learn it) and the held-out Dice
    (shown for runs with held-out slices), all in view."""

    def __init__(self, state: DockState) -> None:
        super().__init__()
        self.state = state
        theme = getattr(state.viewer, "theme", "dark")
        self.loss_plot = LossPlot(theme)
        self.threshold_plot = ThresholdPlot(theme)
        self.dice_plot = DicePlot(theme)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.dice_plot)
        layout.addWidget(self.threshold_plot)
        self.threshold_plot.setVisible(False)  # until a run of a method that learns T
        self.dice_plot.setVisible(False)  # until a run with held-out slices
        state.run_reset.connect(self._reset)
        state.started.connect(self._started)
        state.step.connect(self._step)
        state.heldout.connect(self._heldout)
        state.finished.connect(self._finished)

    def _reset(self, config: TrainConfig) -> None:
        self.loss_plot.reset(config.steps)
        self.threshold_plot.reset(config.prior_mu, config.prior_sigma, config.steps)
        self.threshold_plot.setVisible(METHODS[config.method].learns_threshold)
        holdout = self.state.run.holdout
        self.dice_plot.reset(config.steps, 0, holdout)  # its classes come with Started
        self.dice_plot.setVisible(bool(holdout))

    def _started(self, event: Started) -> None:
        """The step axes take the run's own step count, which the form's may not be."""
        total = getattr(event.trainer, "total_steps", None)
        if self.state.run.holdout:
            steps = total or int(self.loss_plot.ax.get_xlim()[1])
            self.dice_plot.reset(steps, event.num_classes, self.state.run.holdout)
        if total:
            for plot in (self.loss_plot, self.threshold_plot):
                plot.set_total(total)

    def _step(self, event: StepEvent) -> None:
        self.loss_plot.add(event.step, event.losses)
        self.loss_plot.refresh()
        if event.mu is not None:
            self.threshold_plot.add(event.step, event.mu, event.sigma)
            self.threshold_plot.refresh()

    def _heldout(self, event: HeldoutEvent) -> None:
        self.dice_plot.add(event.step, event.dice)
        self.dice_plot.refresh()

    def _finished(self, _event: FinishedEvent) -> None:
        for plot in (self.loss_plot, self.threshold_plot, self.dice_plot):
            plot.refresh(force=True)
