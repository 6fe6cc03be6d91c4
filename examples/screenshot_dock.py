"""Refresh the README's picture of the dock during training (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python examples/screenshot_dock.py docs/dock.png [shot at step] [steps]

Opens the CT sample in a 1600 x 1000 window, trains SegPL-VI with the default preset (or
``steps`` steps) past its supervised burn-in and saves a screenshot of the whole window while
the pseudo labels, the loss plot and the threshold plot are live.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_segpl.gui import SegPLDock


def _pump(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def main(out: str = "docs/dock.png", steps_before_shot: int = 150, steps: int = 0) -> Path:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock, name="SegPL", area="right")
    p = dock.params
    p.method.value = "segpl-vi"
    p.steps.value = steps  # 0: the default preset's (auto: CT here)
    p.preview_every.value = 5
    viewer.dims.set_current_step(2, 17)
    _pump(1.0)
    dock.start_training()
    deadline = time.monotonic() + 1800
    while dock.training.progress.value() < steps_before_shot and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    dock.plots.loss_plot.refresh(force=True)
    dock.plots.threshold_plot.refresh(force=True)
    _pump(0.5)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # start-up warnings would hide the canvas
    _pump(0.3)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    dock.shutdown()
    viewer.close()
    print(f"saved {path} at step {steps_before_shot}")
    return path


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*args[:1], *(int(a) for a in args[1:3]))
