"""Small widgets and helpers the panels share: a layer chooser that keeps its choice, buttons,
rows, status labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QWidget

from .params import let_shrink

if TYPE_CHECKING:
    import napari


class LayerCombo(QComboBox):
    """The viewer's layers of one type, kept up to date as layers come and go.

    ``layer_changed`` is emitted only when the chosen layer itself changes (the user picks
    another, or the chosen one is removed), never because another layer was added, removed or
    moved: whatever listens (the view, the slice list) is left alone by unrelated edits."""

    layer_changed = Signal(object)

    def __init__(self, viewer: napari.Viewer, kind: type, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.kind = viewer, kind
        self._layers: list = []
        self._current = None
        let_shrink(self, characters=4)
        self.currentIndexChanged.connect(self._index_changed)
        for event in (
            viewer.layers.events.inserted,
            viewer.layers.events.removed,
            viewer.layers.events.moved,
        ):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: object) -> None:
        layers = [layer for layer in self.viewer.layers if isinstance(layer, self.kind)]
        keep = next((i for i, layer in enumerate(layers) if layer is self._current), None)
        self.blockSignals(True)
        self.clear()
        self._layers = layers
        self.addItems([layer.name for layer in layers])
        self.setCurrentIndex(keep if keep is not None else (0 if layers else -1))
        self.blockSignals(False)
        self.setToolTip(self.currentText())  # the whole name, should it be clipped
        self._index_changed()

    def _index_changed(self, *_: object) -> None:
        self.setToolTip(self.currentText())
        layer = self.layer()
        if layer is not self._current:
            self._current = layer
            self.layer_changed.emit(layer)

    def layer(self):
        i = self.currentIndex()
        if 0 <= i < len(self._layers) and self._layers[i] in self.viewer.layers:
            return self._layers[i]
        return None

    def set_layer(self, layer) -> None:
        for i, candidate in enumerate(self._layers):
            if candidate is layer:
                self.setCurrentIndex(i)
                return


def button(text: str, slot) -> QPushButton:
    widget = QPushButton(text)
    widget.clicked.connect(slot)
    return widget


def row(*widgets: QWidget, stretch: bool = False) -> QHBoxLayout:
    layout = QHBoxLayout()
    for widget in widgets:
        layout.addWidget(widget)
    if stretch:
        layout.addStretch(1)
    return layout


def labelled_row(text: str, widget: QWidget, *more: QWidget) -> QHBoxLayout:
    """A caption, a widget that takes the room, then any buttons."""
    layout = QHBoxLayout()
    layout.addWidget(QLabel(text))
    layout.addWidget(widget, 1)
    for extra in more:
        layout.addWidget(extra)
    return layout


class ReservedLabel(QLabel):
    """A word-wrapped label never shorter than ``lines`` lines of its own text, as the current
    font and style lay them out (napari's stylesheet, applied once the label is in the window,
    changes both), so a text of up to that many lines re-lays out nothing around it."""

    def __init__(self, lines: int) -> None:
        super().__init__("")
        self.setWordWrap(True)
        self._lines = lines
        self._reserve()

    def _reserve(self) -> None:
        text = self.text()
        self.setText("\n".join("X" * self._lines))
        self.setMinimumHeight(self.sizeHint().height())
        self.setText(text)

    def changeEvent(self, event: QEvent) -> None:  # noqa: N802 (Qt API)
        super().changeEvent(event)
        if event.type() in (QEvent.FontChange, QEvent.StyleChange):
            self._reserve()


def status_label(lines: int = 2) -> QLabel:
    """A label with room for ``lines`` lines from the start, so the usual status text never
    re-lays out the plots or the buttons around it while training. A longer text (a collapse
    warning, an error) makes it taller rather than being cut."""
    return ReservedLabel(lines)


def format_seconds(seconds: float) -> str:
    """Short enough for the progress bar at the dock's minimum width: "6 h 15 min" for long
    runs rather than "375 min 36 s"."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"
