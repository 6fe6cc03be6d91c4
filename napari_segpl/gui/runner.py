"""The dock's background work: a training run (and the masks asked for while it trains), the
pseudo-label fill after it, and whole-volume predictions, each in a napari thread worker.

The runner turns the workers' results into state signals and result-layer updates on the GUI
thread; it holds no widget. Predict pressed while the fill runs is queued, not refused.
Closing the window stops every worker and waits for it (a prediction still running while Qt
is torn down aborts the process).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import QThreadPool

from ..engine import (
    CollapseWarning,
    DataError,
    FillStopped,
    FinishedEvent,
    HeldoutEvent,
    PredictionStopped,
    PreviewEvent,
    RetryDecision,
    RetryEvent,
    SafeguardEvent,
    SafeguardProgress,
    StepEvent,
    TrainConfig,
    check_slice_size,
    removed_note,
)
from ..engine.snapshot import SnapshotEvent, SnapshotFailed
from . import notify
from .closing import StopsBetweenSteps
from .preflight import run_inputs
from .result_layers import PREDICTION, PROBABILITY, PSEUDO, SNAPSHOT, ResultLayers
from .session import RunControl, Started, fill_pseudo_labels, predict, training_events
from .state import DockState, RunInfo

#: metadata key of the line saying which threshold a result layer was cut at
THRESHOLD_NOTE_KEY = "segpl_threshold_note"


class Runner:
    """Starts, follows and stops the workers; the state says what is running."""

    def __init__(
        self,
        state: DockState,
        layers: ResultLayers,
        config_for: Callable[[int, Any], TrainConfig],
        device: Callable[[], str],
        safeguard: Callable[[], bool] = lambda: True,
        retry: Callable[[], bool] = lambda: True,
    ) -> None:
        self.state, self.layers = state, layers
        self.config_for, self.device, self.safeguard = config_for, device, safeguard
        self.retry = retry
        self.worker: Any = None  # training
        self.control: RunControl | None = None
        self.predict_worker: Any = None  # the fill or a prediction
        self.predict_control: RunControl | None = None
        self._trainer: Any = None
        self._image: Any = None  # the image layer the run or prediction is about
        self._finish_text = ""

    # ------------------------------------------------------------ training
    def start_training(self, labelled: list[int], holdout: list[int] | None = None) -> bool:
        """Start a run in a worker thread; False (with a message) if it cannot start.
        ``holdout``: labelled slices kept out of training, scored while it runs and by the
        safeguard."""
        state = self.state
        if state.busy:
            notify.info("SegPL is already running: press Stop (or wait) before a new run.")
            return False
        inputs = run_inputs(state, self.config_for, "SegPL", labelled, holdout or ())
        if inputs is None:
            return False
        image, labels, config = inputs
        held = sorted(set(holdout or ()))
        state.run = RunInfo(state.axis, list(labelled), held, weakref.ref(image))
        state.safeguard = state.safeguard_model = state.safeguard_partner = None
        self._image = image
        self.layers.ensure(PSEUDO, image)
        state.run_reset.emit(config)
        self.control = RunControl.new(self._preview_slice, self._parts)
        self.worker = create_worker(
            training_events,
            np.asarray(image.data),
            np.array(labels.data, copy=True),  # never the user's own array
            config,
            list(labelled) or None,
            self.control,
            safeguard=bool(self.safeguard()),
            retry=bool(self.retry()),
            holdout=list(holdout or ()),
            parts=state.painted_parts,  # the safeguard compares the masks Predict would show
            _start_thread=False,
            _ignore_errors=True,  # reported by _on_training_error instead
            _worker_class=StopsBetweenSteps,
        )
        self.worker.control = self.control
        # Bound methods, not lambdas: Qt drops them by itself if the dock is deleted first.
        self.worker.yielded.connect(self._on_event)
        self.worker.errored.connect(self._on_training_error)
        self.worker.finished.connect(self._on_training_finished)
        state.progress_text.emit("preparing data…")
        state.set_busy(training=True)
        self.worker.start()
        return True

    def stop_training(self) -> None:
        """Stop after the current step; the model trained so far is kept."""
        if self.control is not None:
            self.control.stop.set()
            self.state.progress_text.emit("stopping after this step…")

    def _preview_slice(self) -> int | None:
        """Called from the worker: the slice on screen, when it is along the run's axis."""
        return self.state.current_slice() if self.state.axis == self.state.run.axis else None

    def _parts(self) -> bool:
        """Called from the worker when it makes a mask: the box as it is now."""
        return self.state.painted_parts

    def _on_event(self, event: object) -> None:
        state = self.state
        if isinstance(event, Started):
            self._trainer = getattr(event, "trainer", None)
            state.run.paint = getattr(event, "paint", None)
            state.run.models.append(weakref.ref(event.model))
            state.set_model(event.model)
            state.started.emit(event)
        elif isinstance(event, StepEvent):
            state.step.emit(event)
        elif isinstance(event, PreviewEvent):
            self._show_preview(event)
            state.preview.emit(event)
        elif isinstance(event, CollapseWarning):
            notify.warning(f"SegPL: {event.message}")
            state.collapse.emit(event)
        elif isinstance(event, HeldoutEvent):
            state.heldout.emit(event)
        elif isinstance(event, SafeguardProgress):
            state.safeguard_step.emit(event)
        elif isinstance(event, SafeguardEvent):
            self._safeguarded(event)
        elif isinstance(event, RetryEvent):  # the run again from step 1: fresh plots
            notify.warning(f"SegPL: {event.message}")
            state.run_reset.emit(self._trainer.config)
            state.progress_text.emit(f"training again at seed {event.seed}…")
        elif isinstance(event, RetryDecision):  # the kept run's verdict, if it had one
            self._safeguarded(getattr(self._trainer, "verdict", None), event)
        elif isinstance(event, (SnapshotEvent, SnapshotFailed)):
            self._snapshot(event)
        elif isinstance(event, FinishedEvent):
            how = "stopped" if event.stopped or event.note else "done"
            self._finish_text = f"{how}: {event.steps_done} steps"
            if event.note:
                self._finish_text += f"; {event.note}"
                notify.warning(f"SegPL: {event.note}")
            state.progress_text.emit(self._finish_text)
            state.finished.emit(event)
            state.model_changed.emit(state.model)

    def _safeguarded(self, event: SafeguardEvent | None, retried: RetryDecision | None = None):
        """The kept model becomes the dock's (Predict and Save use it); the user is told which
        and why (after a retry, the kept run's and its verdict's, told once more)."""
        state = self.state
        kept = getattr(self._trainer, "model", None) or state.model
        if event is not None:
            state.safeguard, state.safeguard_model = event, kept
            state.safeguard_partner = getattr(self._trainer, "partner", None)
        state.run.models.append(weakref.ref(kept))  # trained on the run's paint too
        state.set_model(kept)
        message = (retried or event).message
        if retried is not None:  # the status line, cleared when the second run began
            state.status_text.emit(f"retried: {message}")
        if retried is not None or event.kept == event.method:
            notify.info(f"SegPL: {message}")
        else:
            notify.warning(f"SegPL: {message}")
        if event is not None:
            state.safeguarded.emit(event)

    def _snapshot(self, event: SnapshotEvent | SnapshotFailed) -> None:
        """A mask of the network as it is now, in the dock's own layer named after the step
        (replaced at each one); a failed one is reported and the run goes on."""
        if isinstance(event, SnapshotEvent):
            image = self._image
            if image is not None and image.data.shape == event.labels.shape:
                layer = self.layers.ensure(SNAPSHOT, image, event.labels, name=event.name)
                layer.metadata[THRESHOLD_NOTE_KEY] = event.threshold_note
            else:  # the image layer's data was replaced meanwhile: nothing to lay it on
                event = SnapshotFailed(event.step, event.total, "the image changed shape")
        if isinstance(event, SnapshotFailed):
            notify.warning(
                f"SegPL: the mask of step {event.step} failed ({event.message}); training goes on."
            )
        if self.control is not None:
            self.control.snapshots.shown.emit(event)

    def _show_preview(self, event: PreviewEvent) -> None:
        layer = self.layers.get(PSEUDO)
        if layer is None:
            return  # the user deleted it: fine, training goes on
        view = np.moveaxis(layer.data, self.state.run.axis, 0)
        if event.slice_index < len(view) and view.shape[1:] == np.shape(event.labels):
            view[event.slice_index] = event.labels
            layer.metadata[THRESHOLD_NOTE_KEY] = getattr(event, "threshold_note", "")
            layer.refresh()

    def _on_training_error(self, exc: BaseException) -> None:
        notify.error(f"SegPL training failed: {exc}")
        self.state.progress_text.emit("failed")
        self.state.status_text.emit(str(exc))

    def _on_training_finished(self) -> None:
        self.worker = self.control = None
        self.state.set_busy(training=False)
        model = self.state.model
        if model is not None and model.steps_done > 0 and self._trainer is not None:
            self._start_fill()
        else:
            self._trainer = None

    # ------------------------------------------------------- fill and predict
    def _start_fill(self) -> None:
        """The pseudo labels of every unlabelled slice, from the same E-step as training."""
        trainer, self._trainer = self._trainer, None
        self.predict_control = RunControl.new()
        worker = create_worker(
            fill_pseudo_labels, trainer, self.predict_control,
            _start_thread=False, _ignore_errors=True,
        )  # fmt: skip
        self._run_predict_worker(worker, "filling pseudo labels…", filling=True)

    def start_prediction(self, mc_samples: int, tta_samples: int = 0) -> bool:
        """Predict the chosen image in a worker; queued while the fill runs. ``tta_samples``
        of 2 or more adds the test-time-augmentation uncertainty."""
        state = self.state
        if state.model is None:
            notify.info("Train or load a model first.")
            return False
        if state.filling and not state.predicting:
            state.predict_queued = {"mc_samples": mc_samples, "tta_samples": tta_samples}
            state.progress_text.emit("Predict queued: it runs when the pseudo-label fill ends")
            state.busy_changed.emit()
            return True
        if state.busy:
            notify.info("SegPL is busy: wait for the current run to finish.")
            return False
        image = state.image
        if image is None or image.ndim != 3:
            notify.error("Choose a 3D image layer to predict.")
            return False
        axis = state.model.config.axis  # the slices the network learnt, as Mask now and the CLI
        try:  # said now in the engine's words, not as torch's error from the worker
            check_slice_size(state.model.config, image.data.shape, axis)
        except DataError as exc:
            notify.error(f"SegPL cannot predict this image: {exc}")
            return False
        self._image = image
        self.predict_control = RunControl.new()
        if axis != state.axis:
            notify.info(f"SegPL: predicting along axis {axis}, the axis the model trained on")
        # the run's other model, for the TTA std with twin (not for a model read from a file)
        twin = state.safeguard_partner if state.model is state.safeguard_model else None
        worker = create_worker(
            predict, state.model, np.asarray(image.data), axis, mc_samples, self.device(),
            self.predict_control, tta_samples, paint=state.paint_for(image),
            keep_parts=state.painted_parts, twin=twin, _start_thread=False, _ignore_errors=True,
        )  # fmt: skip
        self._run_predict_worker(worker, "predicting the volume…", predicting=True)
        return True

    def _run_predict_worker(self, worker: Any, text: str, **flags: bool) -> None:
        self.predict_worker = worker
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_predict_error)
        worker.finished.connect(self._on_predict_finished)
        self.state.progress_text.emit(text)
        self.state.set_busy(**flags)
        worker.start()

    def _on_returned(self, result: Any) -> None:
        if isinstance(result, np.ndarray):  # the fill's labels; a prediction is a Prediction
            self._show_fill(result)
        else:
            self._show_prediction(result)

    def _show_fill(self, labels: np.ndarray) -> None:
        layer = self.layers.get(PSEUDO)
        image = self._image
        if layer is None and self.layers.edited(PSEUDO) and image is not None:
            # painted on while the run trained: theirs, and the fill still shown, beside it
            if image.data.shape == labels.shape:
                layer = self.layers.ensure(PSEUDO, image)
        if layer is not None and layer.data.shape == labels.shape:
            data = np.array(labels, copy=True)
            np.moveaxis(data, self.state.run.axis, 0)[self.state.run.labelled] = 0
            layer.data = data
        self.state.progress_text.emit(f"{self._finish_text} · pseudo labels filled")

    def _show_prediction(self, pred: Any) -> None:
        image, note = self._image, getattr(pred, "threshold_note", "")
        layer = self.layers.ensure(PREDICTION, image)
        layer.data = pred.labels
        layer.metadata[THRESHOLD_NOTE_KEY] = note
        prob = self.layers.ensure(
            PROBABILITY, image, colormap="magma", opacity=0.5, blending="additive"
        )
        prob.data = pred.probabilities.max(axis=0)
        prob.contrast_limits = (0.0, 1.0)
        removed = getattr(pred, "removed", None)
        if removed and any(removed.values()):  # the mask differs from the network's own
            notify.info(f"SegPL: {removed_note(removed)}")
        if against := getattr(pred, "paint_note", ""):  # a painted class missing or unlike it
            notify.warning(f"SegPL: {against}")
        self.state.progress_text.emit("prediction ready")
        self.state.predicted.emit(pred)

    def _on_predict_error(self, exc: BaseException) -> None:
        what = "filling the pseudo labels" if self.state.filling else "prediction"
        if isinstance(exc, PredictionStopped | FillStopped):  # a Stop or a closing window
            self.state.progress_text.emit(f"{what} stopped")
            return
        notify.error(f"SegPL {what} failed: {exc}")
        self.state.progress_text.emit(f"{what} failed")

    def _on_predict_finished(self) -> None:
        self.predict_worker = self.predict_control = None
        self.state.set_busy(filling=False, predicting=False)
        queued, self.state.predict_queued = self.state.predict_queued, None
        if queued is not None:
            self.start_prediction(**queued)

    # --------------------------------------------------------------- closing
    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop any training or prediction and wait for its thread, so closing never hangs or
        crashes later. Returns True when the workers ended within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self.state.predict_queued = None
        self._trainer = None
        ok = True
        if self.worker is not None and self.control is not None:
            slots = [
                ("yielded", self._on_event),
                ("errored", self._on_training_error),
                ("finished", self._on_training_finished),
            ]
            stopped = _stop_worker(self.worker, self.control, slots, deadline, "training")
            if stopped:  # through set_busy: Train and Stop follow (a dock taken out and
                self.worker = self.control = None  # put back again is usable)
                self.state.set_busy(training=False)
            ok = ok and stopped
        if self.predict_worker is not None and self.predict_control is not None:
            slots = [
                ("returned", self._on_returned),
                ("errored", self._on_predict_error),
                ("finished", self._on_predict_finished),
            ]
            worker, control = self.predict_worker, self.predict_control
            stopped = _stop_worker(worker, control, slots, deadline, "prediction")
            if stopped:
                self.predict_worker = self.predict_control = None
                self.state.set_busy(filling=False, predicting=False)
            ok = ok and stopped
        if ok:  # "done" is set just before the worker's last signals: let them go out too
            QThreadPool.globalInstance().waitForDone(
                max(0, int(1000 * (deadline - time.monotonic())))
            )
        return ok


def _stop_worker(worker: Any, control: RunControl, slots: list, deadline: float, what: str) -> bool:
    """Disconnect the runner from a worker, ask it to stop and wait until it has."""
    for name, slot in slots:
        try:
            getattr(worker, name).disconnect(slot)
        except (TypeError, RuntimeError):
            pass
    control.stop.set()
    while not control.done.wait(0.05):
        if time.monotonic() > deadline:
            notify.warning(f"SegPL: the {what} thread did not stop in time.")
            return False
    return True
