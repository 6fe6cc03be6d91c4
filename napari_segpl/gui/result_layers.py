"""The layers the dock makes (pseudo labels, prediction, probability, uncertainty, the mask of
a run still training), and only those: each is marked in its metadata with its role and this
dock's id, and a user's layer is never modified or removed, whatever its name. The dock also
remembers which layer objects it made, since napari's Duplicate copies the metadata: a copy is
the user's. A layer the user trains on (``in_use``, their own pseudo-label layer corrected
by hand) becomes theirs too, and the dock makes a new one, as does a labels layer of the dock's
that the user paints on (their hand edits are never replaced by the next result). A name
already taken gets napari's next free name ("prediction [1]")."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..layers import same_grid_kwargs

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer

ROLE_KEY, OWNER_KEY = "segpl_role", "segpl_owner"
PSEUDO, PREDICTION, PROBABILITY, UNCERTAINTY, SNAPSHOT = (
    "pseudo labels",
    "prediction",
    "probability",
    "uncertainty",
    "mask while training",
)
#: the layer type of each role
KINDS = {
    PSEUDO: "labels",
    PREDICTION: "labels",
    PROBABILITY: "image",
    UNCERTAINTY: "image",
    SNAPSHOT: "labels",
}
#: napari Labels events of a hand edit: ``paint`` once a stroke, fill or polygon is done,
#: ``labels_update`` while a stroke is still going on (both only from painting calls)
EDIT_EVENTS = ("paint", "labels_update")
#: metadata key of the uncertainty layer: which kind it shows (``engine.uncertainty.KINDS``)
UNCERTAINTY_KIND_KEY = "segpl_uncertainty_kind"


def on_hand_edit(layer: Layer, callback: Callable[[object], None], connect: bool = True) -> None:
    """Connect (or disconnect) ``callback`` to the events of ``EDIT_EVENTS`` that ``layer``
    has (napari keeps a bound method weakly: the layer never keeps its owner alive)."""
    for name in EDIT_EVENTS:
        emitter = getattr(layer.events, name, None)
        if emitter is not None:
            (emitter.connect if connect else emitter.disconnect)(callback)


def role_of(layer: Layer, owner: str) -> str | None:
    """The role of a layer this dock made, or None for any other layer (the user's)."""
    metadata = getattr(layer, "metadata", None) or {}
    return metadata.get(ROLE_KEY) if metadata.get(OWNER_KEY) == owner else None


class ResultLayers:
    """Finds, makes and resets the dock's own result layers in one viewer."""

    def __init__(
        self, viewer: napari.Viewer, owner: str, in_use: Callable[[], Layer | None] | None = None
    ) -> None:
        self.viewer, self.owner = viewer, owner
        self._in_use = in_use or (lambda: None)
        self._made: dict[str, weakref.ReferenceType] = {}
        #: roles whose layer was released by a hand edit: the result of the run that was going
        #: on then goes to a new layer (``edited``)
        self._edited: set[str] = set()

    def get(self, role: str) -> Layer | None:
        """The layer this dock made for ``role``, while it is in the viewer, still marked and
        not the one the user trains on (that one is theirs: released, so previews and the
        fill of a run already going never write over their corrections)."""
        ref = self._made.get(role)
        layer = ref() if ref is not None else None
        if layer is None or role_of(layer, self.owner) != role:
            return None
        if layer is self._in_use():
            self.release(layer)
            return None
        return layer if any(other is layer for other in self.viewer.layers) else None

    def release(self, layer: Layer) -> None:
        """``layer`` is no longer the dock's: unmarked and forgotten, its data kept."""
        layer.metadata.pop(ROLE_KEY, None)
        layer.metadata.pop(OWNER_KEY, None)
        self._made = {r: ref for r, ref in self._made.items() if ref() is not layer}
        on_hand_edit(layer, self._hand_edited, connect=False)

    def edited(self, role: str) -> bool:
        """The user painted on the ``role`` layer since the dock last made one."""
        return role in self._edited

    def _hand_edited(self, event: object) -> None:
        """A stroke, a fill or a polygon on one of the dock's labels layers: it is the
        user's from now on (the dock never writes the dock's own layers through napari's
        painting calls, so these events are always the user's)."""
        layer = getattr(event, "source", None)
        if layer is not None and self.is_own(layer):
            role = role_of(layer, self.owner)
            if role is not None:
                self._edited.add(role)
            self.release(layer)

    def ensure(
        self, role: str, like: Layer, data: np.ndarray | None = None, **kwargs: object
    ) -> Layer:
        """The dock's ``role`` layer on ``like``'s grid, reset to zeros (or showing ``data``,
        of ``like``'s shape: no zeros made first for a volume that replaces them at once).

        An own layer of another shape (another image was chosen) is left as it is, no longer
        marked, so what it shows is kept; a new layer is made instead. A ``name`` names the
        layer (a kept one too: the name says what it shows); the default is the role."""
        kind = KINDS[role]
        shape = like.data.shape
        name = str(kwargs.pop("name", role))
        layer = self.get(role)
        if layer is not None and layer is self._in_use():  # the user trains on it: theirs now
            self.release(layer)
            layer = None
        if layer is not None and layer.data.shape == shape:
            layer.data = np.zeros(shape, layer.data.dtype) if data is None else data
            if layer.name != name and not layer.name.startswith(f"{name} ["):
                layer.name = name  # napari adds " [1]" when another layer has the name
            return layer
        if layer is not None:
            self.release(layer)
        geometry = same_grid_kwargs(like, name)
        metadata = dict(geometry.pop("metadata", None) or {})
        metadata.update({ROLE_KEY: role, OWNER_KEY: self.owner})
        if kind == "labels":
            initial = np.zeros(shape, np.uint8) if data is None else data
            made = self.viewer.add_labels(initial, metadata=metadata, **geometry, **kwargs)
            on_hand_edit(made, self._hand_edited)
        else:
            initial = np.zeros(shape, np.float32) if data is None else data
            made = self.viewer.add_image(initial, metadata=metadata, **geometry, **kwargs)
        self._made[role] = weakref.ref(made)
        self._edited.discard(role)
        return made

    def is_own(self, layer: Layer | None) -> bool:
        return layer is not None and any(ref() is layer for ref in self._made.values())
