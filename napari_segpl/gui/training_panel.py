"""Training: Train and Stop, "Mask now" (the whole volume from the network as it is, so a user
can stop once it is good enough), the progress of the run, what it learns from, which
threshold the pseudo-label preview shows, and the run's warnings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QCheckBox, QGroupBox, QLabel, QProgressBar, QVBoxLayout

from ..engine import (
    CollapseWarning,
    FinishedEvent,
    PreviewEvent,
    SafeguardEvent,
    SafeguardProgress,
    StepEvent,
    TrainConfig,
    removed_note,
)
from ..engine.config import one_thin_slice_note
from ..engine.snapshot import SnapshotEvent, SnapshotFailed
from .session import Snapshots, Started
from .state import DockState
from .widgets import button, format_seconds, row, status_label

if TYPE_CHECKING:
    from collections.abc import Callable

#: Warnings of a run kept in the warning label (all of them go to notifications too).
MAX_WARNINGS_SHOWN = 4


class TrainingPanel(QGroupBox):
    """Buttons and text about the current run; the plots are in ``PlotsPanel``."""

    def __init__(
        self, state: DockState, train: Callable[[], bool], stop: Callable[[], None]
    ) -> None:
        super().__init__("Training")
        self.state = state
        self._warnings: list[str] = []
        self._step_times: list[float] = []
        self._run_steps = 0
        #: the current run's mask requests (from its Started event); None between runs
        self._snapshots: Snapshots | None = None
        self._checking = False  # the safeguard's twin trains: the run's network is done
        self._twin_after = False
        self._check_start = (0.0, 0)
        v = QVBoxLayout(self)
        self.train_button = button("Train", train)
        self.stop_button = button("Stop", stop)
        self.snapshot_button = button("Mask now", self._ask_snapshot)
        self.snapshot_button.setToolTip(
            "Predict the whole volume with the network as it is now, between two steps, as "
            "Stop and then Predict would. Shown as the layer 'SegPL mask (step N of M)', "
            "replaced each time; training goes on unchanged."
        )
        v.addLayout(row(self.train_button, self.stop_button, self.snapshot_button))
        self.auto_snapshot = QCheckBox("Mask at each quarter of the run")
        self.auto_snapshot.setToolTip(
            "While training, also make that mask after 25 %, 50 % and 75 % of the steps "
            "(each costs about one Predict)."
        )
        self.auto_snapshot.toggled.connect(self._auto_toggled)
        v.addWidget(self.auto_snapshot)
        self.progress = QProgressBar()
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        v.addWidget(self.progress)
        self.status = status_label()
        #: which T the pseudo-label preview was cut at (SegPL-VI: the head's mu for the slice);
        #: two lines from the start, so the first preview does not move the plots
        self.preview_note = status_label()
        #: the last mask made while training: which step and how long it took
        self.snapshot_note = QLabel("")
        self.snapshot_note.setWordWrap(True)
        self.warning_label = status_label()
        self.warning_label.setStyleSheet("color: #e8a33d")
        for widget in (self.status, self.preview_note, self.snapshot_note, self.warning_label):
            v.addWidget(widget)
        state.run_reset.connect(self._reset)
        state.started.connect(self._started)
        state.step.connect(self._step)
        state.preview.connect(self._preview)
        state.collapse.connect(self._collapse)
        state.safeguard_step.connect(self._safeguard_step)
        state.safeguarded.connect(self._safeguarded)
        state.finished.connect(self._finished)
        state.progress_text.connect(self._progress_text)
        state.status_text.connect(self._status_text)
        state.busy_changed.connect(self._update_buttons)
        state.model_changed.connect(self._update_buttons)
        self._update_buttons()

    def _update_buttons(self, *_: object) -> None:
        self.train_button.setEnabled(not self.state.busy)
        self.stop_button.setEnabled(self.state.training)
        if not self.state.training:
            self._snapshots = None
            if self.snapshot_note.text().startswith("mask of the whole volume asked for"):
                self.snapshot_note.setText("the run ended before the mask asked for was made")
        live = self._snapshots is not None and not self._checking
        self.snapshot_button.setEnabled(live)

    # ------------------------------------------------------------- masks
    def _ask_snapshot(self) -> None:
        if self._snapshots is None or not self.state.training:
            return
        self._snapshots.now.set()
        self.snapshot_note.setText("mask of the whole volume asked for: after this step…")

    def _auto_toggled(self, on: bool) -> None:
        if self._snapshots is not None:
            (self._snapshots.auto.set if on else self._snapshots.auto.clear)()

    def _snapshot_shown(self, event: SnapshotEvent | SnapshotFailed) -> None:
        if isinstance(event, SnapshotEvent):
            parts = removed_note(event.removed)  # "" when the box was off
            self.snapshot_note.setText(
                f"mask of step {event.step} of {event.total} in {event.seconds:.1f} s: "
                f"layer '{event.name}'"
                + (f"; {parts}" if parts else "")
                + (f"\n⚠ {event.paint_note}" if event.paint_note else "")
            )
        else:
            self.snapshot_note.setText(
                f"⚠ mask of step {event.step} failed ({event.message}); training goes on"
            )

    def _progress_text(self, text: str) -> None:
        self.progress.setFormat(text)

    def _status_text(self, text: str) -> None:
        self.status.setText(text)

    def _reset(self, config: TrainConfig) -> None:
        """Sized for ``config.steps`` (the form's, then the trainer's)."""
        self.progress.setRange(0, config.steps)
        self.progress.setValue(0)
        self._run_steps = config.steps
        self._step_times = []
        self._warnings = []
        self.status.setText("")
        self.preview_note.setText("")
        self.snapshot_note.setText("")
        self.warning_label.setText("")
        self._checking = False

    def _started(self, event: Started) -> None:
        config = event.model.config
        #: the safeguard's twin trains after the run: "time left" is the run's alone
        self._twin_after = bool(getattr(event.trainer, "active", False))
        self._snapshots = getattr(event, "snapshots", None)
        if self._snapshots is not None:
            self._snapshots.shown.connect(self._snapshot_shown)
            self._auto_toggled(self.auto_snapshot.isChecked())
        self._update_buttons()
        if config.steps != self.progress.maximum():  # the trainer chose more steps
            self.state.run_reset.emit(config)
        n = len(event.labelled)
        note = one_thin_slice_note(config, event.model.method.mixes)
        recipe = f", {note}" if event.one_thin_slice else ""
        members = len(getattr(event.model.method, "members", [])) or 1
        steps = f"{members} members x {config.steps}" if members > 1 else f"{config.steps}"
        self.status.setText(
            f"{n} labelled slice{'s' if n != 1 else ''}, {event.unlabelled} unlabelled, "
            f"{event.num_classes} class(es), {config.dims}D network{recipe}, "
            f"{steps} steps, on {event.device}"
        )

    def _step(self, event: StepEvent) -> None:
        self._step_times.append(event.seconds_per_step)
        recent = self._step_times[-10:]
        per_step = sum(recent) / len(recent)
        left = per_step * (event.total - event.step)
        if self.progress.maximum() != event.total:  # e.g. an ensemble's members, one bar
            self.progress.setRange(0, event.total)
            self._run_steps = event.total
        self.progress.setValue(event.step)
        then = " + check" if self._twin_after else " left"  # the twin's time is not known yet
        self.progress.setFormat(
            f"{event.step}/{event.total} · {per_step:.2f} s/step · {format_seconds(left)}{then}"
        )
        self.progress.setToolTip(
            "time left in this run; the safeguard's supervised check trains after it"
            if self._twin_after
            else ""
        )

    def _safeguard_step(self, event: SafeguardProgress) -> None:
        """The supervised twin's steps move the bar too, so the wait after the run is seen."""
        if not self._checking:
            self._checking = True
            self._update_buttons()
            self._check_start = (time.perf_counter(), event.step)
        if self.progress.maximum() != event.total:
            self.progress.setRange(0, event.total)
        self.progress.setValue(event.step)
        text = f"safeguard: supervised check, step {event.step}/{event.total}"
        start, first = self._check_start
        if event.step > first:  # the twin's own rate, measured from its first step
            per_step = (time.perf_counter() - start) / (event.step - first)
            text += f" · {format_seconds(per_step * (event.total - event.step))} left"
        self.progress.setFormat(text)

    def _finished(self, event: FinishedEvent) -> None:
        """Back to the run's own steps after the safeguard's twin sized the bar to its own."""
        if self._run_steps and self.progress.maximum() != self._run_steps:
            self.progress.setRange(0, self._run_steps)
            self.progress.setValue(event.steps_done)

    def _safeguarded(self, event: SafeguardEvent) -> None:
        run = self.status.text().split("\n")[0]
        self.status.setText(f"{run}\n{event.message}" if run else event.message)

    def _preview(self, event: PreviewEvent) -> None:
        note = getattr(event, "threshold_note", "") or ""
        where = f"pseudo labels of slice {event.slice_index} at step {event.step}"
        self.preview_note.setText(f"{where}: {note}" if note else where)

    def _collapse(self, event: CollapseWarning) -> None:
        # every warning of the run stays in view (a run can warn of several classes, and the
        # gate's "never used" came just before the finished model's warning)
        self._warnings.append(f"⚠ {event.message}")
        shown = self._warnings[-MAX_WARNINGS_SHOWN:]
        hidden = len(self._warnings) - len(shown)
        more = [f"({hidden} earlier warning(s) in the notifications)"] if hidden else []
        self.warning_label.setText("\n".join(more + shown))
