"""Results, export and models: Predict, copy a predicted slice into the labels, export a labels
layer on its source grid, save and load models, and which threshold the prediction used.

Every prediction gets an uncertainty layer: TTA by default (below), else the method's own kind (the
ensemble: its members' spread; any other, SegPL-VI too: the entropy of p; see
``engine.uncertainty``), named for what it shows, so that a map is never read as another.
The "uncertainty" combo redraws it as another kind the last prediction holds (SegPL-VI's
MC std; "TTA std of p" when the prediction was made with test-time augmentation). The dock
predicts TTA by default (*TTA samples* 8) and shows it first: it found wrong voxels better than
the entropy of p on most runs where both were measured (benchmarks/RESULTS.md (x), (ff)), at the
cost of 7 more forward passes per slice; set the box to off for a quick prediction. After a
run with the safeguard, its two models' TTA maps pool into "TTA std with twin" (8 passes more),
shown first whichever model was kept (RESULTS.md (M2)).
*Only parts touching the paint* (on by default; ``DockState.painted_parts``) makes Predict, Mask
now and the safeguard keep only the predicted parts touching the run's trained-on paint, as the
CLI's export does (``engine.components``), so the mask on screen is the one an export writes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from napari.layers import Labels
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QLabel,
    QMessageBox,
    QSpinBox,
    QVBoxLayout,
)

from ..engine import Prediction, SafeguardEvent, TrainedModel, removed_note
from ..engine.uncertainty import (
    KINDS,
    MC_SAMPLES,
    TTA,
    TTA_SAMPLES,
    TWIN,
    kinds_in,
    layer_name,
    uncertainty_volume,
)
from ..layers import export_layer
from . import notify
from .params import let_shrink
from .result_layers import PREDICTION, UNCERTAINTY, UNCERTAINTY_KIND_KEY, ResultLayers
from .runner import Runner
from .state import DockState
from .widgets import LayerCombo, button, labelled_row, row

#: why the box is there, and when to turn it off
PARTS_TIP = (
    "Keep only the predicted parts of each class that touch what you painted on the slices "
    "trained on, in Predict, Mask now and the safeguard's check, as the command line's export "
    "does: look-alikes far from the painted structure are dropped (this raised every method's "
    "whole-volume IoU in the benchmarks). Turn it off for a structure made of separate parts "
    "you did not all paint (several lesions, say). A model loaded from a file has no paint: "
    "it keeps every part."
)


class ResultsPanel(QGroupBox):
    """Prediction, export and model files."""

    def __init__(self, state: DockState, runner: Runner, layers: ResultLayers) -> None:
        super().__init__("Predict and export")
        self.state, self.runner, self.layers = state, runner, layers
        v = QVBoxLayout(self)
        self.mc_spin = QSpinBox()
        self.mc_spin.setRange(1, 100)
        self.mc_spin.setValue(MC_SAMPLES)  # as the commands' default
        self.mc_spin.setToolTip("Thresholds drawn for the Monte-Carlo uncertainty (SegPL-VI)")
        #: test-time augmentation: 0 off, else M predictions (the slice and small affine maps)
        #: and their std, the uncertainty shown by default, for any method
        self.tta_spin = QSpinBox()
        self.tta_spin.setRange(0, 32)
        self.tta_spin.setValue(TTA_SAMPLES)
        self.tta_spin.setSpecialValueText("off")
        self.tta_spin.setToolTip(
            "Test-time augmentation: the std of p over M rotated and scaled copies, the "
            "uncertainty shown by default (M - 1 extra passes: off for a quicker prediction); "
            "after a run with the safeguard, pooled with the run's other model's (M more)"
        )
        #: the uncertainty kind the dock's layer shows, of those the last prediction holds
        self.kind_combo = QComboBox()
        let_shrink(self.kind_combo, characters=6)
        self.kind_combo.setToolTip("Which uncertainty the uncertainty layer shows")
        self.kind_combo.currentIndexChanged.connect(self._kind_chosen)
        #: the last prediction, while it holds more than one kind (its arrays stay in memory)
        self._last: Prediction | None = None
        v.addLayout(row(QLabel("MC samples"), self.mc_spin, stretch=True))
        v.addLayout(row(QLabel("TTA samples"), self.tta_spin, stretch=True))
        v.addLayout(labelled_row("uncertainty", self.kind_combo))  # beside MC: too wide
        #: the state's ``painted_parts``, shown: Predict, Mask now and the safeguard follow it
        self.parts_box = QCheckBox("Only parts touching the paint")
        self.parts_box.setChecked(state.painted_parts)
        self.parts_box.setToolTip(PARTS_TIP)
        self.parts_box.toggled.connect(self._parts_toggled)
        state.parts_changed.connect(self._parts_changed)
        v.addWidget(self.parts_box)
        self.predict_button = button("Predict", self.start_prediction)
        self.accept_button = button("Accept slice", self.accept_current_slice)
        self.accept_button.setToolTip("Copy the prediction on the current slice into your labels")
        v.addLayout(row(self.predict_button, self.accept_button))
        #: which threshold the prediction's labels were cut at (the engine says)
        self.threshold_label = QLabel("")
        self.threshold_label.setWordWrap(True)
        self.threshold_label.setVisible(False)  # no empty gap before the first prediction
        v.addWidget(self.threshold_label)
        # The layer list gets its own row, so a layer name has room to show.
        self.export_combo = LayerCombo(state.viewer, Labels)
        self.export_button = button("Export…", self._export_clicked)
        v.addLayout(labelled_row("", self.export_combo, self.export_button))
        self.save_button = button("Save model…", self._save_clicked)
        self.load_button = button("Load model…", self._load_clicked)
        v.addLayout(row(self.save_button, self.load_button))
        self.model_label = QLabel("no model")
        self.model_label.setWordWrap(True)
        v.addWidget(self.model_label)
        #: which model the safeguard kept and why, while that model is the dock's
        self.safeguard_label = QLabel("")
        self.safeguard_label.setWordWrap(True)
        self.safeguard_label.setVisible(False)
        v.addWidget(self.safeguard_label)
        state.busy_changed.connect(self._update_buttons)
        state.model_changed.connect(self._model_changed)
        state.safeguarded.connect(self._show_safeguard)
        state.predicted.connect(self._predicted)
        for event in (state.viewer.layers.events.inserted, state.viewer.layers.events.removed):
            event.connect(self._update_buttons)
        self._update_buttons()

    def _update_buttons(self, *_: object) -> None:
        state = self.state
        queued = state.predict_queued is not None
        self.predict_button.setEnabled(
            state.model is not None and not state.training and not state.predicting and not queued
        )  # during the fill: enabled, and pressing it queues the prediction
        self.save_button.setEnabled(state.model is not None and not state.training)
        self.accept_button.setEnabled(self.layers.get(PREDICTION) is not None)
        # a choice while predicting would redraw the old prediction over the new one's layers
        self.kind_combo.setEnabled(self.kind_combo.count() > 1 and not state.predicting)

    def _model_changed(self, model: TrainedModel | None) -> None:
        if model is None:
            self.model_label.setText("no model")
        else:
            c = model.config
            self.model_label.setText(
                f"model: {c.method}, {c.dims}D, axis {c.axis}, "
                f"{model.num_classes} class(es), {model.steps_done} steps"
            )
        self._show_safeguard()
        self._update_buttons()

    def _show_safeguard(self, *_: object) -> None:
        """The verdict of the run that made the current model (none for a loaded model)."""
        event = self.state.safeguard
        shown = event is not None and self.state.model is self.state.safeguard_model
        self.safeguard_label.setText(safeguard_text(event) if shown else "")
        self.safeguard_label.setVisible(shown)

    def _parts_toggled(self, on: bool) -> None:
        self.state.painted_parts = on

    def _parts_changed(self, on: bool) -> None:
        """The state changed from elsewhere (a script): the box shows it."""
        if self.parts_box.isChecked() != on:
            self.parts_box.setChecked(on)

    def _predicted(self, pred: object) -> None:
        note = getattr(pred, "threshold_note", "") or ""
        lines = [f"last prediction's {note}" if note else ""]
        lines.append(removed_note(getattr(pred, "removed", None)))  # "" without paint
        against = getattr(pred, "paint_note", "")
        lines.append(f"warning: {against}" if against else "")
        text = "\n".join(line for line in lines if line)
        self.threshold_label.setText(text)
        self.threshold_label.setVisible(bool(text))
        layer, fresh = self.layers.get(PREDICTION), pred is not self._last
        if layer is not None:
            if fresh:  # not when re-announced for another kind: the user's choice stays
                self.export_combo.set_layer(layer)
            if isinstance(pred, Prediction) and pred.labels.shape == layer.data.shape:
                if fresh:  # its kinds, the default shown; kept only when there is a choice
                    kinds = kinds_in(pred)
                    self._list_kinds(kinds)
                    self._last = pred if len(kinds) > 1 else None
                self.show_uncertainty(pred, layer, self.shown_kind())
        self._update_buttons()

    def _list_kinds(self, kinds: list[str]) -> None:
        self.kind_combo.blockSignals(True)  # filling it is no choice of the user's
        self.kind_combo.clear()
        for kind in kinds:
            self.kind_combo.addItem(KINDS[kind].title, kind)
        # the TTA std with twin after a safeguarded run, whichever model was kept (RESULTS.md
        # (M2)), else the TTA std, when predicted, is the default
        first = next((kinds.index(k) for k in (TWIN, TTA) if k in kinds), 0)
        self.kind_combo.setCurrentIndex(first)
        self.kind_combo.blockSignals(False)
        self.kind_combo.setToolTip(KINDS[kinds[first]].description)

    def shown_kind(self) -> str | None:
        """The kind chosen in the "uncertainty" combo (None before a prediction)."""
        return self.kind_combo.currentData()

    def _kind_chosen(self, *_: object) -> None:
        """Another kind of the same prediction: re-announced, so that the uncertainty layer is
        redrawn (in ``_predicted``) and whatever reads it, the suggest panel's curve, follows."""
        kind = self.shown_kind()
        if kind is not None:
            self.kind_combo.setToolTip(KINDS[kind].description)
        if self._last is not None and not self.state.predicting:
            self.state.predicted.emit(self._last)

    def show_uncertainty(self, pred: Prediction, like: object, kind: str | None = None) -> None:
        """One uncertainty of the prediction (``kind``; default its first, see ``kinds_in``) in
        the dock's uncertainty layer, named for its kind, e.g. "uncertainty: entropy of p"
        (with several classes: the most uncertain class at each voxel; the name stays short
        enough for napari's layer list)."""
        kind = kind if kind in kinds_in(pred) else kinds_in(pred)[0]
        layer = self.layers.ensure(
            UNCERTAINTY, like, name=layer_name(kind), colormap="inferno", opacity=0.8,
            blending="additive",
        )  # fmt: skip
        layer.data = uncertainty_volume(pred, kind)
        layer.contrast_limits = (0.0, KINDS[kind].upper)
        layer.metadata[UNCERTAINTY_KIND_KEY] = kind

    def start_prediction(self) -> bool:
        tta = self.tta_spin.value()
        return self.runner.start_prediction(self.mc_spin.value(), tta if tta >= 2 else 0)

    def accept_current_slice(self) -> bool:
        """Copy the prediction on the current slice into the user's labels (undoable)."""
        labels, pred_layer = self.state.labels, self.layers.get(PREDICTION)
        s, axis = self.state.current_slice(), self.state.axis
        if labels is None or pred_layer is None or s is None:
            notify.info("Predict first, and choose the labels layer to copy into.")
            return False
        pred = pred_layer.data
        if pred.shape != labels.data.shape:
            notify.error("The prediction and the labels layer are on different grids.")
            return False
        index = [slice(None)] * 3
        index[axis] = s
        new = np.asarray(pred[tuple(index)])
        old = np.asarray(labels.data[tuple(index)])
        changed = np.nonzero(new != old)
        coords = list(changed)
        coords.insert(axis, np.full(len(changed[0]), s))
        if len(changed[0]):
            labels.data_setitem(tuple(coords), new[changed])  # its paint event lists the slice
        return True

    # ------------------------------------------------------- files and models
    def confirm_overwrite(self, path: Path) -> bool:
        answer = QMessageBox.question(
            self, "Overwrite?", f"{path} exists. Replace it?", QMessageBox.Yes | QMessageBox.No
        )
        return answer == QMessageBox.Yes

    def export(self, path: str | Path, layer=None) -> Path | None:
        """Export a labels layer to NIfTI on its source grid, asking before overwriting."""
        layer = layer or self.export_combo.layer()
        if layer is None:
            notify.info("Nothing to export: predict first or choose a labels layer.")
            return None
        path = Path(path)
        if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
            path = path.with_name(path.name + ".nii.gz")
        overwrite = False
        if path.exists():
            if not self.confirm_overwrite(path):
                return None
            overwrite = True
        try:
            image = self.state.image  # a layer from napari's own New labels has no grid
            out = export_layer(layer, path, overwrite=overwrite, others=[image] if image else [])
        except (OSError, ValueError) as exc:
            notify.error(f"Export failed: {exc}")
            return None
        notify.info(f"Saved {layer.name} to {out}")
        return out

    def _export_clicked(self) -> None:
        path = _ask(
            QFileDialog.getSaveFileName, self, "Export labels", "NIfTI (*.nii.gz *.nii)",
            own_question=True,
        )  # fmt: skip
        if path:
            self.export(path)

    def save_model(self, path: str | Path) -> Path | None:
        if self.state.model is None:
            notify.info("No model to save yet.")
            return None
        try:
            out = self.state.model.save(path)
        except OSError as exc:
            notify.error(f"Could not save the model: {exc}")
            return None
        notify.info(f"Model saved to {out}")
        return out

    def load_model(self, path: str | Path) -> TrainedModel | None:
        if self.state.training:
            notify.info("Stop training before loading another model.")
            return None
        try:
            model = TrainedModel.load(path)
        except ValueError as exc:
            notify.error(str(exc))
            return None
        self.state.axis = model.config.axis
        self.state.set_model(model)
        return model

    def _save_clicked(self) -> None:
        path = _ask(QFileDialog.getSaveFileName, self, "Save model", "SegPL model (*.pt)")
        if path:
            self.save_model(path if path.endswith(".pt") else path + ".pt")

    def _load_clicked(self) -> None:
        path = _ask(QFileDialog.getOpenFileName, self, "Load model", "SegPL model (*.pt)")
        if path:
            self.load_model(path)


def safeguard_text(event: SafeguardEvent) -> str:
    """The line "Safeguard: kept <method> — <reason>"; then held-out Dice per model."""
    lines = [f"Safeguard: kept {event.kept} — {event.reason}"]
    if event.heldout:
        parts = []
        for method, dice in event.heldout.items():
            per_class = ", ".join(f"{d:.3f}" for d in dice)
            mean = sum(dice) / len(dice) if dice else float("nan")
            parts.append(f"{method} {mean:.3f} ({per_class})")
        lines.append("held-out Dice, mean (per class): " + "; ".join(parts))
    return "\n".join(lines)


def _ask(
    dialog: Callable, parent: QGroupBox, title: str, kinds: str, own_question: bool = False
) -> str:
    """A file dialog's chosen path ("" when cancelled). With ``own_question`` the caller asks
    before overwriting (after adding the file's extension), not the dialog."""
    extra = {"options": QFileDialog.DontConfirmOverwrite} if own_question else {}
    path, _ = dialog(parent, title, "", kinds, **extra)
    return path
