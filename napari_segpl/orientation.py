"""Which way a grid's array axes run in RAS, and how to show its slices as a radiologist
reads them (napari's ``dims.order`` and ``camera.orientation2d``). No Qt, no napari."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["axis_directions", "radiological_view"]

#: RAS+ letters of each world axis, and the letters of the opposite directions.
_POSITIVE = "RAS"
_NEGATIVE = "LPI"


def axis_directions(affine: Any) -> tuple[list[int], list[float]] | None:
    """For each array axis, the RAS axis it runs nearest to and whether it runs towards
    R/A/S (+1) or L/P/I (-1); None when two array axes run nearest the same RAS axis."""
    linear = np.asarray(affine, dtype=float)[:3, :3]
    nearest = [int(np.argmax(np.abs(linear[:, d]))) for d in range(3)]
    if len(set(nearest)) != 3:
        return None
    signs = [1.0 if linear[nearest[d], d] > 0 else -1.0 for d in range(3)]
    return nearest, signs


#: Radiological convention, per slicing direction: which anatomical direction the screen's
#: vertical axis shows going up, and which its horizontal axis shows going right (axial and
#: coronal: the patient's left on the screen's right; sagittal: posterior on the right).
_SCREEN = {
    "axial": {"up": "A", "right": "L"},
    "coronal": {"up": "S", "right": "L"},
    "sagittal": {"up": "S", "right": "P"},
}
_PLANE = {0: "sagittal", 1: "coronal", 2: "axial"}  # by the RAS axis the slices run along


def radiological_view(
    affine: Any, axis: int, scale: Any = None
) -> tuple[tuple[int, int, int], tuple[str, str]] | None:
    """How to show slices along array ``axis`` as a radiologist reads them: napari's
    ``dims.order`` (the sliced axis first, then the screen's vertical axis, then its
    horizontal one) and ``camera.orientation2d`` (whether each world axis runs up or down,
    left or right on screen).

    ``scale`` is the layer's napari scale, whose signs say which way each world axis runs;
    by default the placement :func:`layer_kwargs` gives (every world axis growing towards
    R, A or S, so axial slices show ``("up", "left")``). None when two array axes of the grid
    run nearest the same anatomical axis."""
    directions = axis_directions(affine)
    if directions is None:
        return None
    nearest, signs = directions
    # Which way each world axis runs: R, A or S for layer_kwargs' placement; else the array
    # axis's own direction, reversed where the layer's scale is negative.
    runs = [1.0] * 3 if scale is None else [signs[d] * float(scale[d]) for d in range(3)]
    world = [(_POSITIVE if runs[d] > 0 else _NEGATIVE)[nearest[d]] for d in range(3)]
    screen = _SCREEN[_PLANE[nearest[axis]]]
    others = [a for a in range(3) if a != axis]
    vertical = next(a for a in others if screen["up"] in _letters(nearest[a]))
    horizontal = next(a for a in others if a != vertical)
    up = "up" if world[vertical] == screen["up"] else "down"
    right = "right" if world[horizontal] == screen["right"] else "left"
    return (axis, vertical, horizontal), (up, right)


def _letters(ras_axis: int) -> str:
    return _POSITIVE[ras_axis] + _NEGATIVE[ras_axis]
