"""Compare: ``segpl compare`` in the dock. The ticked methods train, one after another, on the
labelled slices minus the held-out ones with the training options of the form, and are scored
on the held-out slices; a short table shows the main numbers and ``compare_plots`` the
robustness curves and reliability diagram (drawn as the CLI's PNG files are), both updated as
each run finishes; each run's prediction is kept as a layer ("compare: segpl s0"); *Save
results…* writes the CLI's files (table.md, table.csv, results.json, plots).

The runs are the engine's one ``compare`` loop, the CLI's, in a worker (``compare_runner``), so
the table shows the engine's numbers, and Stop keeps the runs that finished. A compare trains,
so it sets ``state.comparing`` (part of ``state.busy``): Train, Predict and Compare never
overlap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QLabel,
    QMessageBox,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..engine import METHODS, TrainConfig
from ..engine.compare import CompareResult, RunDone
from ..engine.robustness import EPSILONS, GAMMAS
from ..layers import mm_spacing
from . import notify
from .compare_plots import ComparePlots
from .compare_runner import CompareLayers, CompareRunner, Step
from .compare_table import (  # noqa: F401  (the panel's names before)
    COLUMNS,
    finite_mean,
    fit_height,
    number_text,
    results_table,
    short_rows,
    show_rows,
)
from .preflight import run_inputs
from .state import DockState
from .widgets import button, row, status_label

#: ticked when the dock opens: the baseline and the two methods of the paper
DEFAULT_METHODS = ("supervised", "segpl", "segpl-vi")


class Slices(Protocol):
    """Where the panel reads the slices (the data panel): the training and held-out ones."""

    def labelled(self) -> list[int]: ...

    def held_out(self) -> list[int]: ...


class ComparePanel(QGroupBox):
    """Methods, seeds, Compare and Stop, a line per run and the table of results, folded
    away under one line until opened (most sessions never compare).

    Not superqt's QCollapsible: it fixes the open height when it opens, and the run lines
    and the table that come later were cut off."""

    def __init__(
        self,
        state: DockState,
        config_for: Callable[[int, Any], TrainConfig],
        slices: Slices,
    ) -> None:
        super().__init__("Compare")
        self.state, self.config_for = state, config_for
        self.labelled, self.held_out = slices.labelled, slices.held_out
        #: robustness curve points and HD95 (tests make them small)
        self.gammas: tuple[float, ...] = GAMMAS
        self.epsilons: tuple[float, ...] = EPSILONS
        self.runner = CompareRunner(self)
        self._listening = False
        self._listen(True)
        self.runner.ended.connect(self._on_ended)
        self.layers = CompareLayers(state.viewer, state.owner)
        self.result: CompareResult | None = None
        self._like: Any = None  # the image layer compared: the prediction layers' grid
        self._request: dict[str, Any] = {}
        self._lines: list[str] = []
        self._current, self._started_at = "", 0.0

        outer = QVBoxLayout(self)
        self.toggle = QToolButton()
        self.toggle.setText("methods on the held-out slices")
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.toggle.setAutoRaise(True)
        self.toggle.setCheckable(True)
        self.toggle.toggled.connect(self._fold)
        outer.addWidget(self.toggle)
        self.body = body = QWidget()
        outer.addWidget(body)
        v = QVBoxLayout(body)
        v.setContentsMargins(0, 0, 0, 0)
        grid = QGridLayout()
        self.method_boxes: dict[str, QCheckBox] = {}
        names = sorted(METHODS, key=lambda n: n != "supervised")  # the baseline first
        for i, name in enumerate(names):
            box = QCheckBox(name)
            box.setToolTip(METHODS[name].title)
            box.setChecked(name in DEFAULT_METHODS)
            box.toggled.connect(self.update_button)
            grid.addWidget(box, i // 2, i % 2)
            self.method_boxes[name] = box
        v.addLayout(grid)
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 20)
        self.seeds.setToolTip("each method trains with seeds 0..N-1; the table shows the mean")
        self.seeds.valueChanged.connect(self.update_button)
        self.hd95 = QCheckBox("HD95")
        self.hd95.setChecked(True)
        self.hd95.setToolTip("95th-percentile Hausdorff distance per held-out slice (MONAI)")
        v.addLayout(row(QLabel("seeds"), self.seeds, self.hd95, stretch=True))
        self.hint = status_label(1)
        v.addWidget(self.hint)
        self.compare_button = button("Compare", self.start)
        self.stop_button = button("Stop", self.stop)
        self.save_button = button("Save results…", self._choose_folder)
        self.save_button.setToolTip("table.md, table.csv, results.json and plots, as segpl compare")
        v.addLayout(row(self.compare_button, self.stop_button, self.save_button))
        self.progress = status_label(1)
        v.addWidget(self.progress)
        self.table = results_table()
        v.addWidget(self.table)
        self.plots = ComparePlots(getattr(state.viewer, "theme", "dark"))
        self.plots.setVisible(False)
        v.addWidget(self.plots)
        self._fold(False)

        for signal in (state.slices_changed, state.busy_changed, state.labels_changed,
                       state.image_changed, state.axis_changed):  # fmt: skip
            signal.connect(self.update_button)
        self.update_button()

    # ------------------------------------------------------------ folding
    def _fold(self, opened: bool) -> None:
        self.toggle.setArrowType(Qt.DownArrow if opened else Qt.RightArrow)
        self.body.setVisible(opened)

    def expand(self) -> None:
        self.toggle.setChecked(True)

    def isExpanded(self) -> bool:  # noqa: N802 (QCollapsible's name)
        return self.toggle.isChecked()

    # ------------------------------------------------------------ the button
    def methods(self) -> list[str]:
        return [name for name, box in self.method_boxes.items() if box.isChecked()]

    def why_not(self) -> str:
        """Why Compare cannot start now ("" when it can)."""
        state = self.state
        if self.state.comparing:
            return ""
        if state.busy:
            return "Training or prediction is running: Compare waits until it ends."
        if state.image is None or state.labels is None:
            return "Choose an image and a labels layer (Data)."
        if not self.held_out():
            return ("Hold out at least one labelled slice (Data: Hold out): the methods are "
                    "scored there.")  # fmt: skip
        if not self.labelled():
            return "Every labelled slice is held out: keep at least one for training."
        if not self.methods():
            return "Tick at least one method."
        return ""

    def update_button(self, *_: object) -> None:
        reason = self.why_not()
        self.compare_button.setEnabled(not reason and not self.state.comparing)
        self.stop_button.setEnabled(self.state.comparing)
        self.save_button.setEnabled(self.result is not None and not self.state.comparing)
        if reason or self.state.comparing:
            self.hint.setText(reason)
            return
        runs = len(self.methods()) * self.seeds.value()
        slices = ", ".join(map(str, self.held_out()))
        self.hint.setText(
            f"{runs} run{'s' if runs != 1 else ''} with the options above (no safeguard), "
            f"scored on held-out slice{'s' if len(self.held_out()) > 1 else ''} {slices}"
        )

    # ------------------------------------------------------------ running
    def start(self) -> bool:
        """Start the compare in a worker; False (with a message) if it cannot start."""
        reason, state = self.why_not(), self.state
        if reason or state.comparing:
            notify.info(f"Compare: {reason or 'already running'}")
            return False
        inputs = run_inputs(state, self.config_for, "Compare", self.labelled(), self.held_out())
        if inputs is None:
            return False
        image, labels, config = inputs
        methods, holdout = self.methods(), self.held_out()
        seeds = list(range(self.seeds.value()))
        self._request = {"image": image.name, "labels": labels.name, "methods": methods,
                         "holdout": holdout, "seeds": len(seeds)}  # fmt: skip
        self._like = image
        self.result, self._lines, self._current = None, [], "preparing data…"
        self._started_at = time.monotonic()
        self._show_table(None)
        self._show_progress()
        self._listen(True)
        state.set_busy(comparing=True)  # the dock watches its window from here (dock.py)
        self.runner.start(
            np.asarray(image.data), np.array(labels.data, copy=True), config, methods, holdout,
            seeds=seeds, labelled=sorted(set(self.labelled()) | set(holdout)),
            params={config.method: dict(config.extra)},  # the form's method's own values
            spacing=mm_spacing(image), gammas=self.gammas,
            epsilons=self.epsilons, surface=self.hd95.isChecked(), parts=state.painted_parts,
        )  # fmt: skip
        return True

    def stop(self) -> None:
        """End after the step under way; the runs that finished stay in the table."""
        if self.runner.running:
            self.runner.stop()
            self._current = "stopping after this step…"
            self._show_progress()

    def _on_step(self, event: Step) -> None:
        if self.runner.stopping:
            return
        what = " (timing only)" if event.reference else ""
        self._current = (f"{event.method} seed {event.seed}{what}: step {event.step}/"
                         f"{event.total} (run {event.run} of {event.runs})")  # fmt: skip
        if event.step >= event.total and not event.reference:
            self._current += ", scoring…"
        self._show_progress()

    def _on_scored(self, event: RunDone) -> None:
        """A run finished: its line, the table so far, its prediction as a layer."""
        run = event.result.runs[-1]
        self._lines.append(f"{run.method} seed {run.seed}: {run.steps} steps, Dice "
                           f"{number_text(finite_mean(run.dice))}")  # fmt: skip
        if not self.runner.stopping:
            self._current = ""
        self._show_progress()
        self._show_table(event.result)
        self.layers.show(self._like, event.method, event.seed, event.labels)

    def _on_ended(self, result: CompareResult | None, error: BaseException | None) -> None:
        self.state.set_busy(comparing=False)
        if error is not None:
            notify.error(f"Compare failed: {error}")
            self._current = f"failed: {error}"
        else:
            self.result = result if result is not None and result.runs else None
            self._show_table(self.result)
            took, runs = time.monotonic() - self._started_at, len(result.runs) if result else 0
            how = "stopped" if result is None or result.stopped else "done"
            self._current = f"{how}: {runs} run{'s' if runs != 1 else ''} finished in {took:.0f} s"
            self._current += f" ({result.hd95_note})" if result and result.hd95_note else ""
        self._show_progress()
        self.update_button()

    def _show_progress(self) -> None:
        current = [self._current] if self._current else []
        self.progress.setText("\n".join([*self._lines, *current]))

    def _show_table(self, result: CompareResult | None) -> None:
        """One row and one line per plot per method with a finished run: the engine's
        summary over the seeds."""
        rows = show_rows(self.table, result)
        self.plots.show_result(result)
        self.plots.setVisible(bool(rows))
        fit_height(self.table, rows)

    # ------------------------------------------------------------ saving
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save the compare results in")
        if not folder:
            return
        names = ["table.md", "table.csv", "results.json"]
        there = [n for n in names if (Path(folder) / n).exists()]
        question = f"{', '.join(there)} already in {folder}: replace them?"
        if there and QMessageBox.question(self, "Replace?", question) != QMessageBox.Yes:
            return
        try:
            written = self.save(Path(folder))
        except OSError as exc:
            notify.error(f"Compare: could not save the results: {exc}")
            return
        notify.info(f"Compare results saved in {folder}: {', '.join(written)}")

    def save(self, folder: Path) -> list[str]:
        """Write ``segpl compare``'s files for the last result in ``folder`` with the CLI's
        own writers (each file to a temporary name, then renamed over the target)."""
        from ..compare_cli import result_files, write_atomic

        if self.result is None:
            raise ValueError("no compare result to save")
        r = self._request
        command = (f"napari SegPL dock, Compare: image {r['image']!r}, labels {r['labels']!r}, "
                   f"methods {','.join(r['methods'])}, held out {r['holdout']}, "
                   f"{r['seeds']} seed(s); training options: results.json 'config'")  # fmt: skip
        files = result_files(self.result, command)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            write_atomic(folder / name, data)
        return list(files)

    # ------------------------------------------------------------ closing
    def _listen(self, on: bool) -> None:
        """Connect the runner's progress signals (``on``, once), or cut them: a shutdown cuts
        them and a compare started after it must report again."""
        if on == self._listening:
            return
        self._listening = on
        for signal, slot in ((self.runner.stepped, self._on_step),
                             (self.runner.scored, self._on_scored)):  # fmt: skip
            if on:
                signal.connect(slot)
                continue
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):  # already gone (the panel is being deleted)
                pass

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop the compare and wait for its thread (True when it ended in time); nothing it
        still reports reaches the panel (the window is closing) but its end, which frees
        the dock. The dock calls it when its window has accepted a close."""
        if not self.runner.running:
            return True
        self._listen(False)
        return self.runner.shutdown(timeout)
