"""napari reader: CT/MRI volumes (NIfTI, MHA/MHD, NRRD/NHDR, DICOM folders) as layers.

Layers sit at their RAS position in millimetres, whatever the file's axis directions (an
LPS NRRD or DICOM series overlays an RAS NIfTI of the same anatomy): ``scale`` is the voxel
spacing signed by each axis's direction and ``translate`` the first voxel's RAS position. The
metadata keep the full source grid (see :mod:`napari_segpl.layers`) so results are written
back exactly on it, oblique ones too, and name the DICOM series read from a folder.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .layers import layer_kwargs
from .volume import NIFTI_EXTENSIONS, SITK_EXTENSIONS, Volume, is_supported, read_volume

SUFFIXES = NIFTI_EXTENSIONS + SITK_EXTENSIONS
#: A file whose name holds one of these words, and whose voxels are whole numbers,
#: opens as a labels layer (e.g. ``case_label.nii.gz``, ``liver_seg.nrrd``, ``mask.mha``).
LABEL_WORDS = ("label", "seg", "mask")
_INT32 = np.iinfo(np.int32)
#: Layer metadata key of the DICOM Series Instance UID a folder's layer was read from.
SERIES_KEY = "segpl_series"

LayerData = tuple[Any, dict[str, Any], str]


def layer_name(path: str | Path) -> str:
    """File name without its (possibly double) volume extension."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _integer_labels(array: np.ndarray) -> np.ndarray | None:
    """`array` as integer labels if every voxel is a whole number, else ``None``."""
    if np.issubdtype(array.dtype, np.integer):
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.floating):
        return None
    # Float label maps are common (e.g. saved by some tools); keep them only if exact.
    if array.min() < _INT32.min or array.max() > _INT32.max:
        return None
    if not np.array_equal(array, np.round(array)):
        return None
    return array.astype(np.int32)


def volume_layer(volume: Volume, name: str) -> LayerData:
    """One layer tuple for `volume`; label-named integer volumes become labels."""
    data = np.asarray(volume.array)
    kwargs = layer_kwargs(volume, name)
    series = getattr(volume, "series_uid", None)
    if series is not None:
        kwargs["metadata"][SERIES_KEY] = str(series)
    note = getattr(volume, "note", "")
    if note:  # e.g. which of several DICOM series was read: shown on the terminal and in napari
        warnings.warn(f"{name}: {note}", UserWarning, stacklevel=2)
    if any(word in name.lower() for word in LABEL_WORDS):
        labels = _integer_labels(data)
        if labels is not None:
            return labels, kwargs, "labels"
    return data, kwargs, "image"


def read_layer(path: str | Path) -> LayerData:
    """One layer from one file or DICOM folder; raises VolumeError for unreadable input."""
    return volume_layer(read_volume(path), layer_name(path))


def reader_function(path: str | Path | list[str | Path]) -> list[LayerData]:
    paths = path if isinstance(path, list | tuple) else [path]
    return [read_layer(p) for p in paths]


def get_reader(path: str | Path | list[str | Path]) -> Callable[..., list[LayerData]] | None:
    """napari hook: a reader for supported volumes, else ``None`` (napari tries others).

    Once the extension is ours the reader raises on bad files instead of declining, so the
    user sees why the file could not be opened rather than "no reader found".
    """
    paths = path if isinstance(path, list | tuple) else [path]
    if not paths or not all(is_supported(p) for p in paths):
        return None
    return reader_function
