"""Responsiveness of the window while the dock trains: the longest stalls of the Qt event loop.

A 10 ms QTimer runs on the GUI thread during training; each firing records how late it came.
A stall is that lateness: time the event loop could not react (paint, mouse, keyboard).
Targets: p99 <= 50 ms and max <= 200 ms. The same run is then repeated headless (the engine's
generator alone) to show what the live views cost in training speed. Run under Xvfb:

    xvfb-run -a .venv/bin/python -m benchmarks event_loop
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .heartbeat import FullCollections, Heartbeat


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks event_loop")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--method", default="segpl-vi")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_segpl.gui import SegPLDock

    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock)
    dock.params.method.value = args.method
    dock.params.steps.value = args.steps
    dock.params.safeguard.value = False  # the run alone, as measured before the safeguard
    app = QApplication.instance()
    dock.warmed_up.wait(30)  # as a user would: the dock has been open a moment before Train
    for _ in range(50):  # let the window settle before measuring
        app.processEvents()
        time.sleep(0.01)

    heart, collections = Heartbeat(), FullCollections()
    heart.start()
    collections.start()
    gui_steps: list[float] = []
    dock.state.step.connect(lambda e: gui_steps.append(e.seconds_per_step))
    viewer_image = np.asarray(viewer.layers["lungs_ct"].data)
    labelled = dock.data.labelled()
    t0 = time.perf_counter()
    dock.start_training()
    while dock.state.busy:
        app.processEvents()
        time.sleep(0.001)
    seconds = time.perf_counter() - t0
    heart.stop()
    collections.stop()
    steps = dock.model.steps_done if dock.model else 0
    print(f"{args.method}, {steps} steps in {seconds:.1f} s (incl. final pseudo-label fill)")
    print(heart.table())
    print(f"during the run: {collections.summary()}")
    config = dock.params.config(dock.state.axis)
    labels = viewer.layers["lungs_ct labels"]
    dock.shutdown()
    viewer.close()

    from napari_segpl.engine import StepEvent, Trainer, prepare_data

    image = viewer_image
    data = prepare_data(image, np.array(labels.data), config, labelled)
    headless = [e.seconds_per_step for e in Trainer(config, data).run() if isinstance(e, StepEvent)]
    gui_mean, cli_mean = np.mean(gui_steps[2:]), np.mean(headless[2:])
    print(
        f"seconds per step (mean after 2): dock {gui_mean:.3f}, headless {cli_mean:.3f}, "
        f"ratio {gui_mean / cli_mean:.3f}"
    )
    return 0
