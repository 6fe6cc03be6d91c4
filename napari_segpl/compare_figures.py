"""The compare's figures, drawn once for the PNG files of ``segpl compare`` and for the dock's
compare panel: a robustness curve (held-out IoU against the out-of-distribution mix gamma or the
FGSM epsilon) and the reliability diagram, each drawn on a matplotlib ``Axes`` the caller owns,
so both front ends show the same numbers drawn by the same code. No Qt and no pyplot here.
"""

from __future__ import annotations

import io
import math
from typing import Any

#: the robustness curves: the result's key, the attribute holding its x values, the x label
CURVES = {
    "ood": ("gammas", "gamma (share of the shifted input)"),
    "adversarial": ("epsilons", "FGSM epsilon (normalised units)"),
}


def draw_curve(ax: Any, result: Any, key: str) -> dict[str, Any]:
    """Held-out IoU (mean over classes) against gamma (``key`` "ood") or FGSM epsilon
    ("adversarial") on ``ax``: a line per method, the mean over its seeds with their SD as
    error bars. The one drawing of the PNG files and the dock's compare panel, so both show the
    same numbers. Returns each method's line."""
    attr, label = CURVES[key]
    lines = {}
    for i, r in enumerate(result.summary()):
        bars = ax.errorbar(getattr(result, attr), r[key], yerr=r[f"{key}_sd"], marker="o",
                           markersize=3, capsize=2, color=f"C{i}", label=r["method"])  # fmt: skip
        lines[r["method"]] = bars.lines[0]
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(label)
    ax.set_ylabel("held-out IoU (mean over classes)")
    return lines


def reliability_points(calibration: dict[str, list]) -> list[tuple[float, float]]:
    """(mean predicted probability, observed frequency) of each bin holding voxels."""
    bins = zip(calibration["mean_p"], calibration["freq"], calibration["count"], strict=True)
    return [(p, f) for p, f, c in bins if c and p is not None and math.isfinite(p)]


def draw_reliability(ax: Any, result: Any) -> dict[str, Any]:
    """The reliability diagram on ``ax``: observed frequency against predicted probability
    over the held-out voxels and class channels, a line per method (bins pooled over its
    seeds), the diagonal for perfect calibration, and a dotted line for a method's Monte-Carlo
    mean where it has one ("METHOD MC"). Returns each line (none without a filled bin)."""
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    lines = {}
    for i, r in enumerate(result.summary()):
        points = reliability_points(r["calibration"])
        if points:
            (lines[r["method"]],) = ax.plot(
                *zip(*points, strict=True), marker="o", markersize=3, color=f"C{i}",
                label=f"{r['method']} (ECE {_ece(r['ece'])})",
            )  # fmt: skip
        if r.get("calibration_mc") and (points := reliability_points(r["calibration_mc"])):
            (lines[f"{r['method']} MC"],) = ax.plot(  # SegPL-VI's Monte-Carlo mean, dotted
                *zip(*points, strict=True), marker="s", markersize=3, color=f"C{i}",
                linestyle=":", label=f"{r['method']} MC mean (ECE {_ece(r['ece_mc'])})",
            )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    return lines


def plots(result: Any) -> dict[str, bytes]:
    """PNG bytes of the two robustness curves and the reliability diagram (matplotlib's Agg
    canvas, no pyplot: no global backend is touched)."""
    from matplotlib.figure import Figure

    out = {}
    for key in CURVES:
        fig = Figure(figsize=(5, 3.6))
        ax = fig.add_subplot()
        draw_curve(ax, result, key)
        ax.legend(fontsize=7)
        out[f"{key}.png"] = _png(fig)
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot()
    draw_reliability(ax, result)
    ax.legend(fontsize=7, loc="upper left")
    out["reliability.png"] = _png(fig)
    return out


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def _ece(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"
