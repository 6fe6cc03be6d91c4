"""The SegPL dock: choose layers and slices, train in the background, watch, predict, export.

The dock is thin: the engine does the work (through ``session.py`` in napari thread workers) and
the dock only turns events into layer updates and plots. The user's labels layer is read by
copy for training and prediction and is written only by Accept.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent, QObject, Qt, QThreadPool, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..engine import (
    METHODS,
    CollapseWarning,
    FinishedEvent,
    PreviewEvent,
    StepEvent,
    TrainedModel,
    labelled_slices,
)
from ..engine.config import ConfigError, TrainConfig, one_thin_slice_note
from ..layers import GRID_KEY, export_layer, radiological_view, same_grid_kwargs
from .params import ParameterForm, let_shrink
from .plots import LossPlot, ThresholdPlot
from .session import RunControl, Started, predict, training_events, warm_up_torch

if TYPE_CHECKING:
    import napari

MARKED_KEY = "segpl_marked_slices"
PSEUDO, PREDICTION, PROBABILITY, UNCERTAINTY = (
    "pseudo labels",
    "prediction",
    "probability",
    "uncertainty",
)


class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers of one type, kept up to date."""

    def __init__(self, viewer: napari.Viewer, kind: type, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.kind = viewer, kind
        let_shrink(self, characters=4)
        self.currentTextChanged.connect(self.setToolTip)  # the whole name, should it be clipped
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.moved.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: object) -> None:
        current = self.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, self.kind)]
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)
        self.setToolTip(self.currentText())
        self.currentIndexChanged.emit(self.currentIndex())

    def layer(self):
        name = self.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None


