"""The layer <-> grid contract: where a layer sits in napari's world, and the voxel grid it
came from.

napari's world is RAS+ millimetres (as nibabel reports NIfTI): a voxel of any file opened by
the plugin sits at its true RAS position, so an RAS NIfTI and an LPS NRRD or DICOM series of
the same anatomy overlay. napari slices a layer only along its own array axes, so a layer is
placed with ``scale`` and ``translate`` alone: ``scale`` is the voxel spacing signed by the
direction the axis runs (negative for an axis running right-to-left, posterior or inferior)
and ``translate`` the first voxel's RAS position. That is exact for axis-aligned grids, flipped
ones included; an oblique grid is shown on its nearest axis-aligned grid, and a grid whose
array axes are permuted (e.g. sagittal acquisitions) has its world axes in its own axis order.

Either way every layer made by this plugin also carries the source grid in ``layer.metadata``;
anything exported from the layer is written on that grid, and lands exactly on the source
image in other tools (ITK-SNAP, 3D Slicer, nibabel), rotations included.

``metadata["segpl_grid"]`` is ``{"affine": 4x4 list, "shape": [i, j, k], "source": str|None}``
(plain data, so it survives copies and serialisation); ``metadata["segpl_header"]`` is the
source NIfTI header or ``None`` and keeps the qform/sform codes of exported files. A layer
without it (napari's own reader, or made by the user) is exported on the grid its napari
transform gives (scale, translate, rotate, shear and affine), read as voxel -> RAS.

No Qt and no napari import: layers are duck-typed (``.data``, ``.metadata``, ``.scale``,
``.translate``, optionally ``.rotate``, ``.shear``, ``.affine``), so the dock and headless code
can share this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .orientation import axis_directions, radiological_view
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
    "mm_spacing",
    "on_grid",
    "radiological_view",
    "same_grid_kwargs",
    "world_placement",
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


def world_placement(affine: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """napari ``scale`` and ``translate`` that put a grid's voxels at their RAS position.

    Each array axis keeps its index in the world (napari cannot slice otherwise) and is
    scaled by its spacing, signed so that the world coordinate grows towards R, A or S; the
    translation is the first voxel's coordinate along that RAS axis. Exact for axis-aligned
    grids (flipped or not); the nearest axis-aligned grid for oblique ones."""
    affine = np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    directions = axis_directions(affine)
    if directions is None:  # degenerate: unsigned spacing, world axes = array axes
        return tuple(float(s) for s in spacing), tuple(float(t) for t in affine[:3, 3])
    nearest, signs = directions
    scale = tuple(float(signs[d] * spacing[d]) for d in range(3))
    translate = tuple(float(affine[nearest[d], 3]) for d in range(3))
    return scale, translate


def layer_kwargs(volume: Volume, name: str) -> dict[str, Any]:
    """Layer keyword arguments placing `volume` at its RAS position (mm) with its grid kept."""
    scale, translate = world_placement(volume.affine)
    return {
        "name": name,
        "scale": scale,
        "translate": translate,
        "metadata": grid_metadata(volume),
    }


def mm_spacing(layer: Any) -> list[float] | None:
    """The voxel size in mm per array axis of a layer on a recorded source grid (read from a
    file, or made on such a layer's grid); None for any other layer (e.g. an array added with
    napari's scale 1, whose spacing is unknown), so distances are then given in voxels rather
    than called mm."""
    grid = _stored_grid(getattr(layer, "metadata", None), np.shape(layer.data))
    if grid is None:
        return None
    affine = np.asarray(grid["affine"], dtype=float)
    return [float(n) for n in np.linalg.norm(affine[:3, :3], axis=0)]


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


def _matrix(value: Any, name: str, what: str) -> np.ndarray | None:
    """A napari transform part as a float array (an ``Affine`` object gives its matrix)."""
    if value is None:
        return None
    value = getattr(value, "affine_matrix", value)
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise VolumeError(f"{name}: layer {what} is not numeric ({exc})") from exc


def _shear_matrix(shear: np.ndarray | None, name: str) -> np.ndarray:
    """napari's shear (upper-triangular values, or a unit-diagonal 3x3 matrix) as 3x3."""
    if shear is None or shear.size == 0:
        return np.eye(3)
    if shear.shape == (3,):
        matrix = np.eye(3)
        matrix[np.triu_indices(3, 1)] = shear  # row by row, as napari expands it
        return matrix
    if shear.shape == (3, 3):
        return shear
    raise VolumeError(f"{name}: layer shear {shear.tolist()} is not a 3D shear")


def _layer_affine(
    scale: Any, translate: Any, name: str, rotate: Any = None, shear: Any = None, affine: Any = None
) -> np.ndarray:
    """Voxel -> world matrix of napari's layer transform: ``affine @ (rotate @ shear @
    diag(scale) @ index + translate)``, the world being read as RAS millimetres."""
    scale = np.ones(3) if scale is None else np.asarray(scale, dtype=float)
    translate = np.zeros(3) if translate is None else np.asarray(translate, dtype=float)
    if scale.shape != (3,) or translate.shape != (3,):
        raise VolumeError(f"{name}: scale {tuple(scale)} / translate {tuple(translate)} are not 3D")
    rotate_m = _matrix(rotate, name, "rotate")
    rotate_m = np.eye(3) if rotate_m is None else rotate_m
    outer = _matrix(affine, name, "affine")
    outer = np.eye(4) if outer is None else outer
    if rotate_m.shape != (3, 3) or outer.shape != (4, 4):
        raise VolumeError(f"{name}: layer rotate/affine are not 3D transforms")
    inner = np.eye(4)
    inner[:3, :3] = rotate_m @ _shear_matrix(_matrix(shear, name, "shear"), name) @ np.diag(scale)
    inner[:3, 3] = translate
    return outer @ inner


def _overlaid(
    shape: tuple[int, ...], matrix: np.ndarray, others: Iterable[Any]
) -> tuple[dict[str, Any], Any] | None:
    """(recorded grid, header) of the first layer of ``others`` whose voxels coincide with a
    layer of ``shape`` placed by ``matrix`` (same shape, same napari transform), or None."""
    for other in others:
        data, metadata = getattr(other, "data", None), getattr(other, "metadata", None)
        grid = None if data is None or np.shape(data) != shape else _stored_grid(metadata, shape)
        if grid is None:
            continue
        try:
            theirs = _layer_affine(
                getattr(other, "scale", None), getattr(other, "translate", None),
                _layer_name(other), getattr(other, "rotate", None),
                getattr(other, "shear", None), getattr(other, "affine", None),
            )  # fmt: skip
        except VolumeError:
            continue
        if np.allclose(theirs, matrix, rtol=0, atol=1e-6):
            return grid, metadata.get(HEADER_KEY)
    return None


def grid_from_parts(
    data: Any,
    metadata: Any,
    scale: Any,
    translate: Any,
    name: str,
    *,
    rotate: Any = None,
    shear: Any = None,
    affine: Any = None,
    others: Iterable[Any] = (),
) -> Volume:
    """:func:`grid_of` from a layer's parts, for npe2 writers that get ``(data, meta)``
    (pass ``meta``'s rotate, shear and affine too, so a layer placed with them exports
    where it is shown)."""
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
    matrix = _layer_affine(scale, translate, name, rotate, shear, affine)
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        raise VolumeError(f"{name}: the layer's transform is singular; cannot place it on a grid")
    # napari's own New labels copies an image's transform but not its metadata: over an
    # oblique or permuted scan the transform is not the scan's grid, the image's record is
    borrowed = _overlaid(array.shape, matrix, others)
    if borrowed is not None:  # the image's grid and header (its source file is the image's)
        grid, header = borrowed
        return Volume(array, np.asarray(grid["affine"], dtype=float), None, header)
    return Volume(array, matrix)


def grid_of(layer: Any, others: Iterable[Any] = ()) -> Volume:
    """The layer's data on its grid: the recorded source grid when it still fits the data,
    else that of a layer in ``others`` it overlays voxel for voxel (an image the plugin
    opened), else the grid napari's transform of the layer gives (voxel -> world, as RAS)."""
    return grid_from_parts(
        layer.data,
        getattr(layer, "metadata", None),
        getattr(layer, "scale", None),
        getattr(layer, "translate", None),
        _layer_name(layer),
        rotate=getattr(layer, "rotate", None),
        shear=getattr(layer, "shear", None),
        affine=getattr(layer, "affine", None),
        others=[o for o in others if o is not layer],
    )


def _extra_transforms(layer: Any) -> dict[str, Any]:
    """The layer's rotate, shear and affine where they are not the identity, so a layer
    made to overlay it (e.g. one napari's own reader placed with ``affine=``) does."""
    extra: dict[str, Any] = {}
    for key in ("rotate", "shear", "affine"):
        value = _matrix(getattr(layer, key, None), _layer_name(layer), key)
        if value is None or value.size == 0:
            continue
        # napari's shear is upper-triangular values (zeros) or a unit-diagonal matrix
        identity = np.zeros(value.shape) if value.ndim == 1 else np.eye(len(value))
        if not np.allclose(value, identity, rtol=0, atol=1e-12):
            extra[key] = value.copy()
    return extra


def same_grid_kwargs(layer: Any, name: str) -> dict[str, Any]:
    """Keyword arguments for a new layer that overlays `layer` in napari's world (same scale
    and translate, and its rotate, shear and affine when it has them) and exports on its grid."""
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
        **_extra_transforms(layer),
    }


