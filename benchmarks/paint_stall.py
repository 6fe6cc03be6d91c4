"""Responsiveness while painting: the longest stalls of the Qt event loop while brush strokes
are applied to a large labels layer with the dock open.

The dock keeps its list of labelled slices up to date as the user paints. It used to re-scan
the whole labels volume (``np.any`` over every voxel) on the GUI thread 250 ms after every
stroke; it now re-checks only the slices the stroke touched. A 10 ms QTimer heartbeat records
how late each firing comes while strokes (a brush dragged over 10 points, one undo item) are
applied every ``--every`` ms on changing slices; a stall is that lateness. Target: p99 <= 50 ms.
Run under Xvfb:

    xvfb-run -a .venv/bin/python -m benchmarks paint_stall [--shape 512 512 400]

To measure another version of the dock, put its package first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks paint_stall")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400])
    parser.add_argument("--strokes", type=int, default=40)
    parser.add_argument("--every", type=int, default=300, help="ms between strokes")
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
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock)
    app = QApplication.instance()
    for _ in range(100):  # let the window settle (and the dock's first scan happen)
        app.processEvents()
        time.sleep(0.01)
    labels.brush_size = 10
    axis = int(viewer.dims.order[0])  # the sliced axis
    rng = np.random.default_rng(0)

    interval = 0.010
    lateness: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        lateness.append(max(0.0, now - last[0] - interval))
        last[0] = now

    done = [0]

    def stroke() -> None:
        s = int(rng.integers(0, shape[axis]))
        viewer.dims.set_current_step(axis, s)
        start = rng.uniform(50, min(shape[a] for a in range(3) if a != axis) - 50, 2)
        begin = getattr(labels, "_begin_stroke", None)
        if begin is not None:
            begin()
        for k in range(10):  # a drag of 10 brush positions: one undo item, one paint event
            coord = [0.0, 0.0, 0.0]
            plane = [a for a in range(3) if a != axis]
            coord[axis] = s
            coord[plane[0]], coord[plane[1]] = start[0] + 3 * k, start[1] + 2 * k
            labels.paint(coord, int(rng.integers(1, 3)))
        commit = getattr(labels, "_commit_stroke", None)
        if commit is not None:
            commit()
        done[0] += 1

    heart, painter = QTimer(), QTimer()
    heart.setInterval(int(interval * 1000))
    heart.timeout.connect(tick)
    painter.setInterval(args.every)
    painter.timeout.connect(stroke)
    heart.start()
    painter.start()
    while done[0] < args.strokes:
        app.processEvents()
        time.sleep(0.001)
    t_end = time.perf_counter() + 0.5  # the last stroke's delayed work, if any
    while time.perf_counter() < t_end:
        app.processEvents()
        time.sleep(0.001)
    heart.stop()
    painter.stop()
    stalls = np.array(lateness[5:]) * 1000
    print(f"dock from {napari_segpl.__file__}")
    print(f"labels {shape[0]} x {shape[1]} x {shape[2]} uint8, {args.strokes} strokes")
    print("| samples | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    print(
        f"| {len(stalls)} | {np.percentile(stalls, 50):.1f} | {np.percentile(stalls, 99):.1f} "
        f"| {stalls.max():.1f} |"
    )
    dock.shutdown()
    viewer.close()
    return 0
