"""Training under the ``segpl`` command: Ctrl-C stops after the step under way and keeps the
model, and an unexpected error saves the steps done before one line reports it."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class TrainingFailed(RuntimeError):
    """Training stopped by an unexpected error (out of memory, a driver fault): the message says
    what, and where the model of the steps done was saved."""


def saving_on_failure(trainer: Any, path: Path) -> Iterator[object]:
    """``trainer.run()``'s events; on an unexpected error, the model of the steps done (the
    trainer finishes it on the way out: averaged weights, on the CPU) is saved to ``path``
    before one ``TrainingFailed`` line replaces the traceback. A second Ctrl-C
    (KeyboardInterrupt) passes through: it means quit without saving."""
    try:
        yield from trainer.run()
    except Exception as exc:
        steps, what = trainer.model.steps_done, f"{type(exc).__name__}: {exc}"
        if not steps:
            raise TrainingFailed(f"training failed before its first step: {what}") from exc
        try:
            saved = f"the model of those steps -> {trainer.model.save(path)}"
        except OSError as err:
            saved = f"the model could not be saved either: {err}"
        raise TrainingFailed(f"training failed after {steps} steps: {what}; {saved}") from exc


class Interrupt:
    """Ctrl-C while training: the first asks the trainer to stop after the step under way (the
    caller then saves the model), a second quits at once (KeyboardInterrupt). Installed only
    in the main thread, and not where SIGINT is ignored (a background job)."""

    MESSAGE = (
        "\ninterrupted: stopping after this step and saving the model so far "
        "(Ctrl-C again quits without saving)\n"
    )

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.received = False
        self._installed = False
        self._previous: Any = None

    def __enter__(self) -> Interrupt:
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            previous = self._previous
            signal.signal(
                signal.SIGINT, signal.default_int_handler if previous is None else previous
            )

    def _handle(self, signum: int, frame: object) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = True
        self.trainer.stop()
        # os.write, not print: a handler may run in the middle of a print to the same stream
        try:
            os.write(sys.stderr.fileno(), self.MESSAGE.encode())
        except (AttributeError, OSError, ValueError):
            pass
