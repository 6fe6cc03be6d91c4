"""Garbage collection while a dock is open: on the GUI thread only, and short.

Two problems, one module:

- Python runs its automatic collections in whichever thread allocates when a threshold is
  reached: the training worker, often. A Qt object that is garbage in a reference cycle (a
  parentless widget of a closed dock, say) is then deleted in that thread, and Qt crashes: a
  segmentation fault in CI, reproduced by ``benchmarks/gc_threads.py`` (RESULTS.md (A2)). So
  while a dock holds the heap the automatic collector is off, and the dock's timer calls
  ``collect_due`` on the GUI thread to do the same work at the same thresholds.
- torch and its first optimiser step (torch._dynamo, sympy) add about 280 000 objects that live
  as long as the process. A full collection walks every one of them with the GIL held: about
  260 ms here, a freeze of the window (RESULTS.md (yy)). ``gc.freeze`` moves what is alive into
  a generation the collector skips. What was alive at a freeze and becomes cyclic garbage later
  (a layer the user deletes) stays until the next ``refreeze``, which the dock asks for when a
  layer leaves the viewer and when a run ends, once nothing runs.

The last holder to go (``release``, or its owner freed) turns the automatic collector back on
as it was and unfreezes every object.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref

#: at least this long between two full collections made by ``collect_due`` (Python's own
#: rule waits for the old generation to grow by a quarter, which gc does not expose)
FULL_EVERY_S = 5.0

_lock = threading.RLock()
_holders: dict[int, weakref.finalize] = {}
_was_enabled = True
_last_full = 0.0


def held(owner: object | None = None) -> bool:
    """True while a dock (``owner``, or any) holds the heap: the automatic collector is off."""
    return bool(_holders) if owner is None else id(owner) in _holders


def hold(owner: object) -> None:
    """``owner`` (a dock) opens: until it calls ``release`` or is freed, the automatic
    collector is off and collections are the GUI thread's (``collect_due``, ``refreeze``)."""
    global _was_enabled
    with _lock:
        if id(owner) in _holders:
            return
        if not _holders:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders[id(owner)] = weakref.finalize(owner, _drop, id(owner))


def release(owner: object) -> None:
    """``owner`` closes; after the last holder the collector is as it was before the first."""
    finaliser = _holders.get(id(owner))
    if finaliser is not None:
        finaliser.detach()
        _drop(id(owner))


def _drop(key: int) -> None:
    with _lock:
        if _holders.pop(key, None) is None or _holders:
            return
        gc.unfreeze()
        if _was_enabled:
            gc.enable()


def collect_due(now: float | None = None) -> int | None:
    """What the automatic collector would do now, done here: the generation collected, or
    None when none is due. Call it from the GUI thread (a Qt object must be deleted there)."""
    global _last_full
    with _lock:
        if not _holders or gc.isenabled():
            return None
        counts, thresholds = gc.get_count(), gc.get_threshold()
        if not thresholds[0] or counts[0] <= thresholds[0]:
            return None
        generation = 1 if counts[1] >= thresholds[1] else 0
        now = time.monotonic() if now is None else now
        if generation == 1 and counts[2] >= thresholds[2] and now - _last_full >= FULL_EVERY_S:
            generation = 2
            _last_full = now
        gc.collect(generation)
        return generation


def refreeze() -> bool:
    """Collect everything (the frozen objects too), then freeze what is still alive; nothing
    when no dock holds the heap. True when it froze. Call it on the GUI thread."""
    global _last_full
    with _lock:
        if not _holders:
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        _last_full = time.monotonic()
        return True
