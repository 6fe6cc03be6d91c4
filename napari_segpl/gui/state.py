"""What the dock's panels share, kept apart from any widget: the chosen layers and axis, the
model, whether a run is going on, and the signals that say when any of it changes.

Panels read and write this object and listen to its signals; what one panel reads from another
(the data panel's slices, the form's config) is handed to it as a callable at construction.
Everything here is changed on the GUI thread only (the workers' results arrive there first).
"""

from __future__ import annotations

import uuid
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
    import napari
    import numpy as np
    from napari.layers import Image, Labels

    from ..engine import SafeguardEvent, TrainedModel


@dataclass
class RunInfo:
    """What a training run was started with (the fill and the previews need it later)."""

    axis: int = 2
    labelled: list[int] = field(default_factory=list)
    #: labelled slices kept out of training and scored while it runs (the held-out Dice plot)
    holdout: list[int] = field(default_factory=list)
    #: the image layer the run trained on: its paint fits that layer's prediction only (weak
    #: references here: a removed layer's volume or a replaced model is not kept alive)
    image: weakref.ref[Image] | None = None
    #: the slices the run trained on (slice along ``axis`` -> their labels, held-out ones
    #: never among them), set when its data is ready: the paint Predict keeps parts touching
    paint: dict[int, np.ndarray] | None = None
    #: the models the run made (its own, the safeguard's pick): the paint is theirs alone
    models: list[weakref.ref[TrainedModel]] = field(default_factory=list)


