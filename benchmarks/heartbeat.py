"""A heartbeat on the GUI thread: how late a 10 ms QTimer fires is how long the event loop
could not react (paint, mouse, keyboard). Shared by the event_loop and paint_stall benchmarks."""

from __future__ import annotations

import gc
import time

import numpy as np


class Heartbeat:
    """Records each firing's lateness; ``table()`` is the Markdown row the benchmarks print."""

    def __init__(self, interval: float = 0.010) -> None:
        from qtpy.QtCore import QTimer

        self.interval = interval
        self.lateness: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(int(interval * 1000))
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness.append(max(0.0, now - self._last - self.interval))
        self._last = now

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def table(self, skip: int = 5) -> str:
        """Samples, p50, p99 and max lateness in ms, leaving out the first ``skip`` firings
        (the click that starts the work falls there)."""
        stalls = np.array(self.lateness[skip:]) * 1000
        return (
            "| samples | p50 ms | p99 ms | max ms |\n|---|---|---|---|\n"
            f"| {len(stalls)} | {np.percentile(stalls, 50):.1f} "
            f"| {np.percentile(stalls, 99):.1f} | {stalls.max():.1f} |"
        )


class FullCollections:
    """Times Python's full (generation 2) garbage collections while it is started: each holds
    the GIL, so on the GUI thread or beside it each is a stall of its own length."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds.append(time.perf_counter() - self._start)

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        """How many there were and the longest, in ms."""
        top = max(self.seconds, default=0.0) * 1000
        return f"{len(self.seconds)} full collections, longest {top:.1f} ms"