def _button(text: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(slot)
    return button


def _row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


def _status_label() -> QLabel:
    """A word-wrapped label with room for two lines from the start, so the usual status text
    never re-lays out the plots below it while training. A longer text (a collapse warning, an
    error) makes it taller rather than being cut; that only moves the plots, whose size (and so
    their cached drawing) stays the same."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setMinimumHeight(2 * label.fontMetrics().lineSpacing() + 4)
    return label


def _format_seconds(seconds: float) -> str:
    """Short enough for the progress bar at the dock's minimum width: "6 h 15 min" for long
    runs rather than "375 min 36 s"."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


#: Warnings of a run kept in the dock's warning label (all of them go to notifications too).
MAX_WARNINGS_SHOWN = 4


class SegPLDock(QWidget):
    """Dock widget for training SegPL models on a few labelled slices."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.model: TrainedModel | None = None
        self._worker = None
        self._predict_worker = None
        self._predict_context: tuple[Image, bool] | None = None
        self._predict_control: RunControl | None = None
        self._warnings: list[str] = []
        self._finish_text = ""
        self._control: RunControl | None = None
        self._axis_of_run = 2
        self._labelled_of_run: list[int] = []
        self._step_times: list[float] = []
        self._watching_window = False

        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self._data_box())
        self.params = ParameterForm()
        method_box = QGroupBox("Method")
        QVBoxLayout(method_box).addWidget(self.params)
        layout.addWidget(method_box)
        layout.addWidget(self._train_box())
        layout.addWidget(self._predict_box())
        layout.addStretch(1)
        # Every row can shrink to well below the minimum width (combo boxes clip, texts wrap),
        # so the content always fits across and only ever scrolls down.
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.scroll_area.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll_area)
        self.setMinimumWidth(360)

        self._slice_timer = QTimer(self)
        self._slice_timer.setSingleShot(True)
        self._slice_timer.setInterval(250)
        self._slice_timer.timeout.connect(self.refresh_slices)
        self.labels_combo.currentIndexChanged.connect(self._labels_changed)
        self.image_combo.currentIndexChanged.connect(self._image_changed)
        self._labels_changed()
        self._image_changed()
        self._update_buttons()
        self.warmed_up = threading.Event()
        threading.Thread(target=warm_up_torch, args=(self.warmed_up,), daemon=True).start()

    # ----------------------------------------------------------------- layout
    def _data_box(self) -> QGroupBox:
        box = QGroupBox("Data")
        v = QVBoxLayout(box)
        self.image_combo = LayerCombo(self.viewer, Image)
        self.labels_combo = LayerCombo(self.viewer, Labels)
        self.new_labels_button = QPushButton("New labels")
        self.new_labels_button.setToolTip("An empty Labels layer on the image's grid")
        self.new_labels_button.clicked.connect(self.new_labels)
        self.axis_spin = QSpinBox()
        self.axis_spin.setRange(0, 2)
        self.axis_spin.setValue(2)
        self.axis_spin.setToolTip("Array axis along which slices are labelled and trained")
        self.axis_spin.valueChanged.connect(self._axis_changed)
        for label, widget in (("image", self.image_combo), ("labels", self.labels_combo)):
            row = QHBoxLayout()
            row.addWidget(QLabel(label))
            row.addWidget(widget, 1)
            if widget is self.labels_combo:
                row.addWidget(self.new_labels_button)
            v.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("slicing axis"))
        row.addWidget(self.axis_spin)
        row.addStretch(1)
        v.addLayout(row)
        self.slice_list = QListWidget()
        self.slice_list.setMaximumHeight(72)
        self.slice_list.itemClicked.connect(self._go_to_slice)
        self.slice_summary = QLabel("no labelled slice")
        self.slice_summary.setWordWrap(True)
        v.addWidget(self.slice_summary)
        v.addWidget(self.slice_list)
        self.mark_button = _button("Mark slice labelled", lambda: self.mark_current(True))
        self.mark_button.setToolTip("Count the current slice as labelled, background included")
        self.unmark_button = _button("Unmark", lambda: self.mark_current(False))
        v.addLayout(_row(self.mark_button, self.unmark_button))
        return box

    def _train_box(self) -> QGroupBox:
        box = QGroupBox("Training")
        v = QVBoxLayout(box)
        self.train_button = _button("Train", self.start_training)
        self.stop_button = _button("Stop", self.stop_training)
        v.addLayout(_row(self.train_button, self.stop_button))
        self.progress = QProgressBar()
        self.progress.setFormat("idle")
        self.progress.setTextVisible(True)
        v.addWidget(self.progress)
        self.status = _status_label()
        self.warning_label = _status_label()
        self.warning_label.setStyleSheet("color: #e8a33d")
        v.addWidget(self.status)
        v.addWidget(self.warning_label)
        theme = getattr(self.viewer, "theme", "dark")
        self.loss_plot = LossPlot(theme)
        self.threshold_plot = ThresholdPlot(theme)
        self.plots = QTabWidget()
        self.plots.addTab(self.loss_plot, "Losses")
        self.plots.addTab(self.threshold_plot, "Threshold T")
        v.addWidget(self.plots)
        return box

    def _predict_box(self) -> QGroupBox:
        box = QGroupBox("Predict and export")
        v = QVBoxLayout(box)
        self.mc_spin = QSpinBox()
        self.mc_spin.setRange(1, 100)
        self.mc_spin.setValue(8)
        self.mc_spin.setToolTip("Thresholds drawn for the Monte-Carlo uncertainty (SegPL-VI)")
        row = QHBoxLayout()
        row.addWidget(QLabel("MC samples"))
        row.addWidget(self.mc_spin)
        row.addStretch(1)
        v.addLayout(row)
        self.predict_button = _button("Predict", self.start_prediction)
        self.accept_button = _button("Accept slice", self.accept_current_slice)
        self.accept_button.setToolTip("Copy the prediction on the current slice into your labels")
        v.addLayout(_row(self.predict_button, self.accept_button))
        # The layer list gets its own row, so a layer name has room to show.
        self.export_combo = LayerCombo(self.viewer, Labels)
        self.export_button = _button("Export…", self._export_clicked)
        row = QHBoxLayout()
        row.addWidget(self.export_combo, 1)
        row.addWidget(self.export_button)
        v.addLayout(row)
        self.save_button = _button("Save model…", self._save_clicked)
        self.load_button = _button("Load model…", self._load_clicked)
        v.addLayout(_row(self.save_button, self.load_button))
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        v.addWidget(self.model_label)
        return box

    # ------------------------------------------------------------ data state
    @property
    def axis(self) -> int:
        return self.axis_spin.value()

    def _image_changed(self, *_: object) -> None:
        image = self.image_combo.layer()
        if image is not None and image.ndim != 3:
            self.status.setText(f"'{image.name}' is not 3D: SegPL needs a volume")
        self._show_slices()

    def _labels_changed(self, *_: object) -> None:
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                for event in (layer.events.paint, layer.events.data, layer.events.set_data):
                    try:
                        event.disconnect(self._schedule_slices)
                    except (TypeError, ValueError, RuntimeError):
                        pass
        labels = self.labels_combo.layer()
        if labels is not None:
            labels.events.paint.connect(self._schedule_slices)
            labels.events.data.connect(self._schedule_slices)
            axis = labels.metadata.get("segpl_labelled_axis")
            if axis in (0, 1, 2) and self._worker is None:
                self.axis_spin.setValue(int(axis))
        self._axis_changed()

    def _schedule_slices(self, *_: object) -> None:
        self._slice_timer.start()

    def _axis_changed(self, *_: object) -> None:
        self._show_slices()
        self.refresh_slices()

    def _show_slices(self) -> None:
        """The viewer slices along the slicing axis, which is what gets painted and marked;
        a volume that knows its anatomy is shown as a radiologist reads it (axial: anterior
        up, the patient's right on the screen's left), not lying on its side."""
        if self.viewer.dims.ndim != 3:
            return
        image = self.image_combo.layer()
        grid = getattr(image, "metadata", {}).get(GRID_KEY) if image is not None else None
        view = None
        if grid and tuple(grid.get("shape", ())) == tuple(image.data.shape):
            view = radiological_view(grid["affine"], self.axis)
        if view is not None:
            self.viewer.dims.order = view[0]
            scene = getattr(self.viewer, "scene", self.viewer)  # napari < 0.9: viewer.camera
            scene.camera.orientation2d = view[1]
            self.viewer.reset_view()
            return
        order = list(self.viewer.dims.order)
        if order[0] != self.axis:
            order.remove(self.axis)
            self.viewer.dims.order = (self.axis, *order)

    def marked_slices(self) -> set[int]:
        labels = self.labels_combo.layer()
        if labels is None:
            return set()
        marked = labels.metadata.get(MARKED_KEY, {})
        slices = set(marked.get(self.axis, []))
        if labels.metadata.get("segpl_labelled_axis") == self.axis:
            slices |= set(labels.metadata.get("segpl_labelled_slices") or [])
        return slices

    def painted_slices(self) -> set[int]:
        """Slices of the labels layer holding any painted voxel along the slicing axis."""
        labels = self.labels_combo.layer()
        if labels is None or labels.ndim != 3:
            return set()
        return set(labelled_slices(np.asarray(labels.data), self.axis))

    def labelled(self) -> list[int]:
        """Painted slices plus slices marked labelled (whole, background included)."""
        return sorted(self.painted_slices() | self.marked_slices())

    def refresh_slices(self) -> None:
        self.slice_list.clear()
        marked, painted = self.marked_slices(), self.painted_slices()
        for s in sorted(painted | marked):
            kind = "painted" if s in painted else "marked (all background)"
            item = QListWidgetItem(f"slice {s}  ·  {kind}")
            item.setData(Qt.UserRole, s)
            self.slice_list.addItem(item)
        n = len(painted | marked)
        self.slice_summary.setText(
            f"{n} labelled slice{'s' if n != 1 else ''} along axis {self.axis}"
            if n
            else "no labelled slice yet: paint one, or mark the current slice"
        )

    def _go_to_slice(self, item: QListWidgetItem) -> None:
        self.viewer.dims.set_current_step(self.axis, int(item.data(Qt.UserRole)))

    def current_slice(self) -> int:
        return int(self.viewer.dims.current_step[self.axis])

    def mark_current(self, labelled: bool) -> None:
        labels = self.labels_combo.layer()
        if labels is None:
            show_info("Choose or create a labels layer first.")
            return
        marked = dict(labels.metadata.get(MARKED_KEY, {}))
        slices = set(marked.get(self.axis, []))
        s = self.current_slice()
        if labelled:
            slices.add(s)
        else:
            slices.discard(s)
            if labels.metadata.get("segpl_labelled_axis") == self.axis:
                listed = set(labels.metadata.get("segpl_labelled_slices") or []) - {s}
                labels.metadata["segpl_labelled_slices"] = sorted(listed)
        marked[self.axis] = sorted(slices)
        labels.metadata[MARKED_KEY] = marked
        self.refresh_slices()

    def new_labels(self) -> Labels | None:
        image = self.image_combo.layer()
        if image is None:
            show_info("Open an image first.")
            return None
        data = np.zeros(image.data.shape, np.uint8)
        layer = self.viewer.add_labels(data, **same_grid_kwargs(image, f"{image.name} labels"))
        self.labels_combo.setCurrentText(layer.name)
        return layer

    # -------------------------------------------------------------- training
    @property
    def is_training(self) -> bool:
        return self._worker is not None

    def _update_buttons(self) -> None:
        busy = self._worker is not None or self._predict_worker is not None
        self.train_button.setEnabled(not busy)
        self.stop_button.setEnabled(self._worker is not None)
        self.predict_button.setEnabled(self.model is not None and not busy)
        self.save_button.setEnabled(self.model is not None and self._worker is None)
        has_prediction = PREDICTION in self.viewer.layers
        self.accept_button.setEnabled(has_prediction)

    def start_training(self) -> bool:
        """Start a run in a worker thread; False (with a message) if it cannot start."""
        if self._worker is not None or self._predict_worker is not None:
            show_info("SegPL is already running: press Stop (or wait) before a new run.")
            return False
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None:
            show_error("Choose an image layer and a labels layer (or press New labels).")
            return False
        if image.data.shape != labels.data.shape:
            show_error(
                f"Labels shape {labels.data.shape} does not match image shape "
                f"{image.data.shape}: use New labels to make one on the image's grid."
            )
            return False
        try:
            config = self.params.config(self.axis, image.data)
        except ConfigError as exc:
            show_error(f"SegPL: {exc}")
            return False
        self._axis_of_run = self.axis
        self._labelled_of_run = self.labelled()
        self._ensure_layer(PSEUDO, image)
        self._reset_views(config)
        learns = METHODS[config.method].learns_threshold
        self.plots.setTabEnabled(1, learns)
        self.plots.setCurrentIndex(1 if learns else 0)
        self._step_times = []
        self._control = RunControl.new(self._preview_slice)
        self._worker = create_worker(
            training_events,
            np.asarray(image.data),
            np.array(labels.data, copy=True),  # never the user's own array
            config,
            self._labelled_of_run or None,
            self._control,
            _start_thread=False,
            _ignore_errors=True,  # reported by _on_error as a notification instead
        )
        self._worker.yielded.connect(self._on_event)
        self._worker.errored.connect(self._on_error)
        self._worker.finished.connect(self._on_training_finished)
        self.progress.setValue(0)
        self.progress.setFormat("preparing data…")
        self.status.setText("")
        self.warning_label.setText("")
        self._warnings = []
        self._watch_window()
        self._worker.start()
        self._update_buttons()
        return True

    def stop_training(self) -> None:
        """Stop after the current step; the model trained so far is kept."""
        if self._control is not None:
            self._control.stop.set()
            self.progress.setFormat("stopping after this step…")

    def _preview_slice(self) -> int | None:
        try:
            return self.current_slice() if self.viewer.dims.ndim == 3 else None
        except Exception:
            return None

    def _reset_views(self, config: TrainConfig) -> None:
        """Progress bar and plots sized for ``config.steps`` (the form's, then the trainer's)."""
        self.progress.setRange(0, config.steps)
        self.loss_plot.reset(config.steps)
        self.threshold_plot.reset(config.prior_mu, config.prior_sigma, config.steps)

    def _on_event(self, event: object) -> None:
        if isinstance(event, Started):
            self.model = event.model
            config = event.model.config
            note = one_thin_slice_note(config, event.model.method.uses_unlabelled)
            recipe = f", {note}" if event.one_thin_slice else ""
            self.status.setText(
                f"{len(event.labelled)} labelled slice{'s' if len(event.labelled) != 1 else ''}, "
                f"{event.unlabelled} unlabelled, "
                f"{event.num_classes} class(es), {config.dims}D network{recipe}, "
                f"{config.steps} steps, on {event.device}"
            )
            if config.steps != self.progress.maximum():  # the trainer chose more steps
                self._reset_views(config)
        elif isinstance(event, StepEvent):
            self._on_step(event)
        elif isinstance(event, PreviewEvent):
            self._on_preview(event)
        elif isinstance(event, CollapseWarning):
            show_warning(f"SegPL: {event.message}")
            # every warning of the run stays in view (a run can warn of several classes, and
            # the gate's "never used" came just before the finished model's warning)
            self._warnings.append(f"⚠ {event.message}")
            shown = self._warnings[-MAX_WARNINGS_SHOWN:]
            hidden = len(self._warnings) - len(shown)
            more = [f"({hidden} earlier warning(s) in the notifications)"] if hidden else []
            self.warning_label.setText("\n".join(more + shown))
        elif isinstance(event, FinishedEvent):
            state = "stopped" if event.stopped else "done"
            self._finish_text = f"{state}: {event.steps_done} steps"
            self.progress.setFormat(self._finish_text)
            self.loss_plot.refresh(force=True)
            self.threshold_plot.refresh(force=True)
            self._set_model_label()

    def _on_step(self, event: StepEvent) -> None:
        self._step_times.append(event.seconds_per_step)
        recent = self._step_times[-10:]
        per_step = sum(recent) / len(recent)
        left = per_step * (event.total - event.step)
        self.progress.setValue(event.step)
        self.progress.setFormat(
            f"{event.step}/{event.total} · {per_step:.2f} s/step · {_format_seconds(left)} left"
        )
        self.loss_plot.add(event.step, event.losses)
        self.loss_plot.refresh()
        if event.mu is not None:
            self.threshold_plot.add(event.step, event.mu, event.sigma)
            self.threshold_plot.refresh()

    def _on_preview(self, event: PreviewEvent) -> None:
        if PSEUDO not in self.viewer.layers:
            return  # the user deleted it: fine, training goes on
        layer = self.viewer.layers[PSEUDO]
        view = np.moveaxis(layer.data, self._axis_of_run, 0)
        view[event.slice_index] = event.labels
        layer.refresh()

    def _on_error(self, exc: BaseException) -> None:
        show_error(f"SegPL training failed: {exc}")
        self.progress.setFormat("failed")
        self.status.setText(str(exc))

    def _on_training_finished(self) -> None:
        self._worker = None
        self._control = None
        self._update_buttons()
        if self.model is not None and self.model.steps_done > 0:
            self.start_prediction(pseudo_only=True)

    # ------------------------------------------------------------ prediction
    def _ensure_layer(self, name: str, like, kind: str = "labels", **kwargs):
        """A result layer on ``like``'s grid, made or reset to zeros (never a user layer)."""
        shape = like.data.shape
        if name in self.viewer.layers and self.viewer.layers[name].data.shape == shape:
            layer = self.viewer.layers[name]
            if kind == "labels":
                layer.data[...] = 0
                layer.refresh()
            return layer
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        geometry = same_grid_kwargs(like, name)
        if kind == "labels":
            return self.viewer.add_labels(np.zeros(shape, np.uint8), **geometry, **kwargs)
        return self.viewer.add_image(np.zeros(shape, np.float32), **geometry, **kwargs)

    def start_prediction(self, pseudo_only: bool = False) -> bool:
        """Predict the whole image layer in a worker. ``pseudo_only`` (after training) fills
        the pseudo-label layer on every unlabelled slice instead of adding result layers."""
        if self.model is None:
            show_info("Train or load a model first.")
            return False
        if self._predict_worker is not None or self._worker is not None:
            show_info("SegPL is busy: wait for the current run to finish.")
            return False
        image = self.image_combo.layer()
        if image is None or image.ndim != 3:
            show_error("Choose a 3D image layer to predict.")
            return False
        axis = self._axis_of_run if pseudo_only else self.axis
        mc = 0 if pseudo_only else self.mc_spin.value()
        device = self.params.device.value
        self._predict_control = RunControl.new()
        self._predict_worker = create_worker(
            predict,
            self.model,
            np.asarray(image.data),
            axis,
            mc,
            device,
            self._predict_control,
            _start_thread=False,
            _ignore_errors=True,
        )
        # Bound methods, not lambdas: Qt drops them by itself if the dock is deleted first.
        self._predict_context = (image, pseudo_only)
        self._predict_worker.returned.connect(self._on_prediction_returned)
        self._predict_worker.errored.connect(self._on_prediction_error)
        self._predict_worker.finished.connect(self._on_prediction_finished)
        self.progress.setFormat(
            "filling pseudo labels…" if pseudo_only else "predicting the volume…"
        )
        self._predict_worker.start()
        self._update_buttons()
        return True

    def _on_prediction_returned(self, pred) -> None:
        image, pseudo_only = self._predict_context
        self._on_prediction(pred, image, pseudo_only)

    def _on_prediction_error(self, exc: BaseException) -> None:
        show_error(f"SegPL prediction failed: {exc}")
        self.progress.setFormat("prediction failed")

    def _on_prediction(self, pred, image, pseudo_only: bool) -> None:
        if pseudo_only:
            if PSEUDO in self.viewer.layers and self.viewer.layers[PSEUDO].data.shape == (
                pred.labels.shape
            ):
                layer = self.viewer.layers[PSEUDO]
                data = pred.labels.copy()
                np.moveaxis(data, self._axis_of_run, 0)[self._labelled_of_run] = 0
                layer.data = data
            self.progress.setFormat(f"{self._finish_text} · pseudo labels filled")
            return
        layer = self._ensure_layer(PREDICTION, image)
        layer.data = pred.labels
        fg = pred.probabilities.max(axis=0)
        prob = self._ensure_layer(
            PROBABILITY, image, "image", colormap="magma", opacity=0.5, blending="additive"
        )
        prob.data = fg
        prob.contrast_limits = (0.0, 1.0)
        if pred.mc_std is not None:
            unc = self._ensure_layer(
                UNCERTAINTY, image, "image", colormap="inferno", opacity=0.8, blending="additive"
            )
            unc.data = pred.mc_std.max(axis=0)
            unc.contrast_limits = (0.0, 0.5)
        self.export_combo.setCurrentText(PREDICTION)
        self.progress.setFormat("prediction ready")

    def _on_prediction_finished(self) -> None:
        self._predict_worker = None
        self._predict_control = None
        self._update_buttons()

    def accept_current_slice(self) -> bool:
        """Copy the prediction on the current slice into the user's labels (undoable)."""
        labels = self.labels_combo.layer()
        if labels is None or PREDICTION not in self.viewer.layers:
            show_info("Predict first, and choose the labels layer to copy into.")
            return False
        pred = self.viewer.layers[PREDICTION].data
        if pred.shape != labels.data.shape:
            show_error("The prediction and the labels layer are on different grids.")
            return False
        s, axis = self.current_slice(), self.axis
        index = [slice(None)] * 3
        index[axis] = s
        new = np.asarray(pred[tuple(index)])
        old = np.asarray(labels.data[tuple(index)])
        changed = np.nonzero(new != old)
        coords = list(changed)
        coords.insert(axis, np.full(len(changed[0]), s))
        if len(changed[0]):
            labels.data_setitem(tuple(coords), new[changed])
        self.refresh_slices()
        return True

    # ------------------------------------------------------- files and models
    def _confirm_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(
            self, "Overwrite?", f"{path} exists. Replace it?", QMessageBox.Yes | QMessageBox.No
        )
        return answer == QMessageBox.Yes

    def export(self, path: str | Path, layer=None) -> Path | None:
        """Export a labels layer to NIfTI on its source grid, asking before overwriting."""
        layer = layer or self.export_combo.layer()
        if layer is None:
            show_info("Nothing to export: predict first or choose a labels layer.")
            return None
        path = Path(path)
        if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
            path = path.with_name(path.name + ".nii.gz")
        overwrite = False
        if path.exists():
            if not self._confirm_overwrite(path):
                return None
            overwrite = True
        try:
            out = export_layer(layer, path, overwrite=overwrite)
        except (OSError, ValueError) as exc:
            show_error(f"Export failed: {exc}")
            return None
        show_info(f"Saved {layer.name} to {out}")
        return out

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export labels", "", "NIfTI (*.nii.gz *.nii)",
            options=QFileDialog.DontConfirmOverwrite,
        )  # fmt: skip
        if path:
            self.export(path)

    def save_model(self, path: str | Path) -> Path | None:
        if self.model is None:
            show_info("No model to save yet.")
            return None
        try:
            out = self.model.save(path)
        except OSError as exc:
            show_error(f"Could not save the model: {exc}")
            return None
        show_info(f"Model saved to {out}")
        return out

    def load_model(self, path: str | Path) -> TrainedModel | None:
        if self._worker is not None:
            show_info("Stop training before loading another model.")
            return None
        try:
            model = TrainedModel.load(path)
        except ValueError as exc:
            show_error(str(exc))
            return None
        self.model = model
        self.axis_spin.setValue(model.config.axis)
        self._axis_of_run = model.config.axis
        self._set_model_label()
        self._update_buttons()
        return model

    def _set_model_label(self) -> None:
        m = self.model
        if m is None:
            self.model_label.setText("no model")
            return
        self.model_label.setText(
            f"model: {m.config.method}, {m.config.dims}D, axis {m.config.axis}, "
            f"{m.num_classes} class(es), {m.steps_done} steps"
        )

    def _save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", "", "SegPL model (*.pt)")
        if path:
            self.save_model(path if path.endswith(".pt") else path + ".pt")

    def _load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "SegPL model (*.pt)")
        if path:
            self.load_model(path)

    # --------------------------------------------------------------- closing
    def _watch_window(self) -> None:
        """Catch the main window's close to stop training first. No reference to the window
        is kept: holding it would keep napari's whole QtViewer alive after the viewer closes."""
        window = self.window()
        if window is not None and window is not self and not self._watching_window:
            window.installEventFilter(self)
            self._watching_window = True

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Close and obj.isWidgetType() and obj.isWindow():
            self.shutdown()
        return False

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop any training or prediction and wait for its thread, so closing never hangs or
        crashes later (a prediction still running when Qt is torn down aborts the process).

        Returns True when the workers ended within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        ok = True
        if self._worker is not None and self._control is not None:
            slots = [
                ("yielded", self._on_event),
                ("errored", self._on_error),
                ("finished", self._on_training_finished),
            ]
            stopped = self._stop_worker(self._worker, self._control, slots, deadline, "training")
            if stopped:
                self._worker = self._control = None
            ok = ok and stopped
        if self._predict_worker is not None and self._predict_control is not None:
            slots = [
                ("returned", self._on_prediction_returned),
                ("errored", self._on_prediction_error),
                ("finished", self._on_prediction_finished),
            ]
            worker, control = self._predict_worker, self._predict_control
            stopped = self._stop_worker(worker, control, slots, deadline, "prediction")
            if stopped:
                self._predict_worker = self._predict_control = None
            ok = ok and stopped
        if ok:  # "done" is set just before the worker's last signals: let them go out too
            QThreadPool.globalInstance().waitForDone(
                max(0, int(1000 * (deadline - time.monotonic())))
            )
        return ok

    @staticmethod
    def _stop_worker(
        worker: object, control: RunControl, slots: list, deadline: float, what: str
    ) -> bool:
        """Disconnect the dock from a worker, ask it to stop and wait until it has."""
        for name, slot in slots:
            try:
                getattr(worker, name).disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        control.stop.set()
        while not control.done.wait(0.05):
            if time.monotonic() > deadline:
                show_warning(f"SegPL: the {what} thread did not stop in time.")
                return False
        return True

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.shutdown()
        super().closeEvent(event)
