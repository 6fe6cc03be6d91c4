"""Exporting a labels layer: an existing file is never overwritten unless asked, and only
NIfTI is written."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from napari.layers import Labels

from napari_segpl.layers import export_layer
from napari_segpl.volume import VolumeError

SHAPE = (12, 10, 6)


def test_export_refuses_overwrite_and_other_formats(tmp_path: Path) -> None:
    layer = Labels(np.ones(SHAPE, np.uint8))
    target = tmp_path / "mask.nii.gz"
    export_layer(layer, target)
    layer.data[0, 0, 0] = 3
    with pytest.raises(FileExistsError, match="mask.nii.gz"):
        export_layer(layer, target)
    assert nib.load(target).get_fdata()[0, 0, 0] == 1
    export_layer(layer, target, overwrite=True)
    assert nib.load(target).get_fdata()[0, 0, 0] == 3
    with pytest.raises(VolumeError, match=r"\.nii or \.nii\.gz"):
        export_layer(layer, tmp_path / "mask.mha")
