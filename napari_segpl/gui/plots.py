"""Live plots in the dock: losses, SegPL-VI's threshold distribution against its prior, and
the Dice per class on held-out slices (the validation curve).

A full matplotlib redraw costs 100-300 ms on a 2-core CPU, far too long for the GUI thread
every few steps. So the axes have fixed limits (losses and T live in [0, 1]; the step axis spans
the whole run), the lines are drawn "animated" and updated by blitting (a few ms), and a full
redraw happens only when a limit must grow, on resize, or when a hidden plot is shown again.
Updates are also throttled to ``min_interval`` seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


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


class _BlitCanvas(FigureCanvasQTAgg):
    """A canvas whose data artists are blitted over a cached background."""

    def __init__(self, theme_id: str, height: float = 1.9, min_interval: float = 1.0) -> None:
        self.figure = Figure(figsize=(3.2, height), dpi=90)
        super().__init__(self.figure)
        self.colours = theme_colours(theme_id)
        self.figure.set_facecolor(self.colours["bg"])
        self.min_interval = min_interval
        self._last = 0.0
        self._background = None
        self.full_draws = 0
        self.blits = 0
        # A fixed height: any resize forces a full redraw (100-200 ms), so the layout must not
        # move while training (e.g. when a status line wraps).
        self.setFixedHeight(int(height * 80))
        self.mpl_connect("draw_event", self._on_draw)

    def style(self, ax, title: str) -> None:
        c = self.colours
        ax.set_facecolor(c["bg"])
        ax.tick_params(colors=c["fg"], labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(c["grid"])
        ax.set_title(title, fontsize=9, color=c["fg"])

    def legend(self, ax, handles) -> None:
        legend = ax.legend(handles=handles, fontsize=7, frameon=False, loc="upper right")
        for text in legend.get_texts():
            text.set_color(self.colours["fg"])

    # subclasses provide these two
    def artists(self) -> list:
        raise NotImplementedError

    def update_artists(self) -> bool:
        """Push the data into the artists; True when an axis limit changed (full redraw)."""
        raise NotImplementedError

    def _on_draw(self, _event) -> None:
        self._background = self.copy_from_bbox(self.figure.bbox)
        self._draw_artists()

    def _draw_artists(self) -> None:
        for artist in self.artists():
            self.figure.draw_artist(artist)

    def refresh(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        # The data reach the artists even while hidden (cheap); only drawing waits for a show.
        grown = self.update_artists()
        if not self.isVisible():
            self._background = None  # redraw fully when shown again
            return
        if grown or self._background is None or force:
            self.full_draws += 1
            self.draw()
            return
        self.blits += 1
        self.restore_region(self._background)
        self._draw_artists()
        self.blit(self.figure.bbox)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self._background = None  # Qt's resize/paint on showing redraws once; blit after that

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._background = None


class LossPlot(_BlitCanvas):
    """Supervised and unsupervised loss terms (and KL for SegPL-VI) against the step."""

    KEYS = (("sup", "supervised"), ("unsup", "pseudo-label"), ("kl", "KL"))

    def __init__(self, theme_id: str = "dark") -> None:
        super().__init__(theme_id)
        self.ax = self.figure.add_subplot()
        # Room on the right for the last step label: the dock can be as narrow as ~300 px.
        self.figure.subplots_adjust(left=0.12, right=0.95, bottom=0.14, top=0.88)
        self.reset(100)

    def reset(self, total_steps: int) -> None:
        self.steps: list[int] = []
        self.values: dict[str, list[float]] = {k: [] for k, _ in self.KEYS}
        self.ax.clear()
        self.style(self.ax, "losses")
        self.ax.set_xlim(0, max(total_steps, 1))
        self.ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        self.ax.set_ylim(0, 1.0)
        self.lines = {}
        for key, label in self.KEYS:
            (self.lines[key],) = self.ax.plot([], [], label=label, linewidth=1.2, animated=True)
        self.legend(self.ax, list(self.lines.values()))
        self._background = None

    def set_total(self, total_steps: int) -> None:
        """The run's own step count (an ensemble's members x steps, one thin slice's more)."""
        _set_xlim(self, self.ax, total_steps)

    def add(self, step: int, losses: dict[str, float]) -> None:
        self.steps.append(step)
        for key, _ in self.KEYS:
            self.values[key].append(losses.get(key, math.nan))

    def artists(self) -> list:
        return list(self.lines.values())

    def update_artists(self) -> bool:
        top = 1.0
        for key, line in self.lines.items():
            line.set_data(self.steps, self.values[key])
            finite = [v for v in self.values[key] if math.isfinite(v)]
            if finite:
                top = max(top, max(finite))
        if top > self.ax.get_ylim()[1]:
            self.ax.set_ylim(0, top * 1.2)
            return True
        return False


