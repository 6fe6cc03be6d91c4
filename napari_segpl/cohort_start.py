"""The cohort's local Dask cluster started while Ctrl-C is seen (``segpl predict --out``).

The terminal's Ctrl-C reaches every process of the foreground group: the workers must not take
it (they would die mid-task, each with a traceback), this process must. SIGINT ignored while the
workers spawned did the first (they inherit SIG_IGN) but lost a Ctrl-C pressed then, the whole
start: a disposition is the process's. A signal mask is a thread's: the start runs in a thread
with SIGINT blocked, so the cluster's threads it starts and the worker processes they spawn
inherit the mask (kept across fork and exec, as CPython starts its resource tracker), while the
caller's thread, SIGINT delivered, waits for it. A Ctrl-C then ends the workers spawned so far:
distributed stops a starting worker only once it is up, seconds later (torch imported)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["sigint_blocked", "started_seeing_ctrl_c"]


def started_seeing_ctrl_c(start: Callable[[], Any], stopping: Callable[[], None]) -> Any:
    """What ``start()`` returns (a cluster), run in a thread of its own with SIGINT blocked while
    this one waits. On Ctrl-C: ``stopping()`` at once (it says so), the worker processes spawned
    since ended (SIGTERM) until the start fails or ends, the cluster closed, KeyboardInterrupt.
    A second Ctrl-C quits at once: the workers, daemon processes, end with this one."""
    import psutil  # distributed's own dependency

    started: dict[str, Any] = {}
    done = threading.Event()  # not Thread.join: one Ctrl-C interrupted takes it for the end

    def run() -> None:
        try:
            started["cluster"] = start()
        except BaseException as exc:  # raised below, in the caller's thread
            started["error"] = exc
        finally:
            done.set()

    thread = threading.Thread(target=run, name="segpl: local cluster start", daemon=True)
    me = psutil.Process()
    before = {child.pid for child in me.children()}
    try:
        with sigint_blocked():
            thread.start()
        while not done.wait(0.2):  # a Ctrl-C is seen here, whichever thread the signal hit
            pass
    except KeyboardInterrupt:
        stopping()
        while thread.ident is not None and not done.wait(0.05):
            _end_spawned(me, before)
        if "cluster" in started:
            started["cluster"].close()
        raise
    if "error" in started:
        raise started["error"]
    return started["cluster"]


def _end_spawned(me: Any, before: set[int]) -> None:
    """SIGTERM to this process's children spawned by multiprocessing since ``before``."""
    import psutil

    for child in me.children():
        try:
            if child.pid not in before and "--multiprocessing-fork" in child.cmdline():
                child.terminate()
        except psutil.Error:  # gone meanwhile
            pass


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread, so in the threads it starts meanwhile (POSIX only)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # now: its first start unblocks SIGINT in its thread
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
