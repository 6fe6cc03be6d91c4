"""The layer <-> grid contract: how a napari layer remembers the voxel grid it came from.

napari places a layer with ``scale`` and ``translate`` only, which cannot express an oblique
(rotated) voxel grid. So every layer made by this plugin also carries the source grid in
``layer.metadata``; anything exported from the layer is written on that grid, and lands
exactly on the source image in other tools (ITK-SNAP, 3D Slicer, nibabel), rotations
included.

``metadata["segpl_grid"]`` is ``{"affine": 4x4 list, "shape": [i, j, k], "source": str|None}``
(plain data, so it survives copies and serialisation); ``metadata["segpl_header"]`` is the
source NIfTI header or ``None`` and keeps the qform/sform codes of exported files.

No Qt and no napari import: layers are duck-typed (``.data``, ``.metadata``, ``.scale``,
``.translate``), so the dock and headless code can share this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .volume import NIFTI_EXTENSIONS, Volume, VolumeError, write_nifti

__all__ = [
    "GRID_KEY",
    "HEADER_KEY",
    "export_layer",
    "grid_from_parts",
    "grid_metadata",
    "grid_of",
    "is_labels_layer",
    "layer_kwargs",
    "radiological_view",
    "same_grid_kwargs",
    "write_on_grid",
]

GRID_KEY = "segpl_grid"
HEADER_KEY = "segpl_header"
DEFAULT_SUFFIX = ".nii.gz"


def grid_metadata(volume: Volume) -> dict[str, Any]:
    """Layer metadata that records `volume`'s grid, so exports land back on it."""
    return {
        GRID_KEY: {
            "affine": np.asarray(volume.affine, dtype=float).tolist(),
            "shape": [int(n) for n in volume.shape],
            "source": str(volume.path) if volume.path is not None else None,
        },
        HEADER_KEY: volume.header,
    }


def layer_kwargs(volume: Volume, name: str) -> dict[str, Any]:
    """Layer keyword arguments placing `volume` in physical space (mm) with its grid kept."""
    return {
        "name": name,
        "scale": tuple(float(s) for s in volume.spacing),
        "translate": tuple(float(t) for t in volume.affine[:3, 3]),
        "metadata": grid_metadata(volume),
    }


def _layer_name(layer: Any) -> str:
    return str(getattr(layer, "name", None) or "layer")


