"""Labels read against their image, and write_nifti's refusals (split from test_volume.py)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_volume import image_data, oblique_affine, save_nifti

from napari_segpl.volume import (
    Volume,
    VolumeError,
    check_labels,
    is_supported,
    read_labels,
    read_volume,
    write_nifti,
)

# -------------------------------------------------------------------------- labels


@pytest.fixture
def image(tmp_path) -> Volume:
    return read_volume(save_nifti(tmp_path / "image.nii.gz", image_data(), oblique_affine()))


def label_error(tmp_path: Path, image: Volume, data: np.ndarray, affine=None) -> str:
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(data, image.affine if affine is None else affine), str(path))
    with pytest.raises(VolumeError) as info:
        read_labels(path, image)
    assert "labels.nii.gz" in str(info.value)
    return str(info.value)


def test_labels_shape_mismatch(tmp_path, image):
    message = label_error(tmp_path, image, np.zeros((6, 7, 4), np.uint8))
    assert "(6, 7, 4)" in message and "(6, 7, 5)" in message


def test_labels_affine_mismatch(tmp_path, image):
    shifted = image.affine.copy()
    shifted[0, 3] += 0.5
    assert "affine" in label_error(tmp_path, image, np.zeros(image.shape, np.uint8), shifted)


def test_labels_non_integer(tmp_path, image):
    data = np.zeros(image.shape, np.float32)
    data[0, 0, :3] = 0.5
    assert "3 voxels" in label_error(tmp_path, image, data)


def test_labels_negative(tmp_path, image):
    data = np.zeros(image.shape, np.int16)
    data[1, 1, 1] = -1
    assert "negative" in label_error(tmp_path, image, data)


def test_float_labels_become_int32(tmp_path, image):
    data = np.zeros(image.shape, np.float32)
    data[2, 3, 4] = 2.0
    path = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(data, image.affine), str(path))
    labels = read_labels(path, image)
    assert labels.array.dtype == np.int32
    assert labels.array[2, 3, 4] == 2 and labels.array.sum() == 2


def test_check_labels_rejects_nan_in_memory(image):
    data = np.zeros(image.shape, np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(VolumeError, match="1 NaN"):
        check_labels(image.with_array(data), image)


# --------------------------------------------------------------------- write errors


def test_write_nifti_wrong_shape_writes_nothing(tmp_path, image):
    target = tmp_path / "sub" / "mask.nii.gz"
    with pytest.raises(VolumeError, match="mask.nii.gz"):
        write_nifti(np.zeros((2, 2, 2), np.uint8), image, target)
    assert not target.exists() and not target.parent.exists()


def test_write_nifti_wrong_extension(tmp_path, image):
    with pytest.raises(VolumeError, match=r"mask\.mha"):
        write_nifti(np.zeros(image.shape, np.uint8), image, tmp_path / "mask.mha")


def test_with_array_checks_shape(image):
    other = image.with_array(np.ones(image.shape, np.uint8))
    np.testing.assert_array_equal(other.affine, image.affine)
    assert other.header is image.header
    with pytest.raises(VolumeError):
        image.with_array(np.ones((1, 2, 3)))


def test_is_supported_extensions(tmp_path):
    for name in ["a.nii", "a.NII.GZ", "a.mha", "a.mhd", "a.nrrd"]:
        assert is_supported(tmp_path / name)
    assert not is_supported(tmp_path / "a.png")