def on_grid(source: Volume, like: Volume) -> Volume:
    """`source`'s voxels moved onto `like`'s grid by RAS position (nearest voxel; 0 outside
    `source`), so a mask painted on one scan of a patient can be written on another scan's
    grid (e.g. a mask drawn on an RAS NIfTI, saved on the DICOM's LPS grid). Grids that share
    their voxel centres (flipped or permuted axes) map voxel for voxel, exactly."""
    to_source = np.linalg.inv(source.affine) @ like.affine
    out = np.zeros(like.shape, dtype=source.array.dtype)
    j, k = np.meshgrid(np.arange(like.shape[1]), np.arange(like.shape[2]), indexing="ij")
    plane = np.stack([np.zeros_like(j), j, k], axis=-1).reshape(-1, 3).astype(float)
    limits = np.asarray(source.shape)
    for i in range(like.shape[0]):  # one plane at a time: bounded memory on large volumes
        plane[:, 0] = i
        index = np.floor(plane @ to_source[:3, :3].T + to_source[:3, 3] + 0.5).astype(np.int64)
        inside = np.all((index >= 0) & (index < limits), axis=1)
        values = np.zeros(len(plane), dtype=out.dtype)
        values[inside] = source.array[tuple(index[inside].T)]
        out[i] = values.reshape(like.shape[1], like.shape[2])
    return Volume(out, like.affine.copy(), like.path, like.header)


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


def export_layer(
    layer: Any, path: str | Path, overwrite: bool = False, like: Any = None, others: Any = ()
) -> Path:
    """Write the layer to NIfTI on its source grid (see :func:`grid_of` for ``others``), or on
    layer `like`'s grid (moved there by RAS position, see :func:`on_grid`); returns the path.

    A path without a suffix gets ``.nii.gz``. Existing files are kept unless `overwrite`,
    so a click cannot silently replace someone's segmentation.
    """
    out = _nifti_path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another name or allow overwrite")
    grid = grid_of(layer, others)
    if like is not None:
        grid = on_grid(grid, grid_of(like, others))
    return write_on_grid(grid, out, labels=is_labels_layer(layer))
