"""Live plots in the dock: losses, and SegPL-VI's threshold distribution against its prior.

Redraws are throttled (``min_interval`` seconds) and use ``draw_idle``: a matplotlib redraw costs
tens of milliseconds on the GUI thread, so redrawing after every step would stall the window.
"""

from __future__ import annotations

import math
import time

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


def theme_colours(theme_id: str) -> dict[str, str]:
    """Background, text and accent colours of a napari theme (dark fallback)."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(theme_id)
        return {
            "bg": theme.canvas.as_hex(),
            "fg": theme.text.as_hex(),
            "grid": theme.primary.as_hex(),
            "accent": theme.current.as_hex(),
        }
    except Exception:  # an unknown theme must not break the dock
        return {"bg": "#262930", "fg": "#f0f1f2", "grid": "#5a626c", "accent": "#7ea6d4"}


class _Canvas(FigureCanvasQTAgg):
    def __init__(self, theme_id: str, height: float = 1.9, min_interval: float = 0.5) -> None:
        self.figure = Figure(figsize=(3.2, height), dpi=90, layout="constrained")
        super().__init__(self.figure)
        self.colours = theme_colours(theme_id)
        self.min_interval = min_interval
        self._last_draw = 0.0
        self.setMinimumHeight(int(height * 70))

    def style(self, ax) -> None:
        c = self.colours
        self.figure.set_facecolor(c["bg"])
        ax.set_facecolor(c["bg"])
        ax.tick_params(colors=c["fg"], labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(c["grid"])
        ax.xaxis.label.set_color(c["fg"])
        ax.yaxis.label.set_color(c["fg"])
        ax.title.set_color(c["fg"])

    def maybe_draw(self, force: bool = False) -> bool:
        """Redraw unless one happened less than ``min_interval`` seconds ago."""
        now = time.perf_counter()
        if not force and now - self._last_draw < self.min_interval:
            return False
        self._last_draw = now
        self.draw_idle()
        return True


class LossPlot(_Canvas):
    """Supervised and unsupervised loss terms (and KL for SegPL-VI) against the step."""

    KEYS = (("sup", "supervised"), ("unsup", "pseudo-label"), ("kl", "KL"))

    def __init__(self, theme_id: str = "dark") -> None:
        super().__init__(theme_id)
        self.ax = self.figure.add_subplot()
        self.reset()

    def reset(self) -> None:
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {k: [] for k, _ in self.KEYS}
        self.ax.clear()
        self.style(self.ax)
        self.ax.set_xlabel("step", fontsize=8)
        self.ax.set_title("losses", fontsize=9)
        self.lines = {}
        for key, label in self.KEYS:
            (self.lines[key],) = self.ax.plot([], [], label=label, linewidth=1.2)
        self.maybe_draw(force=True)

    def add(self, step: int, losses: dict[str, float]) -> None:
        self.steps.append(step)
        for key, _ in self.KEYS:
            self.values[key].append(losses.get(key, math.nan))

    def refresh(self, force: bool = False) -> None:
        if not self.steps or not self.maybe_draw(force):
            return
        shown = []
        for key, line in self.lines.items():
            values = self.values[key]
            line.set_data(self.steps, values)
            line.set_visible(not all(math.isnan(v) for v in values))
            if line.get_visible():
                shown.append(line)
        self.ax.relim()
        self.ax.autoscale_view()
        legend = self.ax.legend(handles=shown, fontsize=7, frameon=False)
        for text in legend.get_texts():
            text.set_color(self.colours["fg"])


class ThresholdPlot(_Canvas):
    """Left: the current density N(mu, sigma) of T against the prior. Right: mu +- sigma."""

    def __init__(self, theme_id: str = "dark") -> None:
        super().__init__(theme_id)
        self.density, self.trace = self.figure.subplots(1, 2)
        self.reset(0.5, 0.1)

    def reset(self, prior_mu: float, prior_sigma: float) -> None:
        self.prior = (prior_mu, prior_sigma)
        self.steps: list[int] = []
        self.mu: list[float] = []
        self.sigma: list[float] = []
        self.grid = np.linspace(0.0, 1.0, 201)
        for ax, title in ((self.density, "threshold T"), (self.trace, "mu +- sigma")):
            ax.clear()
            self.style(ax)
            ax.set_title(title, fontsize=9)
        self.density.plot(
            self.grid, _normal(self.grid, *self.prior), "--", color=self.colours["fg"],
            alpha=0.6, linewidth=1.0, label="prior",
        )  # fmt: skip
        (self.current,) = self.density.plot([], [], color=self.colours["accent"], label="learnt")
        legend = self.density.legend(fontsize=7, frameon=False)
        for text in legend.get_texts():
            text.set_color(self.colours["fg"])
        (self.mu_line,) = self.trace.plot([], [], color=self.colours["accent"], linewidth=1.2)
        self.band = None
        self.trace.set_xlabel("step", fontsize=8)
        self.maybe_draw(force=True)

    def add(self, step: int, mu: float, sigma: float) -> None:
        self.steps.append(step)
        self.mu.append(mu)
        self.sigma.append(sigma)

    def refresh(self, force: bool = False) -> None:
        if not self.steps or not self.maybe_draw(force):
            return
        mu, sigma = self.mu[-1], self.sigma[-1]
        self.current.set_data(self.grid, _normal(self.grid, mu, sigma))
        self.density.relim()
        self.density.autoscale_view()
        steps, m, s = np.array(self.steps), np.array(self.mu), np.array(self.sigma)
        self.mu_line.set_data(steps, m)
        if self.band is not None:
            self.band.remove()
        self.band = self.trace.fill_between(
            steps, m - s, m + s, color=self.colours["accent"], alpha=0.3, linewidth=0
        )
        self.trace.relim()
        self.trace.autoscale_view()


def _normal(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    sigma = max(sigma, 1e-6)
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