class DockState:
    """Choices and run status shared by the panels, with a signal for each change."""

    #: the chosen image layer changed (or was removed): the view may re-orient
    image_changed = Signal(object)
    #: the chosen labels layer changed
    labels_changed = Signal(object)
    #: the slicing axis changed: the view may re-orient
    axis_changed = Signal(int)
    #: the labelled slices (painted or marked) changed
    slices_changed = Signal()
    #: a model was trained, stopped or loaded
    model_changed = Signal(object)
    #: training, filling, predicting, comparing or a queued prediction started or ended
    busy_changed = Signal()
    #: a run is starting with this TrainConfig (progress and plots size themselves on it)
    run_reset = Signal(object)
    #: the worker's events, as they arrive: Started, StepEvent, PreviewEvent, CollapseWarning,
    #: FinishedEvent
    started = Signal(object)
    step = Signal(object)
    preview = Signal(object)
    collapse = Signal(object)
    finished = Signal(object)
    #: the safeguard's supervised twin took a step (SafeguardProgress: not the run's losses)
    safeguard_step = Signal(object)
    #: the safeguard decided (SafeguardEvent); ``safeguard`` and ``safeguard_model`` keep it
    safeguarded = Signal(object)
    #: Dice per class on the held-out slices, every few steps of a run with them (HeldoutEvent)
    heldout = Signal(object)
    #: a one-line status text for the progress bar / status line
    progress_text = Signal(str)
    status_text = Signal(str)
    #: a whole-volume prediction was shown (the engine's Prediction)
    predicted = Signal(object)
    #: "Only parts touching the paint" was switched on or off
    parts_changed = Signal(bool)

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        #: marks the result layers this dock made, so no other layer is ever touched
        self.owner = uuid.uuid4().hex
        self._image: Image | None = None
        self._labels: Labels | None = None
        self._axis = 2
        self._parts = True  # on by default: it raised every method's IoU (RESULTS.md (rr))
        self.model: TrainedModel | None = None
        self.run = RunInfo()
        self.training = False
        self.filling = False
        self.predicting = False
        self.predict_queued: dict[str, Any] | None = None
        #: the Compare panel's runs (they train too: nothing else starts while they run)
        self.comparing = False
        #: the last run's safeguard verdict and the model it kept (a loaded model is not it)
        self.safeguard: SafeguardEvent | None = None
        self.safeguard_model: TrainedModel | None = None
        #: the run's other model, which "TTA std with twin" pools with the kept one's
        self.safeguard_partner: TrainedModel | None = None

    # ------------------------------------------------------------ choices
    @property
    def image(self) -> Image | None:
        return self._image

    @image.setter
    def image(self, layer: Image | None) -> None:
        if layer is not self._image:
            self._image = layer
            self.image_changed.emit(layer)

    @property
    def labels(self) -> Labels | None:
        return self._labels

    @labels.setter
    def labels(self, layer: Labels | None) -> None:
        if layer is not self._labels:
            self._labels = layer
            self.labels_changed.emit(layer)

    @property
    def axis(self) -> int:
        return self._axis

    @axis.setter
    def axis(self, axis: int) -> None:
        if int(axis) != self._axis:
            self._axis = int(axis)
            self.axis_changed.emit(self._axis)

    @property
    def painted_parts(self) -> bool:
        """Predict, Mask now and the safeguard's check keep only the predicted parts that
        touch the trained-on paint (``engine.components``), as the CLI's export does."""
        return self._parts

    @painted_parts.setter
    def painted_parts(self, on: bool) -> None:
        if bool(on) != self._parts:
            self._parts = bool(on)
            self.parts_changed.emit(self._parts)

    def paint_for(self, image: Image | None) -> dict[int, np.ndarray] | None:
        """The paint a prediction of ``image`` with the dock's model is checked against (the
        touching parts kept when the box is on, a painted class missing named either way): the
        last run's trained-on slices, when the model is one that run made and ``image`` is the
        layer (and shape) it trained on. None otherwise: a loaded model has no paint to check
        against."""
        run = self.run
        trained_on = run.image() if run.image is not None else None
        if run.paint is None or image is None or image is not trained_on:
            return None
        model = self.model
        if model is None or not any(model is m() for m in run.models):
            return None
        shape, axis = image.data.shape, model.config.axis  # the axis the paint is along
        if len(shape) != 3:
            return None
        plane = tuple(n for a, n in enumerate(shape) if a != axis)
        fits = all(0 <= s < shape[axis] and p.shape == plane for s, p in run.paint.items())
        return run.paint if fits else None

    def set_model(self, model: TrainedModel | None) -> None:
        self.model = model
        self.model_changed.emit(model)

    # ------------------------------------------------------------ status
    @property
    def busy(self) -> bool:
        """A worker is running (training, the pseudo-label fill, a prediction or a compare)."""
        return self.training or self.filling or self.predicting or self.comparing

    def set_busy(self, **flags: bool) -> None:
        for name, value in flags.items():
            setattr(self, name, value)
        self.busy_changed.emit()

    def _grid_layer(self) -> Image | Labels | None:
        """The layer whose voxels slice numbers count: the labels, else the image."""
        return self._labels if self._labels is not None else self._image

    def current_slice(self) -> int | None:
        """The slice on screen along the slicing axis, as an index into the chosen layers'
        data (None when the viewer is not 3D or the slice lies outside them). napari's slider
        counts steps of the world grid, which runs backwards where a layer's scale is negative
        (LPS files) and spans every open layer: it is not the data's slice number."""
        try:
            if self.viewer.dims.ndim != 3:
                return None
            layer = self._grid_layer()
            if layer is None:
                return int(self.viewer.dims.current_step[self._axis])
            index = round(float(layer.world_to_data(self.viewer.dims.point)[self._axis]))
            return index if 0 <= index < layer.data.shape[self._axis] else None
        except Exception:  # the viewer is closing
            return None

    def go_to_slice(self, index: int) -> None:
        """Show data slice ``index`` of the chosen layers along the slicing axis."""
        layer = self._grid_layer()
        if layer is None:
            self.viewer.dims.set_current_step(self._axis, int(index))
            return
        position = [0.0] * layer.ndim
        position[self._axis] = float(index)
        world = layer.data_to_world(position)  # scale and translate: axes stay aligned
        self.viewer.dims.set_point(self._axis, float(world[self._axis]))
