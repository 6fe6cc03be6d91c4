"""What runs in the dock's worker threads: plain generators and functions over the engine.

No Qt here: the dock wraps these in napari ``thread_worker``s. Stopping is cooperative through a
``threading.Event`` that the training generator checks between steps, so Stop takes effect
within one step and the model trained so far is kept; ``done`` is set however the run ends, so
the dock can wait for it when the window closes. "Mask now" works the same way: the dock sets
``Snapshots.now`` and the generator predicts the volume between two steps
(``engine.snapshot``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from psygnal import Signal

from ..engine import (
    FinishedEvent,
    GuardedTrainer,
    Prediction,
    PredictionStopped,
    RetriedRun,
    StepEvent,
    TrainConfig,
    TrainedModel,
    Trainer,
    predict_volume,
    prepare_data,
    stop_between_batches,
)
from ..engine.snapshot import SnapshotFailed, take_snapshot
from ..engine.uncertainty import predict_with_twin

#: about how many held-out Dice points a run plots (the validation curve): enough to see a
#: trend, few enough that scoring the held-out slices costs little next to the training steps
HELDOUT_POINTS = 25


@dataclass
class Started:
    """First event of a run: what the trainer will learn from."""

    model: TrainedModel
    labelled: list[int]
    unlabelled: int
    num_classes: int
    device: str
    #: the one-thin-slice recipe was applied (affine maps, CutMix, more steps): the dock says so
    one_thin_slice: bool = False
    #: kept by the dock for the pseudo-label fill after the run (the same E-step as training;
    #: a GuardedTrainer delegates it to the run's own trainer) and, with the safeguard, for
    #: the model it kept
    trainer: Trainer | GuardedTrainer | None = None
    #: the run's "Mask now" requests: the training panel sets them and hears the results
    snapshots: Snapshots | None = None
    #: the slices it trains on (``TrainingData.paint``, copies): the dock's Predict keeps
    #: only the parts touching them, as the CLI's export does
    paint: dict[int, np.ndarray] | None = None


#: the parts an "auto" run is cut into: a mask at the end of each part but the last (3 masks)
AUTO_SNAPSHOTS = 4


class Snapshots:
    """One run's whole-volume masks while it trains. ``now`` (set from the GUI thread) asks
    for one between the next two steps; ``auto`` set makes one at each quarter of the run.
    ``shown`` is emitted on the GUI thread by the runner with each ``SnapshotEvent`` or
    ``SnapshotFailed`` once the dock has shown it."""

    shown = Signal(object)

    def __init__(self) -> None:
        self.now = threading.Event()
        self.auto = threading.Event()


@dataclass
class RunControl:
    """Shared between the dock (GUI thread) and the training generator (worker thread)."""

    stop: threading.Event
    done: threading.Event
    preview_slice: Callable[[], int | None]
    snapshots: Snapshots = field(default_factory=Snapshots)
    #: read when a mask is made: keep only the parts touching the paint (the dock's box)
    parts: Callable[[], bool] = lambda: True

    @classmethod
    def new(
        cls,
        preview_slice: Callable[[], int | None] = lambda: None,
        parts: Callable[[], bool] = lambda: True,
    ) -> RunControl:
        return cls(threading.Event(), threading.Event(), preview_slice, parts=parts)


def training_events(
    image: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    labelled: Sequence[int] | None,
    control: RunControl,
    *,
    safeguard: bool = True,
    retry: bool = True,
    holdout: Sequence[int] = (),
    parts: bool = True,
) -> Iterator[object]:
    """Prepare the data (in the worker: normalising a volume takes a moment), then train.

    ``labels`` must be the caller's own copy: training never touches the user's layer. With
    ``safeguard``, ``retry`` or held-out slices the run is a ``RetriedRun`` of
    ``GuardedTrainer``s: ``safeguard``, every method that trains on unlabelled images is checked
    against a supervised twin (supervised and ensemble runs are not); ``retry``, a run whose mask
    contradicts the paint is made once more at seed + 1. ``holdout``:
    slices along the axis never trained on (zeroed here, left out of ``labelled``); any run with
    them is a ``GuardedTrainer``, so they are scored while training (``HeldoutEvent``s, about
    ``HELDOUT_POINTS`` a run) whether or not the safeguard checks, and the safeguard scores both
    models on them. ``parts``: the safeguard compares the models' masks with the parts that
    touch no paint removed, as Predict with the box on shows them.

    Between two steps, when ``control.snapshots`` asks, the network being trained predicts
    ``image`` (``snapshot_events``); the run itself is not changed by it.
    """
    try:
        torch_ready()
        holdout = sorted(set(holdout))
        truth = labels
        if holdout:
            labels = np.array(labels, copy=True)
            np.moveaxis(labels, config.axis, 0)[holdout] = 0
            if labelled is not None:
                labelled = [s for s in labelled if s not in set(holdout)] or None
        data = prepare_data(image, labels, config, labelled)
        trainer: Trainer | GuardedTrainer | RetriedRun
        if safeguard or retry or holdout:  # the twin, the retry (engine/retry.py), scores
            trainer = RetriedRun(
                config, data, image, retry=retry, truth=truth, holdout=holdout,
                check=safeguard, parts=parts,
            )  # fmt: skip
            # the inner trainer's steps: an ensemble runs members x steps, one thin slice more
            trainer.holdout_every = max(1, trainer.trainer.total_steps // HELDOUT_POINTS)
        else:
            trainer = Trainer(config, data)
        yield Started(
            trainer.model,
            data.labelled,
            len(data.unlabelled),
            data.num_classes,
            str(trainer.device),
            trainer.one_thin_slice,
            trainer,
            control.snapshots,
            {s: np.array(p, copy=True) for s, p in data.paint().items()},  # not data's views
        )
        last: StepEvent | None = None  # the run's latest step (not the safeguard twin's)
        for event in trainer.run():
            if control.stop.is_set():
                trainer.stop()
            wanted = control.preview_slice()
            if wanted is not None and wanted not in data.labelled:
                trainer.preview_slice = wanted
            yield event
            new_step = isinstance(event, StepEvent)
            if new_step:
                last = event
            # (after the FinishedEvent the run is over: the fill and Predict take over)
            if (
                last is not None
                and not control.stop.is_set()
                and not isinstance(event, FinishedEvent)
            ):
                yield from snapshot_events(trainer, image, last, control, new_step)
    finally:
        control.done.set()


def snapshot_events(
    trainer: Trainer | GuardedTrainer,
    image: np.ndarray,
    last: StepEvent,
    control: RunControl,
    new_step: bool,
) -> Iterator[object]:
    """A ``SnapshotEvent`` when one was asked for (or, with ``auto``, at a quarter of the run
    just reached: ``new_step``), a ``SnapshotFailed`` if it failed; nothing when Stop cut
    it short. Between two steps, on the run's device, from the network being trained (a
    ``GuardedTrainer``'s run, not its twin)."""
    asks = control.snapshots
    every = max(1, last.total // AUTO_SNAPSHOTS)
    auto = new_step and asks.auto.is_set() and last.step % every == 0 and last.step < last.total
    if not (asks.now.is_set() or auto):
        return
    asks.now.clear()

    run = getattr(trainer, "trainer", trainer)  # the network being trained
    result: object
    try:
        result = take_snapshot(
            run.model, image, last.step, last.total, device=run.device,
            progress=stop_between_batches(control.stop.is_set),
            paint=run.data.paint(), keep_parts=control.parts(),  # as Predict would
            fit=run.fit_decision,  # as the end of a run labels
        )  # fmt: skip
    except PredictionStopped:
        return  # Stop or a closing window: the run ends next, nothing to show
    except Exception as exc:  # any failure is reported; training goes on
        result = SnapshotFailed(last.step, last.total, f"{type(exc).__name__}: {exc}")
    yield result


def predict(
    model: TrainedModel,
    image: np.ndarray,
    axis: int,
    mc_samples: int,
    device: str,
    control: RunControl | None = None,
    tta_samples: int = 0,
    paint: Mapping[int, np.ndarray] | None = None,
    keep_parts: bool = True,
    twin: TrainedModel | None = None,
) -> Prediction:
    """Whole-volume prediction for the dock (Monte-Carlo only for a learnt threshold; the
    test-time-augmentation std when ``tta_samples`` is 2 or more, for any method, and with
    ``twin``, the safeguard's other model, the TTA std pooled over both). ``paint``:
    the run's trained-on slices; the labels keep only the parts touching them (``removed``
    says what went) unless ``keep_parts`` is False, so what the screen shows is what the CLI's
    export writes, and a painted class missing from the mask is named either way.

    With ``control``, ``stop`` is checked after every batch of slices (a 3D prediction of a
    large volume on a CPU takes tens of seconds; closing the window must not wait for it, nor
    leave it running while Qt is torn down: ``PredictionStopped``) and ``done`` is set however
    it ends."""
    check = stop_between_batches(lambda: control is not None and control.stop.is_set())
    k = mc_samples if model.method.learns_threshold else 0
    try:
        torch_ready()
        kwargs = {"axis": axis, "mc_samples": k, "device": device, "progress": check,
                  "paint": paint, "keep_parts": keep_parts}  # fmt: skip
        if twin is not None and tta_samples >= 2:
            return predict_with_twin(model, twin, image, tta_samples=tta_samples, **kwargs)
        return predict_volume(model, image, tta_samples=tta_samples if tta_samples >= 2 else 0,
                              **kwargs)  # fmt: skip
    finally:
        if control is not None:
            control.done.set()


def fill_pseudo_labels(
    trainer: Trainer | GuardedTrainer,
    control: RunControl,
) -> np.ndarray:
    """The E-step's pseudo labels of every unlabelled slice after a run (what training used:
    the teacher, the evidence and, for SegPL-VI, the head's mu), on the volume's layout.

    ``stop`` is checked after every batch of slices, as for ``predict`` (``FillStopped``),
    and ``done`` is set however it ends."""
    try:
        return trainer.pseudo_label_volume(should_stop=control.stop.is_set)
    finally:
        control.done.set()


#: held from the dock's opening until ``warm_up_torch`` ends. torch's first optimiser imports
#: torch._dynamo, which registers operators as it goes; torch work in another thread at the
#: same time failed once in a test ("operator streams::fork does not exist"), so every worker
#: waits for it (``torch_ready``) before its first torch call
_WARMING = threading.Lock()


def start_warm_up(done: threading.Event | None = None) -> None:
    """Run ``warm_up_torch`` in a background thread, the lock taken before it starts (so a
    worker started right after cannot slip in ahead of it)."""
    _WARMING.acquire()
    threading.Thread(target=warm_up_torch, args=(done, True), daemon=True).start()


def torch_ready(timeout: float = 120.0) -> None:
    """Wait (at most ``timeout`` s) for a warm-up under way; returns at once when none is."""
    if _WARMING.acquire(timeout=timeout):
        _WARMING.release()


def warm_up_torch(done: threading.Event | None = None, holds_lock: bool = False) -> None:
    """Take one tiny Adam step so torch's lazy first-use set-up happens now.

    The first optimiser step of a process imports and initialises parts of torch while holding
    the GIL (130-160 ms measured here), which froze the window right after the first Train.
    Run from a background thread when the dock opens, that pause happens before any training.
    """
    try:
        import torch

        weight = torch.zeros(1, requires_grad=True)
        optimiser = torch.optim.Adam([weight], lr=0.01)
        (weight * 2.0).sum().backward()
        optimiser.step()
    except Exception as error:  # harmless: the first training step pays the set-up instead
        logging.getLogger(__name__).warning("torch warm-up failed: %s", error)
    finally:
        if done is not None:
            done.set()
        if holds_lock:
            _WARMING.release()
