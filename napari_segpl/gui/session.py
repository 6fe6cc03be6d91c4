"""What runs in the dock's worker threads: plain generators and functions over the engine.

No Qt here: the dock wraps these in napari ``thread_worker``s. Stopping is cooperative through a
``threading.Event`` that the training generator checks between steps, so Stop takes effect
within one step and the model trained so far is kept; ``done`` is set however the run ends, so
the dock can wait for it when the window closes.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine import (
    GuardedTrainer,
    Prediction,
    TrainConfig,
    TrainedModel,
    Trainer,
    predict_volume,
    prepare_data,
    robustness,
)
from ..engine.compare import CompareResult, check_request, compare

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


@dataclass
class RunControl:
    """Shared between the dock (GUI thread) and the training generator (worker thread)."""

    stop: threading.Event
    done: threading.Event
    preview_slice: Callable[[], int | None]

    @classmethod
    def new(cls, preview_slice: Callable[[], int | None] = lambda: None) -> RunControl:
        return cls(threading.Event(), threading.Event(), preview_slice)


def training_events(
    image: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    labelled: Sequence[int] | None,
    control: RunControl,
    *,
    safeguard: bool = True,
    holdout: Sequence[int] = (),
) -> Iterator[object]:
    """Prepare the data (in the worker: normalising a volume takes a moment), then train.

    ``labels`` must be the caller's own copy: training never touches the user's layer. With
    ``safeguard`` the run is a ``GuardedTrainer`` (SegPL and SegPL-VI are checked against a
    supervised twin; supervised runs are not). ``holdout``: slices along the axis never trained
    on (zeroed here, left out of ``labelled``); any run with them is a ``GuardedTrainer``, so
    they are scored while training (``HeldoutEvent``s, about ``HELDOUT_POINTS`` a run) whether
    or not the safeguard checks, and the safeguard scores both models on them.
    """
    try:
        holdout = sorted(set(holdout))
        truth = labels
        if holdout:
            labels = np.array(labels, copy=True)
            np.moveaxis(labels, config.axis, 0)[holdout] = 0
            if labelled is not None:
                labelled = [s for s in labelled if s not in set(holdout)] or None
        data = prepare_data(image, labels, config, labelled)
        trainer: Trainer | GuardedTrainer
        if safeguard or holdout:
            trainer = GuardedTrainer(
                config, data, image, truth=truth, holdout=holdout, check=safeguard
            )
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
        )
        for event in trainer.run():
            if control.stop.is_set():
                trainer.stop()
            wanted = control.preview_slice()
            if wanted is not None and wanted not in data.labelled:
                trainer.preview_slice = wanted
            yield event
    finally:
        control.done.set()


class Cancelled(Exception):
    """Raised inside a prediction when the dock asked it to stop (the window is closing)."""


def predict(
    model: TrainedModel,
    image: np.ndarray,
    axis: int,
    mc_samples: int,
    device: str,
    control: RunControl | None = None,
) -> Prediction:
    """Whole-volume prediction for the dock (Monte-Carlo only for a learnt threshold).

    With ``control``, ``stop`` is checked after every batch of slices (a 3D prediction of a
    large volume on a CPU takes tens of seconds; closing the window must not wait for it, nor
    leave it running while Qt is torn down) and ``done`` is set however it ends."""

    def check(done: int, total: int) -> None:
        if control is not None and control.stop.is_set():
            raise Cancelled(f"prediction stopped after {done} of {total} slices")

    k = mc_samples if model.method.learns_threshold else 0
    try:
        return predict_volume(model, image, axis=axis, mc_samples=k, device=device, progress=check)
    finally:
        if control is not None:
            control.done.set()


def fill_pseudo_labels(
    trainer: Trainer | GuardedTrainer,
    control: RunControl,
) -> np.ndarray:
    """The E-step's pseudo labels of every unlabelled slice after a run (what training used:
    the teacher, the evidence and, for SegPL-VI, the head's mu), on the volume's layout.

    ``stop`` is checked after every batch of slices, as for ``predict``, and ``done`` is set
    however it ends."""

    def check(done: int, total: int) -> None:
        if control.stop.is_set():
            raise Cancelled(f"pseudo labels stopped after {done} of {total} slices")

    try:
        try:
            return trainer.pseudo_label_volume(progress=check, should_stop=control.stop.is_set)
        except Cancelled:
            raise
        except Exception as exc:
            if control.stop.is_set():  # the engine's own "stopped" exception
                raise Cancelled(str(exc)) from exc
            raise
    finally:
        control.done.set()


def warm_up_torch(done: threading.Event | None = None) -> None:
    """Take one tiny Adam step so torch's lazy first-use set-up happens now.

    The first optimiser step of a process imports and initialises parts of torch while holding
    the GIL (130-160 ms measured here), which froze the window right after the first Train.
    Run from a background thread when the dock opens, that pause happens before any training.
    """
    import torch

    try:
        weight = torch.zeros(1, requires_grad=True)
        optimiser = torch.optim.Adam([weight], lr=0.01)
        (weight * 2.0).sum().backward()
        optimiser.step()
    finally:
        if done is not None:
            done.set()


# ------------------------------------------------------------------ compare
@dataclass
class CompareProgress:
    """A training step of one compare run (``run`` of ``runs``, counted from 1).
    ``reference``: supervised trained only to time the s/step ratio (no row of its own)."""

    method: str
    seed: int
    step: int
    total: int
    run: int
    runs: int
    reference: bool = False


@dataclass
class CompareRunDone:
    """A run was trained and scored: ``result`` holds every run finished so far."""

    result: CompareResult


class _Stopped(Exception):
    """Raised from the engine's progress callback when the dock asked the compare to stop."""


