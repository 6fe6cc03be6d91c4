"""napari reader: CT/MRI volumes (NIfTI, MHA/MHD, NRRD/NHDR, DICOM folders) as layers.

Layers carry their physical geometry: ``scale`` is the voxel spacing, ``translate`` the
position of voxel (0, 0, 0), and ``metadata["segpl_affine"]`` the full voxel -> RAS (mm)
affine so that results can be written back on the source grid.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .volume import NIFTI_EXTENSIONS, SITK_EXTENSIONS, is_supported, read_volume

SUFFIXES = NIFTI_EXTENSIONS + SITK_EXTENSIONS
LABEL_WORDS = ("label", "seg")

LayerData = tuple[Any, dict[str, Any], str]


def _name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_integer_valued(array: np.ndarray) -> bool:
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return True
    return np.issubdtype(array.dtype, np.floating) and bool(np.all(np.mod(array, 1) == 0))


def layer_kwargs(name: str, affine: np.ndarray, source: str | Path) -> dict[str, Any]:
    """Layer keyword arguments that place a volume in physical space (mm)."""
    affine = np.asarray(affine, dtype=float)
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return {
        "name": name,
        "scale": tuple(float(s) for s in spacing),
        "translate": tuple(float(t) for t in affine[:3, 3]),
        "metadata": {"segpl_affine": affine.tolist(), "segpl_source": str(source)},
    }


def read_layer(path: str | Path) -> LayerData:
    """One layer from one volume; label-like files with integer data become a labels layer."""
    path = Path(path)
    volume = read_volume(path)
    name = _name(path)
    kwargs = layer_kwargs(name, volume.affine, path)
    kwargs["scale"] = tuple(float(s) for s in volume.spacing)
    data = np.asarray(volume.array)
    is_label_name = any(word in name.lower() for word in LABEL_WORDS)
    if is_label_name and _is_integer_valued(data):
        if not np.issubdtype(data.dtype, np.integer):
            data = data.astype(np.int32)
        return data, kwargs, "labels"
    return data, kwargs, "image"


def reader_function(path: str | Path | list[str | Path]) -> list[LayerData]:
    paths = path if isinstance(path, list) else [path]
    return [read_layer(p) for p in paths]


def get_reader(path: str | Path | list[str | Path]) -> Callable[..., list[LayerData]] | None:
    """napari hook: a reader for supported volumes, else ``None`` (napari tries others)."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(is_supported(p) for p in paths):
        return None
    return reader_function