class ThresholdPlot(_BlitCanvas):
    """Left: the current density N(mu, sigma) of T against the prior. Right: mu +- sigma."""

    def __init__(self, theme_id: str = "dark") -> None:
        super().__init__(theme_id)
        self.density, self.trace = self.figure.subplots(1, 2)
        self.figure.subplots_adjust(left=0.08, right=0.95, bottom=0.14, top=0.86, wspace=0.3)
        self.grid = np.linspace(0.0, 1.0, 201)
        self.reset(0.5, 0.1, 100)

    def reset(self, prior_mu: float, prior_sigma: float, total_steps: int = 100) -> None:
        self.prior = (prior_mu, prior_sigma)
        self.steps: list[int] = []
        self.mu: list[float] = []
        self.sigma: list[float] = []
        for ax, title in ((self.density, "threshold T"), (self.trace, "mu +- sigma")):
            ax.clear()
            self.style(ax, title)
        prior = _normal(self.grid, *self.prior)
        (prior_line,) = self.density.plot(
            self.grid, prior, "--", color=self.colours["fg"], alpha=0.6, linewidth=1.0,
            label="prior",
        )  # fmt: skip
        (self.current,) = self.density.plot(
            [], [], color=self.colours["accent"], label="learnt", animated=True
        )
        self.density.set_xlim(0, 1)
        self.density.set_xticks([0, 0.5, 1])  # few labels: each panel is only ~130 px wide
        self.density.set_ylim(0, prior.max() * 1.3)
        self.legend(self.density, [prior_line, self.current])
        (self.mu_line,) = self.trace.plot(
            [], [], color=self.colours["accent"], linewidth=1.2, animated=True
        )
        self.trace.axhline(prior_mu, color=self.colours["fg"], alpha=0.4, linestyle="--")
        self.trace.set_xlim(0, max(total_steps, 1))
        self.trace.xaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        self.trace.set_ylim(0, 1)
        self.band = None
        self._background = None

    def set_total(self, total_steps: int) -> None:
        _set_xlim(self, self.trace, total_steps)

    def add(self, step: int, mu: float, sigma: float) -> None:
        self.steps.append(step)
        self.mu.append(mu)
        self.sigma.append(sigma)

    def artists(self) -> list:
        return [a for a in (self.current, self.mu_line, self.band) if a is not None]

    def update_artists(self) -> bool:
        if not self.steps:
            return False
        density = _normal(self.grid, self.mu[-1], self.sigma[-1])
        self.current.set_data(self.grid, density)
        steps, m, s = np.array(self.steps), np.array(self.mu), np.array(self.sigma)
        self.mu_line.set_data(steps, m)
        if self.band is not None:
            self.band.remove()
        self.band = self.trace.fill_between(
            steps, m - s, m + s, color=self.colours["accent"], alpha=0.3, linewidth=0,
            animated=True,
        )  # fmt: skip
        if density.max() > self.density.get_ylim()[1]:
            self.density.set_ylim(0, density.max() * 1.3)
            return True
        return False


class DicePlot(_BlitCanvas):
    """Dice per class on the held-out slices against the step, with its latest value in the
    legend. Low (~100 px): it sits below the losses only for runs with held-out slices, and
    the dock's scrolling part above must keep its room. Its few points (about 25 a run) are
    each blitted at once: no throttle."""

    #: not the losses' colours (C0-C2), so a class's curve is never read as a loss
    COLOURS = ("#e5c07b", "#c792ea", "#56c2a6", "#f07178", "#89ddff", "#e8744f")

    def __init__(self, theme_id: str = "dark") -> None:
        super().__init__(theme_id, height=1.3, min_interval=0.0)
        self.ax = self.figure.add_subplot()
        self.figure.subplots_adjust(left=0.12, right=0.95, bottom=0.2, top=0.84)
        self.reset(100, 0)

    def reset(self, total_steps: int, classes: int, slices: Sequence[int] = ()) -> None:
        self.steps: list[int] = []
        self.values: list[list[float]] = [[] for _ in range(classes)]
        self.ax.clear()
        self.style(self.ax, f"held-out Dice{_which(slices)}")
        self.ax.set_xlim(0, max(total_steps, 1))
        self.ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        self.ax.set_ylim(0, 1.05)
        self.ax.set_yticks([0, 0.5, 1])
        self.lines = [
            self.ax.plot(
                [], [], color=self.COLOURS[c % len(self.COLOURS)], marker="o", markersize=2.5,
                linewidth=1.2, label=f"class {c + 1}", animated=True,
            )[0]
            for c in range(classes)
        ]  # fmt: skip
        self.key = None
        if self.lines:
            self.key = self.ax.legend(
                handles=self.lines, fontsize=7, frameon=False, loc="lower right",
                ncol=1 if classes <= 3 else 2, handlelength=1.2,
            )  # fmt: skip
            self.key.set_animated(True)  # its texts carry the latest values: blitted too
            for text in self.key.get_texts():
                text.set_color(self.colours["fg"])
        self._background = None

    def set_total(self, total_steps: int) -> None:
        _set_xlim(self, self.ax, total_steps)

    def add(self, step: int, dice: list[float]) -> None:
        self.steps.append(step)
        for c, values in enumerate(self.values):
            values.append(dice[c] if c < len(dice) else math.nan)

    def artists(self) -> list:
        return [*self.lines, *([self.key] if self.key is not None else [])]

    def update_artists(self) -> bool:
        for c, line in enumerate(self.lines):
            line.set_data(self.steps, self.values[c])
            if self.key is not None and self.values[c]:
                self.key.get_texts()[c].set_text(f"class {c + 1}  {self.values[c][-1]:.3f}")
        return False


def _which(slices: Sequence[int]) -> str:
    """Which slices a title is about, briefly (the dock is ~360 px wide)."""
    if not slices:
        return ""
    if len(slices) > 3:
        return f", {len(slices)} slices"
    return f", slice{'s' if len(slices) > 1 else ''} " + ", ".join(str(s) for s in slices)


def _set_xlim(canvas: _BlitCanvas, ax, total_steps: int) -> None:
    """A new step axis: the cached background no longer matches, so the next refresh draws."""
    if ax.get_xlim()[1] != max(total_steps, 1):
        ax.set_xlim(0, max(total_steps, 1))
        canvas._background = None


def _normal(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    sigma = max(sigma, 1e-6)
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
