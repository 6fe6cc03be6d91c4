"""Responsiveness while painting: the longest stalls of the Qt event loop while brush strokes
are applied to a large labels layer with the dock open.

The dock keeps its list of labelled slices up to date as the user paints. It used to re-scan
the whole labels volume (``np.any`` over every voxel) on the GUI thread 250 ms after every
stroke; it now re-checks only the slices the stroke touched. A 10 ms QTimer heartbeat records
how late each firing comes while strokes (a brush dragged over 10 points, one undo item) are
applied one brush position per ``--every`` ms, as mouse moves come (every fifth stroke on
another slice); a stall is that lateness, whatever causes it (napari's own repaint of the
slice after each dab included). Target: p99 <= 50 ms.
Run under Xvfb:

    xvfb-run -a .venv/bin/python -m benchmarks paint_stall [--shape 512 512 400]

To measure another version of the dock, run this from that version's checkout.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .heartbeat import FullCollections, Heartbeat


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks paint_stall")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400])
    parser.add_argument("--strokes", type=int, default=40)
    parser.add_argument("--every", type=int, default=30, help="ms between mouse moves")
    parser.add_argument(
        "--no-dock", action="store_true", help="napari alone: the floor the dock adds to"
    )
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    import napari_segpl
    from napari_segpl.gui import SegPLDock

    shape = tuple(args.shape)
    viewer = napari.Viewer(show=True)
    viewer.add_image(np.zeros(shape, np.uint8), name="image")
    labels = viewer.add_labels(np.zeros(shape, np.uint8), name="labels")
    labels.data[100:140, 100:140, 10] = 1  # one painted slice to start from
    dock = None if args.no_dock else SegPLDock(viewer)
    if dock is not None:
        viewer.window.add_dock_widget(dock)
    app = QApplication.instance()
    for _ in range(100):  # let the window settle (and the dock's first scan happen)
        app.processEvents()
        time.sleep(0.01)
    labels.brush_size = 10
    axis = int(viewer.dims.order[0])  # the sliced axis
    rng = np.random.default_rng(0)

    heart, collections = Heartbeat(), FullCollections()
    done = [0]
    dab = [0]  # brush positions of the stroke under way
    start = [np.zeros(2)]
    plane = [a for a in range(3) if a != axis]

    def step() -> None:
        """One mouse move of a drag: the first starts a stroke (every 5th on another slice),
        the 10th ends it (napari makes the 10 dabs one undo item and one paint event)."""
        if dab[0] == 0:
            if done[0] % 5 == 0:
                viewer.dims.set_current_step(axis, int(rng.integers(0, shape[axis])))
            start[0] = rng.uniform(50, min(shape[a] for a in plane) - 80, 2)
            begin = getattr(labels, "_begin_stroke", None)
            if begin is not None:
                begin()
        coord = [0.0, 0.0, 0.0]
        coord[axis] = viewer.dims.current_step[axis]
        coord[plane[0]] = start[0][0] + 3 * dab[0]
        coord[plane[1]] = start[0][1] + 2 * dab[0]
        labels.paint(coord, 1 + done[0] % 2)
        dab[0] += 1
        if dab[0] == 10:
            commit = getattr(labels, "_commit_stroke", None)
            if commit is not None:
                commit()
            dab[0] = 0
            done[0] += 1

    painter = QTimer()
    painter.setInterval(args.every)
    painter.timeout.connect(step)
    heart.start()
    collections.start()
    painter.start()
    while done[0] < args.strokes:
        app.processEvents()
        time.sleep(0.001)
    t_end = time.perf_counter() + 0.5  # the last stroke's delayed work, if any
    while time.perf_counter() < t_end:
        app.processEvents()
        time.sleep(0.001)
    heart.stop()
    collections.stop()
    painter.stop()
    print("no dock" if dock is None else f"dock from {napari_segpl.__file__}")
    print(f"labels {shape[0]} x {shape[1]} x {shape[2]} uint8, {args.strokes} strokes")
    print(heart.table())
    print(f"while painting: {collections.summary()}")
    if dock is not None:
        dock.shutdown()
    viewer.close()
    return 0
