"""DICOM folders: which series a folder holds, and reading one of them.

A folder exported from a scanner often holds several series (a scout, the thin and the thick
reconstruction). Reading whichever came first silently would segment the wrong images, so
the series with the most slices is read unless one is asked for by its UID, and the choice is
described in a note front ends show.

This module must stay free of Qt, napari and torch so it can be used headless.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from .itk_messages import itk_reason

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["DicomError", "DicomSeries", "list_series", "read_series"]

_DESCRIPTION_TAG = "0008|103e"
#: Pixel Data in its three forms: an image without any was cut before its pixels.
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: How many damaged files a refusal names before it only counts the rest.
_NAMED_AT_MOST = 5
#: Values longer than this (Pixel Data) pydicom leaves on disk: a slice's header is all we need.
_DEFER_BYTES = 1024
_UNDEFINED = 0xFFFFFFFF
_DEFLATED = "1.2.840.10008.1.2.1.99"


class DicomError(ValueError):
    """A folder without a readable DICOM series, or without the series asked for."""


@dataclass(frozen=True)
class DicomSeries:
    """One series in a folder: its Series Instance UID, files in slice order, description."""

    uid: str
    files: tuple[str, ...]
    description: str = ""

    def __str__(self) -> str:
        words = [f"{len(self.files)} slices"]
        if self.description:
            words.append(repr(self.description))
        return f"{self.uid} ({', '.join(words)})"


def _description(first_file: str) -> str:
    """The Series Description of a series, from its first file's header only."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(first_file)
    try:
        reader.ReadImageInformation()
        if reader.HasMetaDataKey(_DESCRIPTION_TAG):
            return reader.GetMetaData(_DESCRIPTION_TAG).strip()
    except Exception:  # a description is a courtesy: an odd header must not stop the read
        pass
    return ""


def list_series(folder: str | Path) -> list[DicomSeries]:
    """Every series in ``folder`` (not its subfolders), in the order GDCM reports them."""
    folder = str(folder)
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's multi-line "No Series were found"
    try:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder)
        series = []
        for uid in uids:
            files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid))
            if files:
                series.append(DicomSeries(uid, files, _description(files[0])))
    except Exception as exc:
        raise DicomError(f"{folder}: cannot scan folder for DICOM ({itk_reason(exc)})") from exc
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    if not series:
        check_no_damaged_files(folder, series)  # a lone damaged file is named, not "no series"
        raise DicomError(f"{folder}: no DICOM series found in folder")
    return series


def _short_pixels(ds: Dataset, size: int) -> bool:
    """Native Pixel Data shorter than Rows x Columns x samples x frames x bits allocated: cut
    off by a truncated file (``size`` bytes) or rewritten short with an honest length."""
    try:
        syntax = ds.file_meta.get("TransferSyntaxUID")
        if syntax is not None and syntax.is_encapsulated:
            return False  # compressed frames: their size says nothing of the image's
        frames = int(ds.get("NumberOfFrames") or 1)
        bits = ds.Rows * ds.Columns * ds.get("SamplesPerPixel", 1) * frames * ds.BitsAllocated
        try:  # the raw element: a deferred value stays on disk
            elem = ds.get_item("PixelData", keep_deferred=True)
        except TypeError:  # pydicom 2 has no keep_deferred and reads the value: slower, as right
            elem = ds.get_item("PixelData")
    except (AttributeError, TypeError, ValueError):
        return False  # a private syntax, an attribute missing or odd: no size to compare with
    if getattr(elem, "is_undefined_length", False) or getattr(elem, "length", 0) == _UNDEFINED:
        return False  # undefined length: frames, whatever the syntax says
    if elem.value is not None:
        return len(elem.value) < (bits + 7) // 8
    inflated = syntax == _DEFLATED  # offsets are in the inflated bytes: trust the length
    have = elem.length if inflated else min(elem.length, size - elem.value_tell)
    return have < (bits + 7) // 8


def _cut_short(ds: Dataset, size: int) -> bool:
    """An image whose Pixel Data is missing or short. pydicom reads a truncated file without a
    word, so an image is known by Rows/Columns or, cut before those, by its SOP class."""
    sops = (ds.get("SOPClassUID"), ds.file_meta.get("MediaStorageSOPClassUID"))
    image = "Rows" in ds or "Columns" in ds or any("Image Storage" in s.name for s in sops if s)
    if not image:
        return False  # a structured report, dose report or presentation state: whole as it is
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        return True  # cut before its pixels
    return "PixelData" in ds and _short_pixels(ds, size)


