"""Refresh the README's picture of the dock (run under Xvfb).

    xvfb-run -a -s "-screen 0 1600x1000x24" \\
        .venv/bin/python examples/screenshot_dock.py docs/dock.png [shot at step] [steps] [hold]
        [suggest]

Opens the CT sample in a 1600 x 1000 window and trains SegPL-VI with the default preset (or
``steps`` steps). With ``shot at step`` > 0 the screenshot of the whole window is taken while
the pseudo labels, the loss plot and the threshold plot are live; with 0 it waits until the run,
the safeguard's supervised check and the fill have ended and shows the safeguard's line. ``hold``
holds that slice out (scored by the safeguard, never trained on). ``suggest`` 1 then presses
Predict (the TTA std with twin, the dock's default after a safeguarded run), waits for it,
shows the uncertainty layer over the image, presses *Suggest next slice* and scrolls the dock
to the slice-score curve.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_segpl.gui import SegPLDock


def pump(seconds: float) -> None:
    """Let Qt run for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def open_dock() -> tuple[napari.Viewer, SegPLDock]:
    """A 1600 x 1000 window with the CT sample and the dock on the right."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock, name="SegPL", area="right")
    return viewer, dock


def close_notifications(viewer: napari.Viewer) -> None:
    """Start-up warnings would hide the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def save_window(viewer: napari.Viewer, dock: SegPLDock, out: str) -> Path:
    """The whole window to ``out``; then the dock and the viewer are closed."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    dock.shutdown()
    viewer.close()
    return path


def wait_until(done, seconds: float = 1800) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)


def predict_and_suggest(viewer: napari.Viewer, dock: SegPLDock) -> None:
    """Predict, show the uncertainty alone over the image, suggest the next slice."""
    from napari_segpl.gui.result_layers import PREDICTION, PROBABILITY, PSEUDO, UNCERTAINTY

    shown: list[object] = []
    dock.state.predicted.connect(shown.append)
    dock.start_prediction()
    wait_until(lambda: bool(shown) and not dock.state.busy)
    for other in (PREDICTION, PROBABILITY, PSEUDO):  # the image and the uncertainty alone
        if (hidden := dock.layers.get(other)) is not None:
            hidden.visible = False
    layer = dock.layers.get(UNCERTAINTY)
    if layer is not None:
        layer.visible = True
        viewer.layers.selection.active = layer
    dock.suggest.suggest()
    pump(0.5)
    dock.scroll_area.ensureWidgetVisible(dock.suggest.plot, 0, 0)


def main(
    out: str = "docs/dock.png",
    steps_before_shot: int = 150,
    steps: int = 0,
    hold: int = -1,
    suggest: int = 0,
) -> Path:
    viewer, dock = open_dock()
    p = dock.params
    p.method.value = "segpl-vi"
    p.steps.value = steps  # 0: the default preset's (auto: CT here)
    p.preview_every.value = 5
    if hold >= 0:  # a held-out slice, and the safeguard that scores both models there
        p.safeguard.value = True
        viewer.dims.set_current_step(2, hold)
        dock.data.toggle_held_out()
    viewer.dims.set_current_step(2, 17)
    pump(1.0)
    dock.start_training()
    pump(0.5)

    def done() -> bool:
        if steps_before_shot:
            return dock.training.progress.value() >= steps_before_shot
        return not dock.state.busy

    wait_until(done)
    dock.plots.loss_plot.refresh(force=True)
    dock.plots.threshold_plot.refresh(force=True)
    pump(0.5)
    close_notifications(viewer)
    if suggest and not steps_before_shot:
        predict_and_suggest(viewer, dock)
    elif not steps_before_shot:
        dock.scroll_area.ensureWidgetVisible(dock.results.safeguard_label)
    pump(0.3)
    path = save_window(viewer, dock, out)
    print(f"saved {path} at step {steps_before_shot}")
    return path


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*args[:1], *(int(a) for a in args[1:5]))
