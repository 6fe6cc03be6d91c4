"""The viewer's orientation follows the chosen image and slicing axis, and nothing else.

The view slices along the slicing axis (what gets painted and marked), and a volume that knows
its anatomy is shown as a radiologist reads it (axial: anterior up, the patient's right on the
screen's left). Only choosing another image or axis moves the view: adding, removing or
moving any other layer keeps the user's zoom, pan and slice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..layers import GRID_KEY, radiological_view

if TYPE_CHECKING:
    from .state import DockState


class ViewFollower:
    """Re-orients the viewer when the state's image or axis changes."""

    def __init__(self, state: DockState) -> None:
        self.state = state
        self.orientations = 0  # how often the view was moved (tests count it)
        state.image_changed.connect(self.orient)
        state.axis_changed.connect(self.orient)

    def orient(self, *_: object) -> None:
        viewer, image, axis = self.state.viewer, self.state.image, self.state.axis
        if viewer.dims.ndim != 3:
            return
        self.orientations += 1
        grid = getattr(image, "metadata", {}).get(GRID_KEY) if image is not None else None
        view = None
        if grid and tuple(grid.get("shape", ())) == tuple(image.data.shape):
            view = radiological_view(grid["affine"], axis)
        if view is not None:
            viewer.dims.order = view[0]
            scene = getattr(viewer, "scene", viewer)  # napari < 0.9: viewer.camera
            scene.camera.orientation2d = view[1]
            viewer.reset_view()
            return
        order = list(viewer.dims.order)
        if order[0] != axis:
            order.remove(axis)
            viewer.dims.order = (axis, *order)
