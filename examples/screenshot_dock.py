"""Refresh the README's picture of the dock during training (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1200x24" \
        .venv/bin/python examples/screenshot_dock.py docs/dock.png

Opens the CT sample, trains SegPL-VI with the default preset past its supervised burn-in and
saves a screenshot of the whole window while pseudo labels and the threshold plot are live.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_segpl.gui import SegPLDock


def main(out: str = "docs/dock.png", steps_before_shot: int = 150) -> Path:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 1150)
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock, name="SegPL", area="right")
    p = dock.params
    p.method.value = "segpl-vi"
    p.preview_every.value = 5  # everything else: the default preset (auto: CT here)
    viewer.dims.set_current_step(2, 17)
    dock.start_training()
    deadline = time.monotonic() + 600
    while dock.progress.value() < steps_before_shot and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    dock.loss_plot.refresh(force=True)
    dock.threshold_plot.refresh(force=True)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # start-up warnings would hide the canvas
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    dock.shutdown()
    viewer.close()
    print(f"saved {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
