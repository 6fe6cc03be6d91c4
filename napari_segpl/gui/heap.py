"""Short full garbage collections once torch is loaded.

torch and its first optimiser step (torch._dynamo, sympy) add about 280 000 objects that live
as long as the process, more than napari's own. Python's full (generation 2) collection walks
every one of them with the GIL held: about 260 ms here, a freeze of the window at a moment
nobody chose, which napari alone does not have (benchmarks/RESULTS.md (yy)). ``gc.freeze``
moves what is alive into a generation the collector skips, so later full collections walk only
what came after.

What was alive at a freeze and later becomes garbage held in a reference cycle (a layer the
user deletes: napari's layers refer to themselves through their events) would stay until the
next collection of the frozen objects. So the dock collects and freezes again when a layer
leaves the viewer and when a run ends (a model or a trainer replaced), a pause at a moment
of the user's making, and unfreezes once the last dock has closed.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_holders = 0


def hold() -> None:
    """A dock opens: freezes it asks for are done until it calls ``release``."""
    global _holders
    with _lock:
        _holders += 1


def release() -> None:
    """A dock closes; after the last one, the collector sees every object again."""
    global _holders
    with _lock:
        _holders = max(0, _holders - 1)
        if not _holders:
            gc.unfreeze()


def refreeze() -> bool:
    """Collect everything (the frozen objects too), then freeze what is still alive; nothing
    when no dock holds the heap. True when it froze. Call it on the GUI thread: a collection
    runs finalisers, and Qt objects must be deleted there."""
    with _lock:
        if not _holders:
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        return True
