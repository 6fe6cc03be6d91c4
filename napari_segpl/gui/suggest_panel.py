"""The next slice to paint: a curve of each slice's uncertainty score along the slicing axis,
with the labelled slices marked, and a button that moves the viewer to the slice a rule picks.

The curve and the button use the same numbers: the scores ``engine.suggest.slice_scores``
computes from the dock's own uncertainty and prediction layers (what the user sees), kept in
``scores``, and ``engine.suggest.suggest_next`` picks among unlabelled slices from them. The
scores are recomputed when a prediction is shown or the slicing axis changes; the labelled
slices are read when the button is pressed. The default rule is ``DEFAULT_RULE`` (gap-middle):
the next-slice simulation found no rule that beats it on every volume (RESULTS.md (mm)).
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
    ticks along the bottom, the suggested slice as a dashed line.

    The curve, the axes and the title change only on a prediction or another axis: then the
    figure is drawn whole (``draw_plot``). The labelled ticks and the suggestion change with
    every Mark / Unmark / Hold out and every painted slice: a whole draw of this small figure
    took 60-90 ms on the GUI thread of a loaded 2-core machine, so they are drawn alone over
    the figure saved after its last whole draw (``set_marks``, a few ms; matplotlib's
    blitting: both artists are ``animated``, left out of whole draws)."""

    def __init__(self, theme_id: str = "dark") -> None:
        self.figure = Figure(figsize=(3.2, 1.5), dpi=90)
        super().__init__(self.figure)
        c = self.colours = theme_colours(theme_id)
        self.figure.set_facecolor(c["bg"])
        ax = self.ax = self.figure.add_subplot()
        self.figure.subplots_adjust(left=0.14, right=0.97, bottom=0.2, top=0.85)
        self.setFixedHeight(120)
        ax.set_facecolor(c["bg"])
        ax.tick_params(colors=c["fg"], labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(c["grid"])
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        (self.curve,) = ax.plot([], [], color=c["accent"], linewidth=1.2)
        (self.ticks,) = ax.plot(
            [], [], "^", color=c["fg"], markersize=5, clip_on=False, label="labelled",
            animated=True,
        )  # fmt: skip
        self.chosen = ax.axvline(0, color="#e5c07b", linestyle="--", linewidth=1.0)
        self.chosen.set_animated(True)
        self.scores: np.ndarray | None = None
        self.labelled: list[int] = []
        self.suggested: int | None = None
        self._background = None
        #: whole draws and marks-only draws (tests count them)
        self.full_draws = self.mark_draws = 0
        self.mpl_connect("draw_event", self._whole_drawn)
        self.draw_plot(None, 0, [], None, "")

    def draw_plot(
        self,
        scores: np.ndarray | None,
        n: int,
        labelled: list[int],
        suggested: int | None,
        what: str,
    ) -> None:
        """The whole figure: new scores, another slice count or another title."""
        self.scores = scores
        ax = self.ax
        title = f"slice score: {what}" if what else "slice score (predict to see it)"
        ax.set_title(title, fontsize=9, color=self.colours["fg"])
        ax.set_xlim(-0.5, max(n, 1) - 0.5)
        top = 1.0
        if scores is not None and np.isfinite(scores).any():
            self.curve.set_data(np.arange(len(scores)), scores)
            top = float(np.nanmax(scores)) * 1.15 or 1.0
        else:
            self.curve.set_data([], [])
        ax.set_ylim(0, top)
        self._set_marks(labelled, suggested)
        self._background = None
        self.draw_idle()

    def set_marks(self, labelled: list[int], suggested: int | None) -> None:
        """Only the labelled ticks and the suggestion, over the saved figure."""
        self._set_marks(labelled, suggested)
        background, size = self._background or (None, None)
        if background is None or size != self.get_width_height(physical=True):
            self.draw_idle()  # no whole draw yet, or one is due (resized): it draws them
            return
        self.restore_region(background)
        self._draw_marks()
        self.update()  # painted with the window's next repaint, not one of its own

    def _set_marks(self, labelled: list[int], suggested: int | None) -> None:
        self.labelled, self.suggested = list(labelled), suggested
        self.ticks.set_data(self.labelled, [0.0] * len(self.labelled))
        self.chosen.set_visible(suggested is not None)
        if suggested is not None:
            self.chosen.set_xdata([suggested, suggested])

    def _draw_marks(self) -> None:
        self.mark_draws += 1
        self.figure.draw_artist(self.ticks)
        if self.chosen.get_visible():
            self.figure.draw_artist(self.chosen)

    def _whole_drawn(self, _event: object) -> None:
        """After each whole draw: keep the figure without the marks, then draw them on it."""
        self.full_draws += 1
        region = self.copy_from_bbox(self.figure.bbox)
        self._background = (region, self.get_width_height(physical=True))
        self._draw_marks()


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
        self.rule.setToolTip("How the next slice is picked (gap-middle: no rule measured better)")
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
        self.status.setText("")  # a suggestion from the last scores no longer holds
        self.status.setVisible(False)
        shape = None if image is None else image.data.shape
        if unc is not None and pred is not None and unc.data.shape == pred.data.shape == shape:
            data = np.asarray(unc.data)
            self.scores = slice_scores(data, np.asarray(pred.data), self.state.axis)
            self.kind = str(unc.metadata.get(UNCERTAINTY_KIND_KEY, ENTROPY))
        self.redraw()

    def _slices_changed(self) -> None:
        """Only the ticks: the scores do not depend on which slices are labelled."""
        labelled = sorted(self.labelled())
        if labelled != self.plot.labelled:
            self.plot.set_marks(labelled, self._chosen())

    def _chosen(self) -> int | None:
        return self.suggestion.slice if self.suggestion is not None else None

    def redraw(self) -> None:
        info = KINDS.get(self.kind)
        what = f"{info.title}{f' ({info.unit})' if info.unit else ''}" if info else ""
        self.plot.draw_plot(self.scores, self._n(), sorted(self.labelled()), self._chosen(), what)

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
        self.state.go_to_slice(suggestion.slice)
        unit = KINDS[self.kind].unit if self.kind in KINDS else ""
        self.status.setText(describe(suggestion, unit))
        self.status.setVisible(True)
        self.plot.set_marks(sorted(self.labelled()), suggestion.slice)
        return suggestion
