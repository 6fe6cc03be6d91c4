"""The compare panel's curves: held-out IoU against the out-of-distribution mix gamma and
against the FGSM epsilon, and the reliability diagram, a line per method (the mean over its
seeds), redrawn as each run finishes.

The data are drawn by ``compare_figures`` (the code that draws ``segpl compare``'s PNG files),
so the dock and the files cannot disagree; this canvas only lays them out for a ~360 px dock
(2 x 2: the two curves, the diagram, and one legend for all three in the fourth cell) and
styles them in the viewer's theme. A full redraw (a few hundred ms) happens once per finished
run, not per step, so no blitting is needed.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure

from ..compare_figures import draw_curve, draw_reliability
from ..engine.compare import CompareResult
from .plots import theme_colours

#: pixels: two rows of axes with titles, tick labels and x labels at 8-9 pt
HEIGHT = 360
#: each cell's (title, x label), shorter than the PNG files' (the cells are ~170 px wide)
TITLES = {
    "ood": ("out of distribution", "gamma (shifted share)"),
    "adversarial": ("adversarial (FGSM)", "epsilon (normalised)"),
    "reliability": ("reliability", "predicted probability"),
}


class ComparePlots(FigureCanvasQTAgg):
    """The three plots of a ``CompareResult``; ``lines[plot][method]`` is each drawn line."""

    def __init__(self, theme_id: str = "dark") -> None:
        self.figure = Figure(figsize=(3.8, HEIGHT / 90), dpi=90)
        super().__init__(self.figure)
        self.colours = theme_colours(theme_id)
        self.figure.set_facecolor(self.colours["bg"])
        self.figure.subplots_adjust(left=0.12, right=0.96, bottom=0.1, top=0.94,
                                    wspace=0.25, hspace=0.45)  # fmt: skip
        self.axes: dict[str, Any] = dict(
            zip(
                ("ood", "adversarial", "reliability", "key"),
                self.figure.subplots(2, 2).ravel(),
                strict=True,
            )
        )
        self.lines: dict[str, dict[str, Any]] = {}
        self.setFixedHeight(HEIGHT)  # a resize redraws everything: the layout must not move
        self.show_result(None)

    def show_result(self, result: CompareResult | None) -> None:
        """Draw ``result``'s runs so far (nothing for None or no run)."""
        for ax in self.axes.values():
            ax.clear()
        self.lines = {}
        if result is not None and result.runs:
            self.lines["ood"] = draw_curve(self.axes["ood"], result, "ood")
            self.lines["adversarial"] = draw_curve(self.axes["adversarial"], result, "adversarial")
            self.lines["reliability"] = draw_reliability(self.axes["reliability"], result)
        for name, (title, xlabel) in TITLES.items():
            self._style(name, title, xlabel)
        mc = {f"{k} mean": line for k, line in self.lines.get("reliability", {}).items()
              if k.endswith(" MC")}  # SegPL-VI's Monte-Carlo mean: reliability only  # fmt: skip
        self._draw_key({**self.lines.get("ood", {}), **mc})
        self.draw_idle()

    def _style(self, name: str, title: str, xlabel: str) -> None:
        c, ax = self.colours, self.axes[name]
        ax.set_facecolor(c["bg"])
        ax.tick_params(colors=c["fg"], labelsize=8, length=2, pad=1)
        for spine in ax.spines.values():
            spine.set_color(c["grid"])
        ax.set_title(title, fontsize=9, color=c["fg"], pad=3)
        ax.set_xlabel(xlabel, fontsize=8, color=c["fg"], labelpad=1)
        ylabel = {"ood": "held-out IoU", "reliability": "observed"}.get(name, "")
        ax.set_ylabel(ylabel, fontsize=8, color=c["fg"], labelpad=1)
        ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])  # few labels: a cell is ~150 px wide
        if name == "reliability":
            ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])

    def _draw_key(self, lines: dict[str, Any]) -> None:
        """One legend for the three plots (a method has the same colour in each)."""
        key = self.axes["key"]
        key.set_axis_off()
        if not lines:
            return
        legend = key.legend(list(lines.values()), list(lines), loc="center", frameon=False,
                            fontsize=8, title="mean over seeds", title_fontsize=8)  # fmt: skip
        for text in [*legend.get_texts(), legend.get_title()]:
            text.set_color(self.colours["fg"])
