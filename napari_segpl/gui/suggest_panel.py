"""The next slice to paint: a curve of each slice's uncertainty score along the slicing axis,
with the labelled slices marked, and a button that moves the viewer to the slice a rule picks.

The curve and the button use the same numbers: the scores ``engine.suggest.slice_scores``
computes from the dock's own uncertainty and prediction layers (what the user sees), kept in
``scores``, and ``engine.suggest.suggest_next`` picks among unlabelled slices from them. The
scores are recomputed when a prediction is shown or the slicing axis changes; the labelled
slices are read when the button is pressed. The default rule is ``DEFAULT_RULE`` (gap-middle)
until the simulation of issue 25 measures which rule is best.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QGroupBox, QLabel, QVBoxLayout

from ..engine.suggest import (
    DEFAULT_RULE,
    RADIUS,
    RULES,
    Suggestion,
    describe,
    slice_scores,
    suggest_next,
)
from ..engine.uncertainty import ENTROPY, KINDS
from . import notify
from .plots import theme_colours
from .result_layers import PREDICTION, UNCERTAINTY, UNCERTAINTY_KIND_KEY, ResultLayers
from .state import DockState
from .widgets import button, row

RULE_TIPS = {
    "gap-middle": "the middle of the largest run of unlabelled slices (fixed spacing)",
    "uncertainty": "the unlabelled slice with the highest score on the curve",
    "random": "a random unlabelled slice",
}


class SliceScorePlot(FigureCanvasQTAgg):
    """Score per slice (a line; gaps where no structure is predicted), labelled slices as
    ticks along the bottom, the suggested slice as a dashed line. Redrawn whole: it changes
    only on a prediction, a new set of labelled slices or a suggestion."""

    def __init__(self, theme_id: str = "dark") -> None:
        self.figure = Figure(figsize=(3.2, 1.5), dpi=90)
        super().__init__(self.figure)
        self.colours = theme_colours(theme_id)
        self.figure.set_facecolor(self.colours["bg"])
        self.ax = self.figure.add_subplot()
        self.figure.subplots_adjust(left=0.14, right=0.97, bottom=0.2, top=0.85)
        self.setFixedHeight(120)
        self.scores: np.ndarray | None = None
        self.labelled: list[int] = []
        self.suggested: int | None = None
        self.draw_plot(None, 0, [], None, "")

    def draw_plot(
        self,
        scores: np.ndarray | None,
        n: int,
        labelled: list[int],
        suggested: int | None,
        what: str,
    ) -> None:
        self.scores, self.labelled, self.suggested = scores, list(labelled), suggested
        c, ax = self.colours, self.ax
        ax.clear()
        ax.set_facecolor(c["bg"])
        ax.tick_params(colors=c["fg"], labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(c["grid"])
        title = f"slice score: {what}" if what else "slice score (predict to see it)"
        ax.set_title(title, fontsize=9, color=c["fg"])
        ax.set_xlim(-0.5, max(n, 1) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        top = 1.0
        if scores is not None and np.isfinite(scores).any():
            ax.plot(np.arange(len(scores)), scores, color=c["accent"], linewidth=1.2)
            top = float(np.nanmax(scores)) * 1.15 or 1.0
        ax.set_ylim(0, top)
        if labelled:
            ax.plot(
                labelled, [0.0] * len(labelled), "^", color=c["fg"], markersize=5,
                clip_on=False, label="labelled",
            )  # fmt: skip
        if suggested is not None:
            ax.axvline(suggested, color="#e5c07b", linestyle="--", linewidth=1.0)
        self.draw_idle()


class SuggestPanel(QGroupBox):
    """Slice scores along the axis and "Suggest next slice"."""

    def __init__(
        self, state: DockState, layers: ResultLayers, labelled: Callable[[], list[int]]
    ) -> None:
        super().__init__("Next slice to paint")
        self.state, self.layers, self.labelled = state, layers, labelled
        self.scores: np.ndarray | None = None
        self.kind = ""
        self.suggestion: Suggestion | None = None
        self._rng = np.random.default_rng()
        v = QVBoxLayout(self)
        self.plot = SliceScorePlot(getattr(state.viewer, "theme", "dark"))
        self.plot.setToolTip(
            "Per slice along the slicing axis: the mean uncertainty over the predicted structure "
            f"grown by {RADIUS} voxels in the slice (background does not dilute it; no score "
            "where nothing is predicted). Triangles: labelled slices; dashed: the suggestion."
        )
        v.addWidget(self.plot)
        self.rule = QComboBox()
        for rule in RULES:
            self.rule.addItem(rule)
            self.rule.setItemData(self.rule.count() - 1, RULE_TIPS[rule], Qt.ToolTipRole)
        self.rule.setCurrentText(DEFAULT_RULE)
        self.rule.setToolTip("How the next slice is picked (gap-middle until measured)")
        self.suggest_button = button("Suggest next slice", self.suggest)
        v.addLayout(row(QLabel("rule"), self.rule))  # two rows: one is wider than the dock
        v.addWidget(self.suggest_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setVisible(False)
        v.addWidget(self.status)
        # Connected after the results panel's: its uncertainty layer is ready when this runs.
        state.predicted.connect(self.recompute)
        state.axis_changed.connect(self.recompute)
        state.image_changed.connect(self.recompute)
        state.slices_changed.connect(self._slices_changed)

    def _n(self) -> int:
        image = self.state.image
        return int(image.data.shape[self.state.axis]) if image is not None else 0

    def recompute(self, *_: object) -> None:
        """Scores from the dock's uncertainty and prediction layers along the slicing axis
        (none when they are missing or not on the chosen image's grid)."""
        unc, pred = self.layers.get(UNCERTAINTY), self.layers.get(PREDICTION)
        image = self.state.image
        self.scores, self.kind, self.suggestion = None, "", None
        shape = None if image is None else image.data.shape
        if unc is not None and pred is not None and unc.data.shape == pred.data.shape == shape:
            data = np.asarray(unc.data)
            self.scores = slice_scores(data, np.asarray(pred.data), self.state.axis)
            self.kind = str(unc.metadata.get(UNCERTAINTY_KIND_KEY, ENTROPY))
        self.redraw()

    def _slices_changed(self) -> None:
        if sorted(self.labelled()) != self.plot.labelled:
            self.redraw()

    def redraw(self) -> None:
        info = KINDS.get(self.kind)
        what = f"{info.title}{f' ({info.unit})' if info.unit else ''}" if info else ""
        chosen = self.suggestion.slice if self.suggestion is not None else None
        self.plot.draw_plot(self.scores, self._n(), sorted(self.labelled()), chosen, what)

    def suggest(self) -> Suggestion | None:
        """Pick the next slice by the chosen rule, move the viewer there, and say why."""
        n = self._n()
        if n == 0:
            notify.info("Choose a 3D image first.")
            return None
        try:
            suggestion = suggest_next(
                n, self.labelled(), self.rule.currentText(), self.scores,
                seed=int(self._rng.integers(2**31)),
            )  # fmt: skip
        except ValueError as exc:
            notify.info(str(exc))
            return None
        self.suggestion = suggestion
        self.state.viewer.dims.set_current_step(self.state.axis, suggestion.slice)
        unit = KINDS[self.kind].unit if self.kind in KINDS else ""
        self.status.setText(describe(suggestion, unit))
        self.status.setVisible(True)
        self.redraw()
        return suggestion
