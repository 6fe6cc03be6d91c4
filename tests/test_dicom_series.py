"""A DICOM folder holding several series: the one with the most slices is read and named,
another can be asked for by UID, and a UID not there lists the series that are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_segpl.cli import main
from napari_segpl.volume import VolumeError, is_supported, read_volume, write_nifti

STUDY = "1.2.826.0.1.3680043.2.1125.7"
# GDCM lists series in UID order: the short series comes first, so a reader taking the
# first series reads the wrong one.
SHORT, LONG = f"{STUDY}.1", f"{STUDY}.2"


def write_series(
    folder: Path, uid: str, volume_zyx: np.ndarray, description: str, z0: float = 0.0
) -> None:
    """One axial series, slice by slice, with the tags a scanner sets (files prefixed by uid)."""
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k, plane in enumerate(volume_zyx):
        sl = sitk.GetImageFromArray(plane)
        sl.SetSpacing((0.5, 0.5))  # the writer fills Pixel Spacing from the image
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.{k + 1}",
            "0008|103e": description,
            "0020|000d": STUDY,
            "0020|000e": uid,
            "0020|0032": f"0\\0\\{z0 + 2.0 * k:.4f}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": "0.5\\0.5",
            "0018|0050": "2.0",
            "0020|0013": str(k + 1),
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{uid[-1]}_{k:03d}.dcm"))
        writer.Execute(sl)


@pytest.fixture
def two_series(tmp_path):
    """A folder with a 3-slice series of 100s and a 6-slice series of a ramp."""
    folder = tmp_path / "study"
    short = np.full((3, 20, 21), 100, np.int16)
    long = (np.arange(6 * 20 * 21, dtype=np.int16).reshape(6, 20, 21) % 500) - 200
    write_series(folder, SHORT, short, "scout")
    write_series(folder, LONG, long, "thin recon")
    return folder, short, long


def test_the_series_with_most_slices_is_read_and_named(two_series):
    folder, _, long = two_series
    vol = read_volume(folder)
    assert vol.shape == (21, 20, 6)  # (x, y, z) of the 6-slice series
    np.testing.assert_array_equal(vol.array, long.transpose(2, 1, 0))
    assert vol.series_uid == LONG
    for fragment in (LONG, "6 slices", "thin recon", SHORT, "3 slices", "scout"):
        assert fragment in vol.note
    assert "\n" not in vol.note


def test_a_series_is_chosen_by_uid(two_series):
    folder, short, _ = two_series
    vol = read_volume(folder, series=SHORT)
    assert vol.shape == (21, 20, 3) and vol.series_uid == SHORT
    np.testing.assert_array_equal(vol.array, short.transpose(2, 1, 0))
    assert vol.spacing == pytest.approx((0.5, 0.5, 2.0), abs=1e-4)


def test_a_missing_series_lists_those_present(two_series):
    folder, _, _ = two_series
    with pytest.raises(VolumeError) as info:
        read_volume(folder, series="1.2.3.999")
    message = str(info.value)
    assert "1.2.3.999" in message
    for fragment in (SHORT, "3 slices", "scout", LONG, "6 slices", "thin recon"):
        assert fragment in message


def test_one_series_has_no_note_and_series_needs_a_folder(tmp_path):
    folder = tmp_path / "one"
    write_series(folder, LONG, np.zeros((2, 4, 4), np.int16), "")
    vol = read_volume(folder)
    assert vol.series_uid == LONG and vol.note == ""
    nifti = write_nifti(vol.array, vol, tmp_path / "v.nii.gz")
    assert read_volume(nifti).series_uid is None
    with pytest.raises(VolumeError, match="DICOM folder"):
        read_volume(nifti, series=LONG)


FAST = ["--steps", "2", "--patch", "32", "--channels", "4", "--ratio", "1", "--quiet"]
FAST += ["--dims", "2", "--preset", "paper", "--device", "cpu"]


def test_cli_names_the_series_and_lets_the_user_choose(two_series, tmp_path, capsys):
    folder, short, _ = two_series
    # labels on the short series' grid: slice 1 painted
    grid = read_volume(folder, series=SHORT)
    labels = np.zeros(grid.shape, np.uint8)
    labels[4:12, 5:14, 1] = 1
    lab = write_nifti(labels, grid, tmp_path / "labels.nii.gz")
    model, mask = tmp_path / "m.pt", tmp_path / "mask.nii.gz"
    args = ["train", str(folder), str(lab), "--model", str(model), *FAST]
    # without --series the 6-slice series is read, which the labels do not fit; told so
    assert main(args) == 2
    err = capsys.readouterr().err
    assert LONG in err and "6 slices" in err and "shape" in err
    assert main([*args, "--series", SHORT, "--mask", str(mask)]) == 0
    err = capsys.readouterr().err
    assert f"read {SHORT}" in err
    assert read_volume(mask).shape == (21, 20, 3)
    # predict: a series not in the folder is listed, before any prediction
    predict = ["predict", str(model), str(folder), "--mask", str(tmp_path / "p.nii.gz")]
    assert main([*predict, "--series", "9.9.9"]) == 2
    err = capsys.readouterr().err
    assert "9.9.9" in err and SHORT in err and LONG in err
    assert not (tmp_path / "p.nii.gz").exists()
    assert main([*predict, "--series", SHORT]) == 0
    assert read_volume(tmp_path / "p.nii.gz").shape == (21, 20, 3)


def test_a_series_with_a_missing_slice_is_refused(tmp_path):
    """ITK puts unevenly spaced slices on a regular grid with only a terminal warning: a mask
    exported there would lie off the scan's slices (here by up to 1 mm)."""
    folder = tmp_path / "gap"
    volume = (np.arange(6 * 8 * 9, dtype=np.int16).reshape(6, 8, 9) % 50) - 20
    write_series(folder, "1.2.3.9", volume, "gap")
    assert read_volume(folder).shape == (9, 8, 6)  # evenly spaced: read
    sorted(folder.iterdir())[2].unlink()
    with pytest.raises(VolumeError) as info:
        read_volume(folder)
    message = str(info.value)
    assert "not evenly spaced" in message and "2.00 to 4.00 mm" in message
    assert "1.00 mm off" in message and "\n" not in message


def test_a_dicom_folder_is_found_behind_many_hidden_files(tmp_path):
    """macOS leaves a ._ file beside each file copied to some drives; they sort first."""
    folder = tmp_path / "series"
    write_series(folder, "1.2.3.7", np.zeros((3, 8, 9), np.int16), "copied")
    for k, path in enumerate(sorted(folder.iterdir())):  # scanner names: IM0000, no extension
        path.rename(folder / f"IM{k:04d}")
    for k in range(70):  # AppleDouble files are no DICOM
        (folder / f"._IM{k:04d}").write_bytes(bytes(256))
    assert is_supported(folder)
    assert read_volume(folder).shape == (9, 8, 3)


def test_a_folder_without_dicom_gives_one_line_and_no_itk_warning(tmp_path, capfd):
    """GDCM's scan prints a multi-line C++ warning on standard error; only our line shows, and
    ITK's warning setting is left as it was."""
    from napari_segpl.dicom import DicomError, list_series

    (tmp_path / "notes.txt").write_text("not an image")
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    with pytest.raises(DicomError, match="no DICOM series found"):
        list_series(tmp_path)
    assert "No Series were found" not in capfd.readouterr().err
    assert sitk.ProcessObject.GetGlobalWarningDisplay() == before
