"""Data and slices: which image and labels to train on, along which axis, which slices count
as labelled (painted, or marked whole as background), and which labelled slices are held out
(never trained on; the safeguard scores each model there)."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..layers import same_grid_kwargs
from . import notify
from .slices import PaintedSlices, touched_slices
from .state import DockState
from .widgets import LayerCombo, button, labelled_row, row

MARKED_KEY = "segpl_marked_slices"
#: labels.metadata key: {axis: [held-out slices]}, like the marked slices
HELDOUT_KEY = "segpl_heldout_slices"


class DataPanel(QGroupBox):
    """Image, labels, slicing axis and the list of labelled slices."""

    def __init__(self, state: DockState) -> None:
        super().__init__("Data")
        self.state, self.viewer = state, state.viewer
        self.painted = PaintedSlices()
        self._watched: Labels | None = None
        v = QVBoxLayout(self)
        self.image_combo = LayerCombo(self.viewer, Image)
        self.labels_combo = LayerCombo(self.viewer, Labels)
        self.new_labels_button = button("New labels", self.new_labels)
        self.new_labels_button.setToolTip("An empty Labels layer on the image's grid")
        self.axis_spin = QSpinBox()
        self.axis_spin.setRange(0, 2)
        self.axis_spin.setValue(state.axis)
        self.axis_spin.setToolTip("Array axis along which slices are labelled and trained")
        v.addLayout(labelled_row("image", self.image_combo))
        v.addLayout(labelled_row("labels", self.labels_combo, self.new_labels_button))
        v.addLayout(row(QLabel("slicing axis"), self.axis_spin, stretch=True))
        self.slice_summary = QLabel("no labelled slice")
        self.slice_summary.setWordWrap(True)
        self.slice_list = QListWidget()
        self.slice_list.setMaximumHeight(72)
        self.slice_list.itemClicked.connect(self._go_to_slice)
        v.addWidget(self.slice_summary)
        v.addWidget(self.slice_list)
        self.mark_button = button("Mark slice labelled", lambda: self.mark_current(True))
        self.mark_button.setToolTip("Count the current slice as labelled, background included")
        self.unmark_button: QPushButton = button("Unmark", lambda: self.mark_current(False))
        self.hold_button = button("Hold out", self.toggle_held_out)
        self.hold_button.setToolTip(
            "Keep the current labelled slice out of training: the safeguard scores the "
            "semi-supervised and the supervised model on it (held-out Dice)"
        )
        v.addLayout(row(self.mark_button, self.unmark_button, self.hold_button))
        self._pending: set[int] = set()
        self._paint_timer = QTimer(self)
        self._paint_timer.setSingleShot(True)
        self._paint_timer.setInterval(0)
        self._paint_timer.timeout.connect(self._check_pending)
        # undo and redo send no paint event, only set_data (as every slice change does): the
        # slices they changed are read from napari's history, the slice on screen is
        # re-checked after a pause (a change napari's history does not know of)
        self._history: tuple[int, int] | None = None
        self._recheck_timer = QTimer(self)
        self._recheck_timer.setSingleShot(True)
        self._recheck_timer.setInterval(250)
        self._recheck_timer.timeout.connect(self._recheck_current)

        self.image_combo.layer_changed.connect(self._image_chosen)
        self.labels_combo.layer_changed.connect(self._labels_chosen)
        self.axis_spin.valueChanged.connect(self._axis_chosen)
        state.axis_changed.connect(self._axis_from_state)
        self.viewer.dims.events.current_step.connect(self._update_hold_button)
        self._image_chosen(self.image_combo.layer())
        self._labels_chosen(self.labels_combo.layer())

    # ------------------------------------------------------------ choices
    def _image_chosen(self, image: Image | None) -> None:
        if image is not None and image.ndim != 3:
            self.state.status_text.emit(f"'{image.name}' is not 3D: SegPL needs a volume")
        self.state.image = image

    def _labels_chosen(self, labels: Labels | None) -> None:
        if self._watched is not None:
            self._watched.events.paint.disconnect(self._painted)
            self._watched.events.data.disconnect(self._data_replaced)
            self._watched.events.set_data.disconnect(self._schedule_recheck)
        self._watched, self._history = labels, None
        if labels is not None:
            labels.events.paint.connect(self._painted)
            labels.events.data.connect(self._data_replaced)
            labels.events.set_data.connect(self._schedule_recheck)
            axis = labels.metadata.get("segpl_labelled_axis")
            if axis in (0, 1, 2) and not self.state.training:
                self.axis_spin.setValue(int(axis))
        self.state.labels = labels
        self._data_replaced()

    def _axis_chosen(self, axis: int) -> None:
        self.state.axis = axis
        self._data_replaced()

    def _axis_from_state(self, axis: int) -> None:
        if self.axis_spin.value() != axis:
            self.axis_spin.setValue(axis)  # a loaded model's axis

    # ------------------------------------------------------------ slices
    def _data_replaced(self, *_: object) -> None:
        labels = self.state.labels
        self.painted.rescan(None if labels is None else labels.data, self.state.axis)
        self.refresh_slices()

    def _painted(self, event: object) -> None:
        """Only the slices the stroke touched are re-checked (the paint event names them).
        napari may send the event before it writes the values: they are read a moment later."""
        labels = self.state.labels
        if labels is None or labels.ndim != 3:
            return
        axis = self.state.axis
        self._pending |= touched_slices(event.value, axis, labels.data.shape[axis])
        self._paint_timer.start()

    def _check_pending(self) -> None:
        labels, pending, self._pending = self.state.labels, self._pending, set()
        if labels is not None and self.painted.check(labels.data, self.state.axis, pending):
            self.refresh_slices()

    def _schedule_recheck(self, *_: object) -> None:
        moved = self._history_moved()
        if moved:
            self._pending |= moved
            self._paint_timer.start()
        self._recheck_timer.start()

    def _history_moved(self) -> set[int]:
        """The slices of the history items on top of napari's undo and redo stacks, when the
        stacks changed since the last look (an undo, a redo, or a stroke already checked);
        none on a plain slice change. Private napari attributes: none when they are gone."""
        labels = self.state.labels
        undo = getattr(labels, "_undo_history", None)
        redo = getattr(labels, "_redo_history", None)
        if labels is None or labels.ndim != 3 or undo is None or redo is None:
            return set()
        key = (len(undo), len(redo))
        if key == self._history:
            return set()
        self._history = key
        atoms = [*(undo[-1] if undo else ()), *(redo[-1] if redo else ())]
        axis = self.state.axis
        return touched_slices(atoms, axis, labels.data.shape[axis])

    def _recheck_current(self) -> None:
        labels, s = self.state.labels, self.state.current_slice()
        if (
            labels is not None
            and s is not None
            and self.painted.check(labels.data, self.state.axis, [s])
        ):
            self.refresh_slices()

    def marked_slices(self) -> set[int]:
        labels, axis = self.state.labels, self.state.axis
        if labels is None:
            return set()
        slices = set(labels.metadata.get(MARKED_KEY, {}).get(axis, []))
        if labels.metadata.get("segpl_labelled_axis") == axis:
            slices |= set(labels.metadata.get("segpl_labelled_slices") or [])
        return slices

    def held_out(self) -> list[int]:
        """Labelled slices the user held out along the current axis (never trained on)."""
        labels = self.state.labels
        if labels is None:
            return []
        held = set(labels.metadata.get(HELDOUT_KEY, {}).get(self.state.axis, []))
        return sorted(held & (self.painted.slices | self.marked_slices()))

    def labelled(self) -> list[int]:
        """The slices to train on: painted slices plus slices marked labelled (whole,
        background included), less the held-out ones."""
        return sorted((self.painted.slices | self.marked_slices()) - set(self.held_out()))

    def refresh_slices(self) -> None:
        self.slice_list.clear()
        marked, painted, held = self.marked_slices(), self.painted.slices, set(self.held_out())
        for s in sorted(painted | marked):
            kind = "painted" if s in painted else "marked (all background)"
            kind += ", held out" if s in held else ""
            item = QListWidgetItem(f"slice {s}  ·  {kind}")
            item.setData(Qt.UserRole, s)
            self.slice_list.addItem(item)
        n = len(painted | marked)
        aside = f", {len(held)} held out" if held else ""
        self.slice_summary.setText(
            f"{n} labelled slice{'s' if n != 1 else ''} along axis {self.state.axis}{aside}"
            if n
            else "no labelled slice yet: paint one, or mark the current slice"
        )
        self._update_hold_button()
        self.state.slices_changed.emit()

    def _update_hold_button(self, *_: object) -> None:
        s = self.state.current_slice()
        self.hold_button.setText("Train on it" if s in self.held_out() else "Hold out")

    def toggle_held_out(self) -> None:
        """Hold the current labelled slice out of training, or train on it again."""
        labels, axis, s = self.state.labels, self.state.axis, self.state.current_slice()
        if labels is None or s is None:
            notify.info("Choose or create a labels layer first.")
            return
        held = dict(labels.metadata.get(HELDOUT_KEY, {}))
        slices = set(held.get(axis, []))
        if s in slices:
            slices.discard(s)
        elif s in self.painted.slices | self.marked_slices():
            slices.add(s)
        else:
            notify.info(f"Slice {s} is not labelled: paint it before holding it out.")
            return
        held[axis] = sorted(slices)
        labels.metadata[HELDOUT_KEY] = held
        self.refresh_slices()

    def _go_to_slice(self, item: QListWidgetItem) -> None:
        self.state.go_to_slice(int(item.data(Qt.UserRole)))

    def mark_current(self, labelled: bool) -> None:
        labels, axis, s = self.state.labels, self.state.axis, self.state.current_slice()
        if labels is None or s is None:
            notify.info("Choose or create a labels layer first.")
            return
        marked = dict(labels.metadata.get(MARKED_KEY, {}))
        slices = set(marked.get(axis, []))
        if labelled:
            slices.add(s)
        else:
            slices.discard(s)
            if labels.metadata.get("segpl_labelled_axis") == axis:
                listed = set(labels.metadata.get("segpl_labelled_slices") or []) - {s}
                labels.metadata["segpl_labelled_slices"] = sorted(listed)
        marked[axis] = sorted(slices)
        labels.metadata[MARKED_KEY] = marked
        self.refresh_slices()

    def new_labels(self) -> Labels | None:
        image = self.state.image
        if image is None:
            notify.info("Open an image first.")
            return None
        data = np.zeros(image.data.shape, np.uint8)
        layer = self.viewer.add_labels(data, **same_grid_kwargs(image, f"{image.name} labels"))
        self.labels_combo.set_layer(layer)
        return layer
