"""DICOM folders: which series a folder holds, and reading one of them.

A folder exported from a scanner often holds several series (a scout, the thin and the thick
reconstruction). Reading whichever came first silently would segment the wrong images, so
the series with the most slices is read unless one is asked for by its UID, and the choice is
described in a note front ends show.

This module must stay free of Qt, napari and torch so it can be used headless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .itk_messages import itk_reason

__all__ = ["DicomError", "DicomSeries", "list_series", "read_series"]

_DESCRIPTION_TAG = "0008|103e"


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
        raise DicomError(f"{folder}: no DICOM series found in folder")
    return series


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
    reader = sitk.ImageSeriesReader()
    reader.MetaDataDictionaryArrayUpdateOn()  # each file's position, for check_even_spacing
    try:
        reader.SetFileNames(list(chosen.files))
        image = reader.Execute()
    except Exception as exc:
        raise DicomError(
            f"{folder}: cannot read DICOM series {chosen.uid} ({itk_reason(exc)})"
        ) from exc
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