def _stored_grid(metadata: Any, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """The recorded grid if it is well formed and still matches the data's shape."""
    if not isinstance(metadata, dict):
        return None
    grid = metadata.get(GRID_KEY)
    if not isinstance(grid, dict):
        return None
    try:
        affine = np.asarray(grid["affine"], dtype=float)
        grid_shape = tuple(int(n) for n in grid["shape"])
    except (KeyError, TypeError, ValueError):
        return None
    if affine.shape != (4, 4) or grid_shape != tuple(shape):
        return None
    return grid


def _diagonal_affine(scale: Any, translate: Any, name: str) -> np.ndarray:
    """Axis-aligned grid from napari's scale/translate (all a plain layer can express)."""
    scale = np.ones(3) if scale is None else np.asarray(scale, dtype=float)
    translate = np.zeros(3) if translate is None else np.asarray(translate, dtype=float)
    if scale.shape != (3,) or translate.shape != (3,):
        raise VolumeError(f"{name}: scale {tuple(scale)} / translate {tuple(translate)} are not 3D")
    affine = np.eye(4)
    affine[:3, :3] = np.diag(scale)
    affine[:3, 3] = translate
    return affine


def grid_from_parts(data: Any, metadata: Any, scale: Any, translate: Any, name: str) -> Volume:
    """:func:`grid_of` from a layer's parts, for npe2 writers that get ``(data, meta)``."""
    array = np.asarray(data)
    if array.ndim != 3:
        raise VolumeError(
            f"{name}: layer data has shape {array.shape}; only 3D volumes can be placed "
            "on a voxel grid"
        )
    grid = _stored_grid(metadata, array.shape)
    if grid is not None:
        source = grid.get("source")
        header = metadata.get(HEADER_KEY)
        return Volume(array, np.asarray(grid["affine"], dtype=float), source, header)
    return Volume(array, _diagonal_affine(scale, translate, name))


def grid_of(layer: Any) -> Volume:
    """The layer's data on its grid: the recorded source grid when it still fits the data,
    else the axis-aligned grid given by the layer's scale and translate."""
    return grid_from_parts(
        layer.data,
        getattr(layer, "metadata", None),
        getattr(layer, "scale", None),
        getattr(layer, "translate", None),
        _layer_name(layer),
    )


#: Radiological convention, per slicing direction: which anatomical direction the screen's
#: vertical axis shows going up, and which its horizontal axis shows going right (axial and
#: coronal: the patient's left on the screen's right; sagittal: posterior on the right).
_SCREEN = {
    "axial": {"up": "A", "right": "L"},
    "coronal": {"up": "S", "right": "L"},
    "sagittal": {"up": "S", "right": "P"},
}
_PAIRS = {"R": "RL", "L": "RL", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}
_PLANE = {"SI": "axial", "AP": "coronal", "RL": "sagittal"}


def radiological_view(
    affine: Any, axis: int
) -> tuple[tuple[int, int, int], tuple[str, str]] | None:
    """How to show slices along array ``axis`` as a radiologist reads them: napari's
    ``dims.order`` (the sliced axis first, then the screen's vertical axis, then its
    horizontal one) and ``camera.orientation2d`` (whether each index runs up or down, left or
    right). A RAS volume shown in array order lies on its side, its anterior to the right.

    None when the grid's axes do not point along three different anatomical directions."""
    from nibabel.orientations import aff2axcodes

    codes = aff2axcodes(np.asarray(affine, dtype=float))
    if None in codes or len({_PAIRS[c] for c in codes}) != 3:
        return None
    screen = _SCREEN[_PLANE[_PAIRS[codes[axis]]]]
    others = [a for a in range(3) if a != axis]
    vertical = next(a for a in others if screen["up"] in _PAIRS[codes[a]])
    horizontal = next(a for a in others if a != vertical)
    up = "up" if codes[vertical] == screen["up"] else "down"
    right = "right" if codes[horizontal] == screen["right"] else "left"
    return (axis, vertical, horizontal), (up, right)


def same_grid_kwargs(layer: Any, name: str) -> dict[str, Any]:
    """Keyword arguments for a new layer that overlays `layer` and exports on its grid."""
    metadata = getattr(layer, "metadata", None)
    shape = np.shape(layer.data)
    grid = _stored_grid(metadata, shape)
    if grid is not None:
        new_metadata = {
            GRID_KEY: {
                "affine": np.asarray(grid["affine"], dtype=float).tolist(),
                "shape": list(grid["shape"]),
                "source": grid.get("source"),
            },
            HEADER_KEY: metadata.get(HEADER_KEY),
        }
    else:
        new_metadata = grid_metadata(grid_of(layer))
    scale = getattr(layer, "scale", None)
    translate = getattr(layer, "translate", None)
    return {
        "name": name,
        "scale": tuple(float(s) for s in (np.ones(len(shape)) if scale is None else scale)),
        "translate": tuple(
            float(t) for t in (np.zeros(len(shape)) if translate is None else translate)
        ),
        "metadata": new_metadata,
    }


def is_labels_layer(layer: Any) -> bool:
    """True for napari Labels layers (by class name, so napari need not be imported)."""
    return any(cls.__name__ == "Labels" for cls in type(layer).__mro__)


def _nifti_path(path: str | Path) -> Path:
    path = Path(path)
    name = path.name.lower()
    if any(name.endswith(ext) for ext in NIFTI_EXTENSIONS):
        return path
    if not path.suffix:
        return path.with_name(path.name + DEFAULT_SUFFIX)
    raise VolumeError(f"{path}: export format must be .nii or .nii.gz, not {path.suffix!r}")


def write_on_grid(grid: Volume, path: str | Path, *, labels: bool) -> Path:
    """Write ``grid.array`` on its grid: labels as exact integers, images as float32."""
    array = grid.array
    if labels:
        if np.issubdtype(array.dtype, np.floating):
            if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
                raise VolumeError(f"{path}: labels must be whole numbers to export")
            array = array.astype(np.int64)
        elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise VolumeError(f"{path}: cannot export labels of type {array.dtype}")
        return write_nifti(array, grid, path)
    return write_nifti(array, grid, path, dtype=np.float32)


def export_layer(layer: Any, path: str | Path, overwrite: bool = False) -> Path:
    """Write the layer to NIfTI on its source grid; returns the path written.

    A path without a suffix gets ``.nii.gz``. Existing files are kept unless `overwrite`,
    so a click cannot silently replace someone's segmentation.
    """
    out = _nifti_path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or allow overwrite")
    return write_on_grid(grid_of(layer), out, labels=is_labels_layer(layer))
