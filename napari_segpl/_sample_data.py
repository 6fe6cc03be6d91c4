"""napari sample data: two small volumes, each with labels on only three slices.

The files live in ``resources/`` (``napari_segpl/sample-data`` links there; wheels carry a
copy) and are described by ``resources/samples.json``; ``resources/make_samples.py``
made them. ``*_label_full.nii.gz`` hold the complete labels (ground truth for tests).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ._reader import LayerData
from .layers import layer_kwargs
from .volume import Volume, read_labels, read_volume

RESOURCES = Path(__file__).resolve().parent / "sample-data"

#: Display windows for the image layers (CT: a lung window in HU).
CONTRAST = {"lungs_ct": (-1200.0, 400.0)}


@cache
def samples() -> dict[str, dict[str, Any]]:
    """The sample descriptions from ``samples.json``, keyed by sample name."""
    return json.loads((RESOURCES / "samples.json").read_text(encoding="utf-8"))["samples"]


def _load(filename: str) -> Volume:
    # Through read_volume, so sample layers carry the same grid metadata as opened files.
    return read_volume(RESOURCES / filename)


def load_sample(name: str, full_labels: bool = False) -> list[LayerData]:
    """Image and labels layers of sample ``name`` (sparse labels unless ``full_labels``)."""
    info = samples()[name]
    image = _load(info["files"]["image"])
    label_file = info["files"]["label_full" if full_labels else "label_sparse"]
    # Checked to lie on the image grid, so the two layers overlay and export consistently.
    labels = read_labels(RESOURCES / label_file, like=image)

    image_kwargs = layer_kwargs(image, name)
    image_kwargs["metadata"]["segpl_modality"] = info["modality"]
    if name in CONTRAST:
        image_kwargs["contrast_limits"] = CONTRAST[name]

    label_kwargs = layer_kwargs(labels, f"{name} labels")
    label_kwargs["metadata"].update(
        segpl_classes={int(k): v for k, v in info["classes"].items()},
        segpl_labelled_axis=info["axis"],
        segpl_labelled_slices=None if full_labels else list(info["labelled_slices"]),
    )
    return [
        (np.asarray(image.array), image_kwargs, "image"),
        (np.asarray(labels.array).astype(np.uint8), label_kwargs, "labels"),
    ]


def lungs_ct() -> list[LayerData]:
    """Chest CT (HU) with right/left lung labelled on three axial slices."""
    return load_sample("lungs_ct")


def brain_tissue_mri() -> list[LayerData]:
    """Brain T1 MRI template with grey/white matter labelled on three axial slices."""
    return load_sample("brain_tissue_mri")
