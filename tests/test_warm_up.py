"""The dock's torch warm-up runs in a thread when it opens; workers wait for it (torch's lazy
set-up of torch._dynamo raced with a prediction in another thread once: "operator streams::fork
does not exist")."""

from __future__ import annotations

import logging
import threading
import time

import torch

from napari_segpl.gui import session


def test_a_worker_waits_for_the_warm_up_under_way(monkeypatch):
    real = torch.optim.Adam

    def slow_adam(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", slow_adam)
    done = threading.Event()
    session.start_warm_up(done)
    start = time.perf_counter()
    session.torch_ready()
    assert done.is_set() and time.perf_counter() - start >= 0.4
    start = time.perf_counter()
    session.torch_ready()  # none under way now: at once
    assert time.perf_counter() - start < 0.1


def test_a_failing_warm_up_still_lets_workers_run(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no torch today")

    monkeypatch.setattr(torch.optim, "Adam", broken)
    escaped: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    done = threading.Event()
    with caplog.at_level(logging.WARNING, logger=session.__name__):
        session.start_warm_up(done)
        assert done.wait(5)
        for thread in threading.enumerate():
            if "warm_up_torch" in thread.name:
                thread.join(5)
    assert escaped == []  # logged, not an unhandled exception in a thread
    assert "no torch today" in caplog.text
    session.torch_ready(timeout=5)
    assert session._WARMING.acquire(timeout=1)  # released, not left held
    session._WARMING.release()
