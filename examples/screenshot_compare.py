"""Refresh the README's picture of the dock's Compare panel (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python examples/screenshot_compare.py docs/compare.png [steps] [hold] [methods]

Opens the CT sample in a 1600 x 1000 window, holds out painted slice ``hold`` (default 13: the
methods train on slices 20 and 26 and are scored on 13), and compares ``methods`` (default
supervised,segpl; one seed, ``steps`` steps each, default 100) in the dock's Compare panel, as
a user would press Compare. When every run has been scored, the dock is scrolled to the panel's
buttons, table and curves, the viewer shows the held-out slice under the last run's
prediction, and the whole window is saved.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from qtpy.QtCore import QPoint
from qtpy.QtWidgets import QApplication
from screenshot_dock import close_notifications, open_dock, pump, save_window


def main(
    out: str = "docs/compare.png", steps: int = 100, hold: int = 13,
    methods: str = "supervised,segpl",
) -> Path:  # fmt: skip
    viewer, dock = open_dock()
    dock.params.steps.value = steps
    viewer.dims.set_current_step(2, hold)
    dock.data.toggle_held_out()
    panel = dock.compare
    chosen = methods.split(",")
    for name, box in panel.method_boxes.items():
        box.setChecked(name in chosen)
    panel.expand()
    pump(1.0)
    t0 = time.monotonic()
    if not panel.start():
        raise SystemExit(f"Compare did not start: {panel.hint.text()}")
    deadline = t0 + 3600
    while dock.state.comparing and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    took = time.monotonic() - t0
    pump(1.0)
    close_notifications(viewer)
    viewer.dims.set_current_step(2, hold)
    # the Compare buttons at the top of the scrolling part, unless the curves' bottom edge
    # would then be hidden
    inner, scroll = dock.scroll_area.widget(), dock.scroll_area
    top = panel.compare_button.mapTo(inner, QPoint(0, 0)).y() - 6
    bottom = panel.plots.mapTo(inner, QPoint(0, panel.plots.height())).y()
    value = max(top, bottom - scroll.viewport().height())
    label = panel.progress.mapTo(inner, QPoint(0, 0)).y()
    line = panel.progress.fontMetrics().lineSpacing()
    if label < value < label + panel.progress.height():  # no half line of text at the top
        value = label + -(-(value - label) // line) * line
    scroll.verticalScrollBar().setValue(value)
    pump(0.5)
    print(panel.progress.text())
    path = save_window(viewer, dock, out)
    print(f"saved {path}: {len(chosen)} methods, {steps} steps each, compare took {took:.0f} s")
    return path


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*args[:1], *(int(a) for a in args[1:3]), *args[3:4])
