"""The dock's compare in the background, and each compared model's prediction as a layer.

``CompareRunner`` runs the engine's one ``compare`` loop (the CLI's) in a napari worker and
turns its hooks into Qt signals, delivered in the GUI thread: ``stepped`` after every training
step, ``scored`` after every run, ``ended`` once the thread is over. Stop is the engine's
``should_stop``: checked after every step, so the run under way is dropped and the finished
ones are returned.

``CompareLayers`` keeps a run's prediction as a labels layer named for it ("compare:
fixmatch s0"), marked in its metadata as this dock's: a re-run replaces that layer's data
instead of adding another, and a user's layer is never touched (a name already taken gets
napari's next free one). As in ``result_layers``, the layers are known by identity, not by
their metadata: napari's Duplicate copies it, and the copy is the user's; and one the user
paints on is theirs from then on (the next compare makes a new one).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal

from ..engine import TrainConfig
from ..engine.compare import CompareResult, compare
from ..layers import same_grid_kwargs
from .result_layers import OWNER_KEY, ROLE_KEY, on_hand_edit
from .session import torch_ready

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

#: the role of a compare layer in its metadata (beside the dock's own roles)
COMPARE_ROLE = "compare"
#: metadata key: which (method, seed) the layer shows, as its first name
RUN_KEY = "segpl_compare_run"


@dataclass
class Step:
    """A training step of one compare run (``run`` of ``runs``, counted from 1);
    ``reference``: supervised trained only to time the s/step ratio (no row of its own)."""

    method: str
    seed: int
    step: int
    total: int
    run: int
    runs: int
    reference: bool = False


class CompareRunner(QObject):
    """One compare at a time in a worker thread; see the module docstring."""

    stepped = Signal(object)  # Step
    scored = Signal(object)  # engine.compare.RunDone
    ended = Signal(object, object)  # (CompareResult or None, the error or None)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: Any = None
        self._stop, self._done = threading.Event(), threading.Event()
        self._done.set()
        self._outcome: tuple[CompareResult | None, BaseException | None] = (None, None)

    @property
    def running(self) -> bool:
        return self.worker is not None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        config: TrainConfig,
        methods: Sequence[str],
        holdout: Sequence[int],
        *,
        seeds: Sequence[int],
        **options: Any,
    ) -> None:
        """Start ``engine.compare`` with these arguments (``labels``: the caller's copy)."""
        if self.running:
            raise RuntimeError("a compare is already running")
        self._stop, self._done = threading.Event(), threading.Event()
        self._outcome = (None, None)
        timing = "supervised" not in methods  # then supervised trains once, last, for the ratio
        runs = len(methods) * len(seeds) + int(timing)
        seen: list[tuple[str, int]] = []

        def progress(method: str, seed: int, step: int, total: int) -> None:
            if (method, seed) not in seen:
                seen.append((method, seed))
            reference = timing and method == "supervised"
            self.stepped.emit(Step(method, seed, step, total, len(seen), runs, reference))

        def work() -> CompareResult:
            try:
                torch_ready()
                return compare(image, labels, config, methods, holdout, seeds=seeds,
                               progress=progress, on_run=self.scored.emit,
                               should_stop=self._stop.is_set, **options)  # fmt: skip
            finally:
                self._done.set()

        self.worker = create_worker(work, _start_thread=False, _ignore_errors=True)
        self.worker.returned.connect(lambda result: self._keep(result, None))
        self.worker.errored.connect(lambda exc: self._keep(None, exc))
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def stop(self) -> None:
        """Ask the compare to end after the step under way."""
        self._stop.set()

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop and wait for the thread (True when it ended in time)."""
        self._stop.set()
        return self._done.wait(timeout)

    def _keep(self, result: CompareResult | None, error: BaseException | None) -> None:
        self._outcome = (result, error)

    def _finished(self) -> None:
        self.worker = None
        self.ended.emit(*self._outcome)


def layer_name(method: str, seed: int) -> str:
    return f"compare: {method} s{seed}"


class CompareLayers:
    """The compare's own prediction layers in one viewer: those it made, by identity."""

    def __init__(self, viewer: napari.Viewer, owner: str) -> None:
        self.viewer, self.owner = viewer, owner
        self._made: list[weakref.ReferenceType] = []

    def mine(self) -> list[Layer]:
        """The layers it made still in the viewer and still marked (the user's copies of them,
        marked alike, are not)."""
        made = [layer for ref in self._made if (layer := ref()) is not None]
        return [
            layer
            for layer in self.viewer.layers
            if any(layer is m for m in made)
            and (layer.metadata or {}).get(OWNER_KEY) == self.owner
            and layer.metadata.get(ROLE_KEY) == COMPARE_ROLE
        ]

    def _hand_edited(self, event: object) -> None:
        """The user painted on one of the compare's layers: theirs now, unmarked, kept."""
        layer = getattr(event, "source", None)
        if layer is None or not any(ref() is layer for ref in self._made):
            return
        self._made = [ref for ref in self._made if ref() is not layer]
        for key in (ROLE_KEY, OWNER_KEY, RUN_KEY):
            layer.metadata.pop(key, None)
        on_hand_edit(layer, self._hand_edited, connect=False)

    def show(self, like: Layer, method: str, seed: int, labels: np.ndarray) -> Layer:
        """The run's labels in the layer for (``method``, ``seed``), made on ``like``'s grid
        when there is none of that shape; shown, the compare's other layers hidden, and the
        user's selected layer left selected (adding a layer would select it)."""
        name = layer_name(method, seed)
        mine = self.mine()
        layer = next((x for x in mine if x.metadata.get(RUN_KEY) == name), None)
        if layer is not None and layer.data.shape != labels.shape:  # another image since: kept
            for key in (ROLE_KEY, OWNER_KEY, RUN_KEY):
                layer.metadata.pop(key, None)
            layer = None
        if layer is not None:
            layer.data = labels
        else:
            active = self.viewer.layers.selection.active
            geometry = same_grid_kwargs(like, name)
            metadata = dict(geometry.pop("metadata", None) or {})
            metadata.update({ROLE_KEY: COMPARE_ROLE, OWNER_KEY: self.owner, RUN_KEY: name})
            layer = self.viewer.add_labels(labels, metadata=metadata, **geometry)
            self._made = [ref for ref in self._made if ref() is not None]
            self._made.append(weakref.ref(layer))
            on_hand_edit(layer, self._hand_edited)
            if active is not None and active in self.viewer.layers:
                self.viewer.layers.selection.active = active
        for other in mine:
            other.visible = other is layer
        layer.visible = True
        return layer
