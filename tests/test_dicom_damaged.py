"""A damaged DICOM file in a series folder: GDCM drops a file it cannot parse without a word,
so the series was read a slice short (or refused as unevenly spaced, naming no file). The
folder is refused, naming the file; files that are no DICOM image do not count. ITK's own
multi-line warnings stay off the terminal: the project's one-line refusal is what shows."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_dicom_series import LONG, SHORT, STUDY, write_series

from napari_segpl.cli import main
from napari_segpl.volume import VolumeError, read_volume

UID = "1.2.3.9"
PIXEL_DATA = b"\xe0\x7f\x10\x00"  # the Pixel Data tag (7FE0,0010), little endian


def _slices(n: int, side: int = 32) -> np.ndarray:
    """``n`` small int16 slices whose pixel data (2 bytes a pixel) outlasts a 300-byte cut."""
    return (np.arange(n * side * side, dtype=np.int16).reshape(n, side, side) % 50) - 20


def _truncate(path: Path, cut: int = 300) -> None:
    """Cut the end off a file, as an interrupted copy or download does."""
    path.write_bytes(path.read_bytes()[:-cut])


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """One explicit-VR little-endian element (value padded to even length)."""
    value += b"\0" * (len(value) % 2)
    tag = struct.pack("<HH", group, elem) + vr
    if vr in (b"OB", b"SQ", b"UN", b"UT"):
        return tag + b"\0\0" + struct.pack("<I", len(value)) + value
    return tag + struct.pack("<H", len(value)) + value


UNDEFINED = b"\xff\xff\xff\xff"
ITEM, ITEM_END, SEQUENCE_END = (struct.pack("<HH", 0xFFFE, e) for e in (0xE000, 0xE00D, 0xE0DD))


def _report(path: Path, sop_class: str, series: str) -> None:
    """A whole DICOM object without an image (a structured report, a DICOMDIR): GDCM lists it
    in no series, and it is no damaged slice. Its content sequence, of undefined length as
    scanners write it, holds text with the bytes of the Pixel Data tag."""
    syntax = b"1.2.840.10008.1.2.1"  # explicit VR little endian
    meta = _element(2, 2, b"UI", sop_class.encode()) + _element(2, 0x10, b"UI", syntax)
    body = _element(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
    body += _element(8, 0x16, b"UI", sop_class.encode()) + _element(8, 0x60, b"CS", b"SR")
    body += _element(0x20, 0xD, b"UI", STUDY.encode()) + _element(0x20, 0xE, b"UI", series.encode())
    text = _element(0x40, 0xA160, b"UT", b"dose " + PIXEL_DATA + b" mGy")
    content = ITEM + UNDEFINED + text + ITEM_END + bytes(4) + SEQUENCE_END + bytes(4)
    body += struct.pack("<HH", 0x40, 0xA730) + b"SQ\0\0" + UNDEFINED + content
    path.write_bytes(bytes(128) + b"DICM" + body)


def test_a_truncated_last_slice_is_named_not_dropped(tmp_path):
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(4), "ct")
    last = sorted(folder.iterdir())[-1]
    _truncate(last)
    with pytest.raises(VolumeError) as info:
        read_volume(folder)  # before: a 3-slice volume for a 4-file folder
    message = str(info.value)
    assert f"DICOM file {last.name} could not be read" in message and str(folder) in message
    assert "damaged" in message and "\n" not in message


@pytest.mark.parametrize("cut", [300, 2300])  # into the pixels; into the header, before them
def test_a_truncated_middle_slice_is_named_not_called_a_gap(tmp_path, cut):
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(4), "ct")
    middle = sorted(folder.iterdir())[1]
    _truncate(middle, cut)
    assert PIXEL_DATA not in middle.read_bytes() or cut == 300
    with pytest.raises(VolumeError) as info:
        read_volume(folder)
    message = str(info.value)
    assert f"DICOM file {middle.name} could not be read" in message
    assert "evenly spaced" not in message


def test_several_damaged_files_are_counted_and_the_first_named(tmp_path):
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(8, side=16), "ct")  # 512 bytes of pixels a slice
    damaged = sorted(folder.iterdir())[2:]
    for path in damaged:
        _truncate(path)
    with pytest.raises(VolumeError) as info:
        read_volume(folder)  # before: the 2 slices left were read
    message = str(info.value)
    assert "6 DICOM files" in message and "and 1 more" in message
    assert all(p.name in message for p in damaged[:5]) and damaged[5].name not in message


def test_a_folder_of_one_damaged_file_names_it(tmp_path):
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(1), "ct")
    (only,) = folder.iterdir()
    _truncate(only)
    with pytest.raises(VolumeError, match=f"DICOM file {only.name} could not be read"):
        read_volume(folder)  # before: "no DICOM series found in folder"


def test_files_that_are_no_dicom_image_do_not_count(tmp_path):
    """A scanner export holds a DICOMDIR (whose icons carry Pixel Data), reports without an
    image, notes and macOS ._ copies beside two series: only the damaged slice is named, and
    without it the folder reads as before, the series with the most slices."""
    folder = tmp_path / "study"
    write_series(folder, SHORT, _slices(3), "scout")
    write_series(folder, LONG, _slices(6), "thin recon")
    dicomdir = folder / "DICOMDIR"
    _report(dicomdir, "1.2.840.10008.1.3.10", "9.9")
    dicomdir.write_bytes(dicomdir.read_bytes() + PIXEL_DATA + bytes(8))  # as an icon's would
    _report(folder / "SR0001", "1.2.840.10008.5.1.4.1.1.88.11", "1.2.3.10")
    (folder / "notes.txt").write_text("dose report follows")
    (folder / "README.dcm").write_text("not an image")
    for path in sorted(folder.glob("*.dcm"))[:3]:
        (folder / f"._{path.name}").write_bytes(path.read_bytes()[:-300])  # same bytes, hidden
    damaged = sorted(folder.glob("1_*.dcm"))[1]  # a scout slice: its count decides no choice
    _truncate(damaged)
    with pytest.raises(VolumeError) as info:
        read_volume(folder)
    message = str(info.value)
    assert f"DICOM file {damaged.name} could not be read" in message
    for other in ("DICOMDIR", "SR0001", "notes.txt", "README.dcm", "._"):
        assert other not in message
    damaged.unlink()
    vol = read_volume(folder)
    assert vol.shape == (32, 32, 6) and vol.series_uid == LONG
    assert SHORT in vol.note and "2 slices" in vol.note


def test_the_cli_refuses_a_damaged_folder_in_one_line(tmp_path, capsys):
    """The image is read before the labels: the damaged file is what the user is told of."""
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(4), "ct")
    last = sorted(folder.iterdir())[-1]
    _truncate(last)
    args = ["train", str(folder), str(tmp_path / "labels.nii.gz"), "--model", str(tmp_path / "m")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert f"DICOM file {last.name} could not be read" in err and "\n" not in err


def test_itk_says_nothing_of_a_missing_slice_and_its_setting_is_kept(tmp_path, capfd):
    """ITK prints a two-line "Non uniform sampling" warning before our refusal; only ours."""
    folder = tmp_path / "gap"
    write_series(folder, UID, _slices(5, side=8), "gap")
    sorted(folder.iterdir())[2].unlink()
    before = sitk.ProcessObject.GetGlobalWarningDisplay()
    try:
        for display in (True, False):
            sitk.ProcessObject.SetGlobalWarningDisplay(display)
            with pytest.raises(VolumeError, match="not evenly spaced"):
                read_volume(folder)
            assert sitk.ProcessObject.GetGlobalWarningDisplay() is display
            err = capfd.readouterr().err
            assert "Non uniform sampling" not in err and "WARNING" not in err
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(before)


def _non_image(path: Path, sop_class: str, modality: str, series: str) -> None:
    """A whole DICOM object without an image, as pydicom writes one: no Rows, no Pixel Data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = modality, STUDY, series
    item = Dataset()
    item.ValueType, item.TextValue = "TEXT", "CTDIvol 12.3 mGy"
    ds.ContentSequence = [item]
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize(
    "sop_class, modality",
    [("1.2.840.10008.5.1.4.1.1.88.67", "SR"), ("1.2.840.10008.5.1.4.1.1.11.1", "PR")],
)  # an X-ray dose report; a presentation state
def test_a_whole_non_image_object_is_no_damage(tmp_path, sop_class, modality):
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(4), "ct")
    _non_image(folder / f"{modality}_dose.dcm", sop_class, modality, "1.2.3.11")
    vol = read_volume(folder)
    assert vol.shape == (32, 32, 4) and vol.series_uid == UID


