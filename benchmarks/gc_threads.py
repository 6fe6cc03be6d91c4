"""Crashes when Python's collector deletes Qt objects outside the GUI thread.

A dock trains (SegPL, 2D, width 4, a 32 x 28 x 20 volume painted on 3 slices, one torch
thread) while the GUI thread makes, every 10 ms, ``--garbage`` parentless widgets and QObjects
that each refer to themselves: Qt objects only the cyclic collector frees, as a closed dock's
parentless widgets are. Each run is its own process, ``--seconds`` long; a run that dies of a
signal crashed.

- ``automatic``: the collector as Python runs it, in whichever thread allocates (the training
  worker too): the dock's ``heap.hold`` is undone by ``gc.enable()`` right after it;
- ``gui``: the dock as shipped: the automatic collector off, ``heap.collect_due`` on the GUI
  thread's timer.

The two arms alternate, ``--runs`` each. Run under Xvfb:

    xvfb-run -a .venv/bin/python -m benchmarks gc_threads [--runs 5] [--seconds 60]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import time

ARMS = ("automatic", "gui")


def child(arm: str, seconds: float, garbage: int) -> None:
    import faulthandler

    import napari
    import numpy as np
    import torch
    from qtpy.QtCore import QObject, QTimer
    from qtpy.QtWidgets import QApplication, QWidget

    from napari_segpl.gui.dock import SegPLDock

    faulthandler.enable()
    torch.set_num_threads(1)
    viewer = napari.Viewer(show=False)
    rng = np.random.default_rng(0)
    image = rng.normal(size=(32, 28, 20)).astype(np.float32)
    truth = np.zeros(image.shape, np.uint8)
    truth[6:20, 6:20] = 1
    image[truth == 1] += 2.0
    painted = np.zeros_like(truth)
    painted[..., [5, 10, 15]] = truth[..., [5, 10, 15]]  # three slices along axis 2
    viewer.add_image(image, name="toy")
    viewer.add_labels(painted, name="toy labels")
    dock = SegPLDock(viewer)
    if arm == "automatic":
        gc.enable()
    form = dock.params
    form.method.value, form.dims.value, form.patch.value = "segpl", 2, 32
    form.steps.value, form.safeguard.value, form.channels.value = 100_000, False, 4

    def make_garbage() -> None:
        for _ in range(garbage):
            widget, plain = QWidget(), QObject()
            widget.me, plain.me = widget, plain

    tick = QTimer()
    tick.timeout.connect(make_garbage)
    tick.start(10)
    steps: list[int] = []
    dock.state.step.connect(lambda event: steps.append(event.step))
    assert dock.start_training()
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.002)
    print(f"steps {len(steps)}", flush=True)
    dock.shutdown()
    viewer.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks gc_threads")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--garbage", type=int, default=20, help="objects of each kind a tick")
    parser.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.seconds, args.garbage)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = {arm: [] for arm in ARMS}
    for _ in range(args.runs):
        for arm in ARMS:
            command = [sys.executable, "-m", "benchmarks", "gc_threads", "--child", arm]
            command += ["--seconds", str(args.seconds), "--garbage", str(args.garbage)]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            steps = [line for line in done.stdout.splitlines() if line.startswith("steps")]
            rows[arm].append((done.returncode, steps[-1].split()[1] if steps else "-"))
            print(arm, rows[arm][-1], flush=True)
    print("\n| collector | runs | crashed | exit codes | training steps per run |")
    print("|---|---|---|---|---|")
    for arm, runs in rows.items():
        crashed = sum(code != 0 for code, _ in runs)
        codes = " ".join(str(code) for code, _ in runs)
        steps = " ".join(s for _, s in runs)
        print(f"| {arm} | {len(runs)} | {crashed} | {codes} | {steps} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
