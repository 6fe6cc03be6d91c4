"""Inputs at the edges of what the engine can hold: values beyond float32, an empty or
truncated NIfTI, labels beyond int32 (in every command that reads labels), and a failed
multi-layer save. Each is refused in one line that names the user's file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_segpl import _writer
from napari_segpl._writer import SegplWriteError, write_layers
from napari_segpl.cli import main
from napari_segpl.engine import TrainConfig, prepare_data
from napari_segpl.engine.sampling import DataError, Normaliser
from napari_segpl.volume import VolumeError, read_volume


def _save(path: Path, data: np.ndarray, **header: float) -> Path:
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0]))
    if "slope" in header:
        img.header.set_slope_inter(header["slope"], 0.0)
    nib.save(img, str(path))
    return path


def test_values_beyond_float32_are_refused_on_reading(tmp_path):
    data = np.zeros((6, 6, 4))
    data[1, 2, 3] = 1e39  # inf in float32: the z-score would make every voxel NaN
    with pytest.raises(VolumeError, match="beyond float32") as err:
        read_volume(_save(tmp_path / "big.nii.gz", data))
    assert "big.nii.gz" in str(err.value) and "\n" not in str(err.value)
    scaled = np.full((6, 6, 4), 1000, np.int16)  # stored small, scaled past float32 by the header
    with pytest.raises(VolumeError, match="beyond float32"):
        read_volume(_save(tmp_path / "slope.nii.gz", scaled, slope=1e36))


def test_intensities_whose_statistics_overflow_float32_are_a_data_error():
    """Finite in float32, but the sum of squares is not: caught where it happens, for a
    layer in the dock as much as for a file."""
    image = np.full((8, 16, 16), 1e30, np.float32)
    image[::2] = -1e30
    with pytest.raises(DataError, match="too large to normalise"):
        Normaliser().statistics(image)
    labels = np.zeros(image.shape, np.int32)
    labels[2, 4:8, 4:8] = 1
    with pytest.raises(DataError, match="too large to normalise"):
        prepare_data(image, labels, TrainConfig(axis=0, dims=2, patch=16), [2])
    assert Normaliser().statistics(image / 1e25)[1] > 0  # the same image rescaled is fine


def test_an_empty_nifti_is_called_empty(tmp_path):
    path = _save(tmp_path / "zero.nii.gz", np.zeros((20, 0, 12), np.float32))
    with pytest.raises(VolumeError, match="empty volume"):
        read_volume(path)


def test_a_truncated_nifti_is_reported_in_one_line(tmp_path):
    whole = _save(tmp_path / "whole.nii", np.arange(24 * 24 * 10, dtype=np.float32).reshape(
        24, 24, 10))  # fmt: skip
    cut = tmp_path / "cut.nii"
    cut.write_bytes(whole.read_bytes()[:-500])
    with pytest.raises(VolumeError) as err:
        read_volume(cut)
    assert "cut.nii" in str(err.value) and "\n" not in str(err.value)


def test_evaluate_refuses_labels_beyond_int32(tmp_path, capsys):
    truth = np.zeros((6, 6, 4), np.int16)
    truth[2:4, 2:4, 1] = 1
    _save(tmp_path / "truth.nii.gz", truth)
    huge = truth.astype(np.float64)
    huge[0, 0, 0] = 3e9  # within float32, beyond int32
    _save(tmp_path / "pred.nii.gz", huge)
    code = main(["evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "truth.nii.gz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "too large" in err and "pred.nii.gz" in err and len(err) < 300
    assert len(err.splitlines()) == 1


def test_a_failed_layer_in_a_multi_layer_save_is_named_as_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_writer, "_viewer_layers", lambda: [])
    good = np.zeros((4, 5, 6), np.uint8)
    bad = np.full((4, 5, 6), 0.5, np.float32)  # not whole numbers: cannot be labels
    layers = [(good, {"name": "a"}, "labels"), (bad, {"name": "b"}, "labels")]
    with pytest.raises(SegplWriteError) as err:
        write_layers(str(tmp_path / "set"), layers)
    text = str(err.value)
    assert str(tmp_path / "set" / "b.nii.gz") in text and ".part" not in text
    assert not (tmp_path / "set").exists()  # all or nothing, as before
