"""The layers the dock makes (pseudo labels, prediction, probability, uncertainty, the mask of
a run still training), and only
those: each is marked in its metadata with its role and this dock's id, and a user's layer is
never modified or removed, whatever its name. A name already taken gets napari's next free
name ("prediction [1]")."""

from __future__ import annotations

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
#: metadata key of the uncertainty layer: which kind it shows (``engine.uncertainty.KINDS``)
UNCERTAINTY_KIND_KEY = "segpl_uncertainty_kind"


def role_of(layer: Layer, owner: str) -> str | None:
    """The role of a layer this dock made, or None for any other layer (the user's)."""
    metadata = getattr(layer, "metadata", None) or {}
    return metadata.get(ROLE_KEY) if metadata.get(OWNER_KEY) == owner else None


class ResultLayers:
    """Finds, makes and resets the dock's own result layers in one viewer."""

    def __init__(self, viewer: napari.Viewer, owner: str) -> None:
        self.viewer, self.owner = viewer, owner

    def get(self, role: str) -> Layer | None:
        """The dock's layer for ``role`` that is still in the viewer (the newest one)."""
        for layer in reversed(list(self.viewer.layers)):
            if role_of(layer, self.owner) == role:
                return layer
        return None

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
        if layer is not None and layer.data.shape == shape:
            layer.data = np.zeros(shape, layer.data.dtype) if data is None else data
            if layer.name != name and not layer.name.startswith(f"{name} ["):
                layer.name = name  # napari adds " [1]" when another layer has the name
            return layer
        if layer is not None:
            layer.metadata.pop(ROLE_KEY, None)
            layer.metadata.pop(OWNER_KEY, None)
        geometry = same_grid_kwargs(like, name)
        metadata = dict(geometry.pop("metadata", None) or {})
        metadata.update({ROLE_KEY: role, OWNER_KEY: self.owner})
        if kind == "labels":
            initial = np.zeros(shape, np.uint8) if data is None else data
            return self.viewer.add_labels(initial, metadata=metadata, **geometry, **kwargs)
        initial = np.zeros(shape, np.float32) if data is None else data
        return self.viewer.add_image(initial, metadata=metadata, **geometry, **kwargs)

    def is_own(self, layer: Layer | None) -> bool:
        return layer is not None and role_of(layer, self.owner) is not None