def _engine_call(
    call: Callable[[Callable[[str, int, int, int], None]], CompareResult],
    control: RunControl,
    place: tuple[int, int, bool],
) -> Generator[CompareProgress, None, CompareResult | None]:
    """Run one engine ``compare`` call in a helper thread and yield its steps as they come.

    The engine reports steps through a callback, which a generator cannot yield from; the
    callback puts them on a queue instead. Stop makes the callback raise after the step under
    way, which ends the call: None is returned. The engine's own errors are re-raised here."""
    steps: queue.Queue[CompareProgress | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(method: str, seed: int, step: int, total: int) -> None:
        if control.stop.is_set():
            raise _Stopped
        steps.put(CompareProgress(method, seed, step, total, *place))

    def target() -> None:
        try:
            outcome["result"] = call(progress)
        except _Stopped:
            pass
        except BaseException as exc:  # noqa: B036 (handed to the worker thread, re-raised)
            outcome["error"] = exc
        finally:
            steps.put(None)

    thread = threading.Thread(target=target, name="segpl-compare", daemon=True)
    thread.start()
    while (event := steps.get()) is not None:
        yield event
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def merge_runs(
    parts: Sequence[CompareResult], methods: Sequence[str], reference: float | None
) -> CompareResult:
    """One ``CompareResult`` from single-run engine results, as one ``compare`` call would
    give: the runs in order, the methods that have one, and each run's s/step over the mean
    of the supervised runs' (or over ``reference``, a supervised run timed for it alone)."""
    runs = [r for part in parts for r in part.runs]
    supervised = [r.seconds_per_step for r in runs if r.method == "supervised"]
    ref = float(np.mean(supervised)) if supervised else reference
    runs = [dataclasses.replace(r, cost_ratio=r.seconds_per_step / ref if ref else None)
            for r in runs]  # fmt: skip
    return dataclasses.replace(
        parts[0],
        runs=runs,
        methods=[m for m in methods if any(r.method == m for r in runs)],
        supervised_seconds_per_step=ref,
        reference_trained=not supervised and ref is not None,
    )


def compare_events(
    image: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    methods: Sequence[str],
    holdout: Sequence[int],
    control: RunControl,
    *,
    seeds: Sequence[int] = (0,),
    labelled: Sequence[int] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    spacing: Sequence[float] | None = None,
    gammas: Sequence[float] = robustness.GAMMAS,
    epsilons: Sequence[float] = robustness.EPSILONS,
    surface: bool = True,
) -> Generator[CompareProgress | CompareRunDone, None, CompareResult | None]:
    """``segpl compare``'s engine for the dock: every (method, seed) trained on the labelled
    slices minus ``holdout`` and scored there, one run after another; returns the result (the
    runs that finished, None if none did).

    Each run is its own engine ``compare`` call with the CLI's arguments, so Stop (checked
    after every step) loses only the run under way and the finished ones are kept; the
    engine's single call would lose them all. The s/step ratio is then taken over the runs as
    the engine does (``merge_runs``); without supervised among ``methods``, one supervised run
    is trained and scored first, for the ratio only. ``labels`` must be the caller's copy."""
    try:
        params = params or {}
        check_request(config, methods, holdout, seeds, params)  # nothing trains on bad input
        todo = [(m, int(s), False) for m in methods for s in seeds]
        if "supervised" not in methods:
            todo.insert(0, ("supervised", int(seeds[0]), True))
        parts: list[CompareResult] = []
        reference: float | None = None
        for i, (method, seed, timing) in enumerate(todo, start=1):
            if control.stop.is_set():
                break

            def call(progress: Callable, method: str = method, seed: int = seed,
                     timing: bool = timing) -> CompareResult:  # fmt: skip
                return compare(
                    image, labels, config, [method], holdout, seeds=[seed], labelled=labelled,
                    params={method: params.get(method, {})}, spacing=spacing,
                    gammas=(0.0,) if timing else gammas, epsilons=(0.0,) if timing else epsilons,
                    surface=surface and not timing, time_supervised=False, progress=progress,
                )  # fmt: skip

            part = yield from _engine_call(call, control, (i, len(todo), timing))
            if part is None:
                break
            if timing:
                reference = part.runs[0].seconds_per_step
                continue
            parts.append(part)
            yield CompareRunDone(merge_runs(parts, methods, reference))
        return merge_runs(parts, methods, reference) if parts else None
    finally:
        control.done.set()