def test_pydicom_says_nothing_of_a_slice_cut_in_its_uids(tmp_path, caplog, capfd):
    """A cut inside a UID value makes pydicom warn and log "Invalid value for VR UI"; only the
    project's one-line refusal shows, and pydicom's logger keeps its level."""
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(4), "ct")
    cut = sorted(folder.iterdir())[2]
    cut.write_bytes(cut.read_bytes()[:360])  # into the SOP Class UID, after the meta header
    caplog.set_level(logging.DEBUG, logger="pydicom")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(VolumeError, match=f"DICOM file {cut.name} could not be read"):
            read_volume(folder)
    assert not [w for w in seen if "pydicom" in w.filename]
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    assert pydicom.config.logger.level == logging.DEBUG
    assert "Invalid value" not in capfd.readouterr().err


def test_the_dicom_module_loads_pydicom_only_to_probe_a_file():
    code = "import sys, napari_segpl.dicom; print('pydicom' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _shorten_pixels(path: Path, keep: int) -> None:
    """Rewrite a slice's Pixel Data with only ``keep`` bytes and an honest length: a whole file
    GDCM still lists, and read with wrong values."""
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[:keep]
    ds.save_as(path)


def test_a_listed_slice_with_short_pixels_is_named_not_read_wrong(tmp_path, monkeypatch):
    """Before, the series was read, the slice's missing pixels made up. Headers are read with
    the Pixel Data left on disk."""
    folder = tmp_path / "series"
    write_series(folder, UID, _slices(4), "ct")
    short = sorted(folder.iterdir())[1]
    _shorten_pixels(short, 1500)  # of 2048: still more than pydicom is told to read
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), UID)) == 4
    loaded = []
    monkeypatch.setattr(pydicom.filereader, "read_deferred_data_element", loaded.append)
    with pytest.raises(VolumeError) as info:
        read_volume(folder)
    message = str(info.value)
    assert f"DICOM file {short.name} could not be read" in message and str(folder) in message
    assert "damaged" in message and "\n" not in message
    assert loaded == []


def test_short_pixels_in_the_series_not_read_do_not_stop_the_read(tmp_path):
    """The file is known to be no slice of the series read, unlike one GDCM dropped."""
    folder = tmp_path / "study"
    write_series(folder, SHORT, _slices(3), "scout")
    write_series(folder, LONG, _slices(6), "thin recon")
    short = sorted(folder.glob("1_*.dcm"))[1]
    _shorten_pixels(short, 1000)
    vol = read_volume(folder)
    assert vol.shape == (32, 32, 6) and vol.series_uid == LONG
    np.testing.assert_array_equal(vol.array, _slices(6).transpose(2, 1, 0))
    with pytest.raises(VolumeError, match=f"DICOM file {short.name} could not be read"):
        read_volume(folder, series=SHORT)
