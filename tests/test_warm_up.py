"""The dock's torch warm-up runs in a thread when it opens; workers wait for it (torch's lazy
set-up of torch._dynamo raced with a prediction in another thread once: "operator streams::fork
does not exist")."""

from __future__ import annotations

import logging
import threading

import torch

from napari_segpl.gui import session


def test_a_worker_waits_for_the_warm_up_under_way(monkeypatch):
    real = torch.optim.Adam
    release = threading.Event()
    entered = threading.Event()

    def slow_adam(*args, **kwargs):
        entered.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", slow_adam)
    done = threading.Event()
    session.start_warm_up(done)
    try:
        assert session._WARMING.locked()  # taken before the warm-up thread starts
        waiter = threading.Thread(target=session.torch_ready, daemon=True)
        waiter.start()
        assert entered.wait(30)  # the warm-up is under way, held in the fake Adam
        waiter.join(0.2)
        assert waiter.is_alive()  # the worker waits for it...
        assert not done.is_set()
        assert session._WARMING.locked()
    finally:
        release.set()
    waiter.join(30)
    assert not waiter.is_alive()  # ...and goes on once it ends
    assert done.is_set()
    # none under way now: the lock is free, so torch_ready takes it without waiting
    assert not session._WARMING.locked()
    assert session._WARMING.acquire(blocking=False)
    session._WARMING.release()
    session.torch_ready()


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
