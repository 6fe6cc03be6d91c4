"""napari writers: a labels or image layer to NIfTI on the grid it was read from.

napari hands writers ``(path, data, meta)`` where ``meta`` is the layer state, so the grid
recorded by the reader (``meta["metadata"]["segpl_grid"]``) is available here too; layers
without it are written on the axis-aligned grid given by their scale and translate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .layers import grid_from_parts, write_on_grid
from .volume import VolumeError


class SegplWriteError(RuntimeError):
    """A layer could not be written; raised instead of VolumeError because napari treats a
    ValueError from a writer as "no writer found" and would hide the reason."""


def _write(path: str, data: Any, meta: dict[str, Any], *, labels: bool) -> list[str]:
    name = str(meta.get("name") or Path(path).name)
    try:
        grid = grid_from_parts(
            data, meta.get("metadata"), meta.get("scale"), meta.get("translate"), name
        )
        written = write_on_grid(grid, path, labels=labels)
    except VolumeError as exc:
        raise SegplWriteError(str(exc)) from exc
    return [str(written)]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: one labels layer as integer NIfTI on its source grid."""
    return _write(path, data, meta, labels=True)


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: one image layer as float32 NIfTI on its source grid."""
    return _write(path, data, meta, labels=False)