def _is_damaged(path: Path, listed: bool) -> bool:
    """True for a DICOM image slice that cannot be read whole. GDCM leaves a whole non-image
    object out of every series, rightly: no damage. A file a series lists (``listed``) GDCM
    parsed: only short or missing pixels count, which GDCM would read as wrong values."""
    import pydicom  # here, not at the top: only reading a folder needs it

    named = listed or path.suffix.lower() == ".dcm"
    magic = None
    logger = pydicom.config.logger
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)  # pydicom logs each odd value; the refusal says it
    try:
        with path.open("rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fh.seek(128)
            magic = fh.read(4) == b"DICM"  # a DICOM Part 10 file
            if not (magic or named):
                return False  # neither the magic nor a .dcm name: not a file a slice could be
            fh.seek(0)
            ds = pydicom.dcmread(fh, defer_size=_DEFER_BYTES, force=not magic)
            size = os.fstat(fh.fileno()).st_size
            return (magic and len(ds) == 0) or _cut_short(ds, size)  # no dataset: cut in header
    except Exception:  # InvalidDicomError, EOFError, struct.error, ValueError, OSError, ...
        if magic is None:
            return named  # a DICOM file we cannot open or read cannot be read as a slice
        return magic and not listed  # without the magic only a .dcm name said DICOM: a note
    finally:
        logger.setLevel(level)


def damaged_files(
    folder: str | Path, series: list[DicomSeries], chosen: DicomSeries | None = None
) -> list[str]:
    """Names of the damaged DICOM images in ``folder``: those no series lists (GDCM drops a file
    it cannot parse without a word, so a truncated slice would silently vanish from the scan)
    and those of ``chosen``, which GDCM lists even with short Pixel Data and reads wrong.
    Hidden files (macOS ._ copies), DICOMDIR and non-image DICOM objects do not count."""
    listed = {Path(name).name for s in series for name in s.files}
    read = {Path(name).name for name in chosen.files} if chosen is not None else set()
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return []
    return [
        entry.name
        for entry in entries
        if (entry.name in read or entry.name not in listed)
        and not entry.name.startswith(".")
        and entry.name.upper() != "DICOMDIR"
        and entry.is_file()
        and _is_damaged(entry, listed=entry.name in read)
    ]


def check_no_damaged_files(
    folder: str | Path, series: list[DicomSeries], chosen: DicomSeries | None = None
) -> None:
    """Refuse a folder with a damaged DICOM image: one no series lists may be a slice of the
    series read, which would then be read a slice short (or refused as unevenly spaced, without
    saying why); one ``chosen`` lists would be read with wrong values."""
    names = damaged_files(folder, series, chosen)
    if not names:
        return
    why = "(damaged or not DICOM?), so the folder was not read"
    if len(names) == 1:
        raise DicomError(f"{folder}: DICOM file {names[0]} could not be read {why}")
    listed = ", ".join(names[:_NAMED_AT_MOST])
    more = f" and {len(names) - _NAMED_AT_MOST} more" if len(names) > _NAMED_AT_MOST else ""
    raise DicomError(f"{folder}: {len(names)} DICOM files ({listed}{more}) could not be read {why}")


def choose_series(folder: str | Path, series: list[DicomSeries], uid: str | None) -> DicomSeries:
    """The series asked for, else the one with the most slices (the first of equals)."""
    if uid is None:
        return max(series, key=lambda s: len(s.files))  # max keeps the first of equals
    for candidate in series:
        if candidate.uid == uid:
            return candidate
    listing = "; ".join(str(s) for s in series)
    raise DicomError(f"{folder}: no DICOM series {uid} in this folder; it holds: {listing}")


def read_series(folder: str | Path, uid: str | None = None) -> tuple[sitk.Image, str, str]:
    """Read one series of ``folder``: returns the image, its UID and a one-line note naming
    what was read when the folder holds several series (else an empty note)."""
    series = list_series(folder)
    chosen = choose_series(folder, series, uid)
    check_no_damaged_files(folder, series, chosen)
    reader = sitk.ImageSeriesReader()
    reader.MetaDataDictionaryArrayUpdateOn()  # each file's position, for check_even_spacing
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # check_even_spacing says it in one line
    try:
        reader.SetFileNames(list(chosen.files))
        image = reader.Execute()
    except Exception as exc:
        raise DicomError(
            f"{folder}: cannot read DICOM series {chosen.uid} ({itk_reason(exc)})"
        ) from exc
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
    check_even_spacing(folder, chosen, reader, image)
    note = ""
    if len(series) > 1:
        others = "; ".join(str(s) for s in series if s is not chosen)
        how = "as asked" if uid is not None else "the one with the most slices"
        note = (
            f"{folder} holds {len(series)} DICOM series; read {chosen}, {how}; not read: "
            f"{others} (the segpl command reads another with --series UID)"
        )
    return image, chosen.uid, note


#: How far a slice may lie from the regular grid ITK puts the series on, in slice spacings.
SPACING_TOLERANCE = 0.1


def check_even_spacing(
    folder: str | Path, chosen: DicomSeries, reader: sitk.ImageSeriesReader, image: sitk.Image
) -> None:
    """Refuse a series whose slices are not evenly spaced (a slice missing, a change of
    spacing): ITK places it on a regular grid anyway, with only a warning on the terminal, and
    every mask exported on that grid would lie off the scan's slices."""
    n = len(chosen.files)
    if n < 3 or image.GetDimension() != 3 or image.GetSize()[2] != n:
        return  # one file, or a multi-frame file: no per-slice positions to compare
    try:
        positions = [
            [float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")] for i in range(n)
        ]
    except (RuntimeError, ValueError):  # a file without a readable position: ITK's grid stands
        return
    normal = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
    along = (np.array(positions) - positions[0]) @ normal
    along *= -1.0 if along[-1] < 0 else 1.0  # files in either order along the normal
    spacing = image.GetSpacing()[2]
    off = float(np.max(np.abs(along - spacing * np.arange(n))))
    if off > SPACING_TOLERANCE * spacing:
        gaps = np.abs(np.diff(along))
        raise DicomError(
            f"{folder}: DICOM series {chosen.uid}: slices are not evenly spaced (gaps of "
            f"{gaps.min():.2f} to {gaps.max():.2f} mm between neighbours: a slice missing?); on "
            f"a regular grid a mask would lie up to {off:.2f} mm off the scan's slices, so it "
            "was not read"
        )
