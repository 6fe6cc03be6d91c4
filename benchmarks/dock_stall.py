"""Responsiveness with a big scan loaded: the longest stalls of the Qt event loop while the
user slices through the volume and works the slice list, with the dock open and with napari
alone (the floor: slicing four layers of this size is napari's own cost).

The window (1600 x 1000) holds a generated 512 x 512 x 400 int16 CT, a labels layer with
``--painted`` slices painted, and the layers a user has after a run: pseudo labels and a
prediction of the same shape (the dock's own layers when the dock is open; the slice-score
curve shows a score per slice). A 10 ms QTimer heartbeat records how late each firing comes:

- ``slice``: the slice along the labelling axis steps by one every ``--every`` ms, as a
  dragged slider or a held arrow key moves it, ``--steps`` steps forward, as many back, then
  ``--jumps`` jumps to random slices;
- ``list``: on ``--slices`` unlabelled slices in turn: go to the slice, three idle ticks,
  then Mark slice labelled, Hold out, Train on it, Unmark (the dock's own buttons), one tick
  every ``--click-every`` ms. The stalls after the clicks and after the moves are reported
  apart (a move costs napari a slice of four layers). Napari alone has the same ticks, the
  clicks left out: its "clicks" row is the floor.

Python's full garbage collections hold the GIL for as long as they walk the heap, so each is a
stall however the phases go; how many came during the phases, the longest, and the length of
one more made at the end (the cost any of them has now) are reported per configuration.

Each configuration runs in its own process, napari alone and the dock interleaved
(``--repeat`` rounds), so both see the same load; ``--compare DIR`` adds the dock imported
from another checkout's ``napari_segpl`` (``DIR`` first on ``sys.path``) to the same rounds.
Run under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m benchmarks dock_stall \\
        [--phase slice|list|all] [--repeat 2] [--compare /tmp/segpl_before]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

import numpy as np

from .heartbeat import FullCollections, Heartbeat

AXIS = 2  # the dock's default slicing axis: the last one of a 512 x 512 x 400 volume


def make_ct(shape: tuple[int, int, int]) -> np.ndarray:
    """A CT-like int16 volume: air at -1000, an elliptic body of soft tissue with two darker
    lungs, built by broadcasting (no float copy of the whole volume)."""
    x = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :]
    plane = np.full(shape[:2], -1000, np.int16)
    plane[(x / 0.9) ** 2 + (y / 0.7) ** 2 < 1] = 40
    for cx in (-0.35, 0.35):
        plane[((x - cx) / 0.25) ** 2 + (y / 0.4) ** 2 < 1] = -850
    ct = np.empty(shape, np.int16)
    ct[...] = plane[:, :, None]
    ct[:, :, : shape[2] // 10] = -1000  # the ends: air only
    return ct


def painted_slices(n_slices: int, painted: int) -> list[int]:
    """``painted`` slices spread over the middle of the axis."""
    return [int(s) for s in np.linspace(n_slices * 0.15, n_slices * 0.85, painted).round()]


def _pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _run_ticks(app, interval_ms: int, actions: list[tuple[str, object]]) -> dict:
    """Calls each ``(kind, action)`` on its own QTimer tick while the heartbeat records; each
    firing's lateness goes to the kind of the last action started before it fired (a late
    firing comes right after the work that held it up)."""
    from qtpy.QtCore import QTimer

    heart, i, fired, started = Heartbeat(), [0], [], []
    heart.timer.timeout.connect(lambda: fired.append(time.perf_counter()))

    def tick() -> None:
        if i[0] < len(actions):
            kind, action = actions[i[0]]
            started.append((time.perf_counter(), kind))
            action()
            i[0] += 1

    timer = QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(tick)
    heart.start()
    timer.start()
    while i[0] < len(actions):
        app.processEvents()
        time.sleep(0.001)
    _pump(app, 0.5)  # whatever the last action deferred
    heart.stop()
    timer.stop()
    by_kind: dict[str, list[float]] = {}
    times = [t for t, _ in started]
    for t, late in zip(fired, heart.lateness, strict=True):
        k = int(np.searchsorted(times, t, side="right")) - 1
        if k >= 0:
            by_kind.setdefault(started[k][1], []).append(late)
    return by_kind


def child(args: argparse.Namespace) -> dict:
    """One configuration in this process: build the window, run the phases, return stalls."""
    import napari
    from qtpy.QtWidgets import QApplication

    shape = tuple(args.shape)
    n = shape[AXIS]
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    image = viewer.add_image(make_ct(shape), name="CT")
    labels_data = np.zeros(shape, np.uint8)
    painted = painted_slices(n, args.painted)
    rows, cols = slice(shape[0] * 2 // 5, shape[0] * 3 // 5), slice(shape[1] // 3, shape[1] // 2)
    for s in painted:
        labels_data[rows, cols, s] = 1 + s % 2
    labels = viewer.add_labels(labels_data, name="CT labels")
    info: dict = {"mode": args.mode, "load": os.getloadavg()[0]}
    dock = None
    if args.mode == "napari":
        for name in ("pseudo labels", "prediction"):
            viewer.add_labels(labels_data.copy(), name=name)
        viewer.dims.order = (AXIS, 0, 1)
    else:
        import napari_segpl
        from napari_segpl.gui import SegPLDock
        from napari_segpl.gui.result_layers import PREDICTION, PSEUDO

        info["dock"] = os.path.dirname(napari_segpl.__file__)
        if args.dock_path:
            wanted = os.path.join(os.path.abspath(args.dock_path), "napari_segpl")
            assert info["dock"] == wanted, f"imported {info['dock']}, not {wanted}"
        dock = SegPLDock(viewer)
        viewer.window.add_dock_widget(dock, name="SegPL", area="right")
        dock.data.image_combo.set_layer(image)
        dock.data.labels_combo.set_layer(labels)
        for role in (PSEUDO, PREDICTION):
            dock.layers.ensure(role, image, data=labels_data.copy())
        suggest = dock.suggest  # the curve a prediction leaves (the scores alone, made up)
        suggest.scores = np.abs(np.sin(np.arange(n) / 17.0)).astype(np.float32)
        suggest.redraw()
        assert dock.data.painted.slices == set(painted), "the dock missed painted slices"
        dock.warmed_up.wait(120)  # torch's first-use set-up, in a thread when the dock opens
    app = QApplication.instance()
    _pump(app, 2.0)  # let the window settle and the dock's first scan happen
    collections = FullCollections()
    info["tracked objects"] = len(gc.get_objects())  # those a full collection walks
    info["frozen objects"] = gc.get_freeze_count()
    collections.start()
    dims = viewer.dims
    rng = np.random.default_rng(0)

    def go(s: int):
        return lambda: dims.set_current_step(AXIS, int(s))

    if args.phase in ("slice", "all"):
        start = n // 2 - args.steps // 2
        dims.set_current_step(AXIS, start)
        _pump(app, 0.3)
        path = [start + i for i in range(1, args.steps + 1)]
        path += path[::-1][1:] + [start]
        path += [int(s) for s in rng.integers(0, n, args.jumps)]
        info.update(_run_ticks(app, args.every, [("slice", go(s)) for s in path]))
    if args.phase in ("list", "all"):
        free = sorted(set(range(n)) - set(painted))
        targets = [int(s) for s in rng.choice(free, args.slices, replace=False)]
        actions: list[tuple[str, object]] = []
        for s in targets:  # a move, time for napari to draw it, then the four clicks
            actions += [("list: moves", go(s))] + [("list: moves", lambda: None)] * 3
            if dock is None:  # the same ticks, nothing done on them
                actions += [("list: clicks", lambda: None)] * 4
            else:
                d = dock.data
                clicks = [d.mark_button, d.hold_button, d.hold_button, d.unmark_button]
                actions += [("list: clicks", b.click) for b in clicks]
        info.update(_run_ticks(app, args.click_every, actions))
        if dock is not None:
            d = dock.data
            assert not d.marked_slices() and not d.held_out(), "the slice list did not go back"
            assert sorted(d.painted.slices) == painted
    collections.stop()
    info["full collections ms"] = [s * 1000 for s in collections.seconds]
    t0 = time.perf_counter()
    gc.collect()  # what any full collection costs now, whether or not the phases had one
    info["one full collection ms"] = (time.perf_counter() - t0) * 1000
    if dock is not None:
        dock.shutdown()
    viewer.close()
    return info


def stats(lateness: list[float], skip: int = 0) -> tuple[int, float, float, float]:
    ms = np.array(lateness[skip:]) * 1000
    return len(ms), *(float(v) for v in (np.percentile(ms, 50), np.percentile(ms, 99), ms.max()))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dock_stall")
    parser.add_argument("--phase", choices=("slice", "list", "all"), default="all")
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400])
    parser.add_argument("--painted", type=int, default=30, help="slices painted at the start")
    parser.add_argument("--steps", type=int, default=150, help="one-slice steps each way")
    parser.add_argument("--jumps", type=int, default=20)
    parser.add_argument("--every", type=int, default=25, help="ms between slice steps")
    parser.add_argument("--slices", type=int, default=30, help="slices worked in the list")
    parser.add_argument("--click-every", type=int, default=60, help="ms between actions")
    parser.add_argument("--repeat", type=int, default=2, help="rounds of all configurations")
    parser.add_argument("--compare", nargs="*", default=[], help="other checkouts' dock")
    parser.add_argument("--mode", choices=("napari", "dock"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--dock-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode is not None:  # a child: one configuration, results to --json
        if args.dock_path:  # ahead of the working directory and the installed package, which
            sys.path.insert(0, os.path.abspath(args.dock_path))  # PYTHONPATH is not
        with open(args.json, "w") as f:
            json.dump(child(args), f)
        return 0

    configs = [("napari alone", "napari", None), ("dock", "dock", None)]
    configs += [(f"dock ({d})", "dock", d) for d in args.compare]
    rows: list[tuple] = []
    heaps: list[tuple] = []
    for r in range(args.repeat):
        for label, mode, path in configs:
            out = f"/tmp/dock_stall_{os.getpid()}.json"
            cmd = [sys.executable, "-m", "benchmarks", "dock_stall", *_own(argv)]
            cmd += ["--mode", mode, "--json", out] + (["--dock-path", path] if path else [])
            subprocess.run(cmd, check=True)
            with open(out) as f:
                info = json.load(f)
            os.unlink(out)
            gcs = info["full collections ms"]
            heaps.append((r + 1, label, info["tracked objects"], info["frozen objects"], len(gcs),
                          max(gcs, default=0.0), info["one full collection ms"]))  # fmt: skip
            for phase in ("slice", "list: moves", "list: clicks"):
                if phase in info:
                    rows.append((phase, r + 1, label, info["load"],
                                 *stats(info[phase])))  # fmt: skip
    shape = " x ".join(map(str, args.shape))
    print(f"\n{shape} int16 CT + 3 uint8 labels layers, {args.painted} painted slices, "
          f"axis {AXIS}; heartbeat 10 ms")  # fmt: skip
    print("| phase | round | configuration | load (1 min) | samples | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for phase, r, label, load, count, p50, p99, top in sorted(rows, key=lambda x: x[0]):
        print(f"| {phase} | {r} | {label} | {load:.2f} | {count} | {p50:.1f} | {p99:.1f} "
              f"| {top:.1f} |")  # fmt: skip
    print("\nFull garbage collections during the phases (each holds the GIL: a stall of its own)")
    print("| round | configuration | objects tracked | of them frozen | full collections | "
          "longest ms | one after, ms |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r, label, tracked, frozen, n, top, after in heaps:
        print(f"| {r} | {label} | {tracked} | {frozen} | {n} | {top:.1f} | {after:.1f} |")
    return 0


def _own(argv: list[str]) -> list[str]:
    """The arguments a child needs: all but ``--repeat N`` and ``--compare DIR ...``."""
    out, skip = [], False
    for a in argv:
        if a in ("--repeat", "--compare"):
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out
