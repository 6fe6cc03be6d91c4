"""Each file format read into voxels and a voxel-to-RAS affine: NIfTI with nibabel,
MHA/MHD/NRRD files and DICOM folders with SimpleITK (converted from LPS).

Separate from ``volume.py`` (the Volume type, its checks and labels, the NIfTI writer) so that
both stay under 400 lines. It sits below it: ``volume.py`` calls these readers and re-exports
VolumeError and the extension lists, so nothing here imports ``volume.py`` and VolumeError,
which the readers raise, is defined here. Free of Qt, napari and torch, like ``volume.py``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .dicom import DicomError, read_series
from .itk_messages import itk_reason
from .metaimage import checked_metaimage

__all__ = ["NIFTI_EXTENSIONS", "SITK_EXTENSIONS", "VolumeError"]

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
SITK_EXTENSIONS = (".mha", ".mhd", ".nrrd", ".nhdr")
# DICOM voxel coordinates are LPS; NIfTI world coordinates are RAS.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
#: SimpleITK's pixel type for each numpy type of the voxels the MetaImage check inflated.
_SITK_PIXEL = {"int8": sitk.sitkInt8, "uint8": sitk.sitkUInt8, "int16": sitk.sitkInt16,
               "uint16": sitk.sitkUInt16, "int32": sitk.sitkInt32, "uint32": sitk.sitkUInt32,
               "int64": sitk.sitkInt64, "uint64": sitk.sitkUInt64, "float32": sitk.sitkFloat32,
               "float64": sitk.sitkFloat64}  # fmt: skip


class VolumeError(ValueError):
    """Bad input volume; message names the file and the problem."""


def _lower_name(path: Path) -> str:
    return path.name.lower()


def _has_ext(path: Path, extensions: tuple[str, ...]) -> bool:
    name = _lower_name(path)
    return any(name.endswith(ext) for ext in extensions)


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, nib.Nifti1Header]:
    img = None
    try:
        # mmap=False: never hand out a memmap tied to a file we may later overwrite.
        img = nib.load(str(path), mmap=False)
        if not isinstance(img, nib.Nifti1Image):
            raise TypeError(f"not a NIfTI image ({type(img).__name__})")
        array = _nifti_voxels(img)
        affine = np.array(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many unrelated types for corrupt files
        reason = " ".join(str(exc).split())  # one line: nibabel's messages span several
        if isinstance(exc, MemoryError):  # often a damaged header's shape
            reason = f"not enough memory for its shape {getattr(img, 'shape', '')}"
        raise VolumeError(
            f"{path}: cannot read NIfTI file ({reason or type(exc).__name__})"
        ) from exc
    return array, affine, img.header.copy()


def _nifti_voxels(img: nib.Nifti1Image) -> np.ndarray:
    """The voxels as nibabel scales them, kept whole when they are: integers stored with a
    whole slope and intercept (a CT as uint16 with intercept -1024) come back from nibabel
    as float64, 8 bytes a voxel (840 MB for 512 x 512 x 400); here as the smallest signed
    integer type that holds them, with the same values."""
    proxy = img.dataobj
    slope, inter = float(proxy.slope), float(proxy.inter)
    whole = slope.is_integer() and inter.is_integer() and img.get_data_dtype().kind in "iu"
    if (slope, inter) == (1.0, 0.0) or not whole:
        return np.asanyarray(proxy)
    raw = np.asanyarray(proxy.get_unscaled())
    if raw.size == 0:
        return np.asanyarray(proxy)
    products = [int(raw.min()) * int(slope), int(raw.max()) * int(slope)]
    ends = products + [p + int(inter) for p in products]  # (every step must fit)
    fits = [t for t in (np.int16, np.int32) if np.iinfo(t).min <= min(ends)]
    fits = [t for t in fits if max(ends) <= np.iinfo(t).max]
    if not fits:
        return np.asanyarray(proxy)
    array = raw.astype(fits[0], order="K")
    del raw
    array *= fits[0](slope)
    array += fits[0](inter)
    return array


def _sitk_to_numpy(
    img: sitk.Image | sitk.ImageFileReader, path: Path, voxels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Convert a SimpleITK image to (i, j, k) array and RAS affine, keeping dims >= 3; or a
    header read alone (``img`` a reader) and its ``voxels``, in SimpleITK's array order."""
    if voxels is None and img.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(
            f"{path}: vector image with {img.GetNumberOfComponentsPerPixel()} components "
            "per voxel; expected a scalar volume"
        )
    dim = img.GetDimension()
    if dim < 3:
        raise VolumeError(f"{path}: {dim}D image of size {img.GetSize()}; expected a 3D volume")
    # sitk arrays are in reverse index order (..., z, y, x); flip back to (x, y, z, ...).
    array = sitk.GetArrayFromImage(img) if voxels is None else voxels
    array = array.transpose(tuple(range(dim - 1, -1, -1)))
    direction = np.array(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.array(img.GetSpacing(), dtype=np.float64)[:3]
    origin = np.array(img.GetOrigin(), dtype=np.float64)[:3]
    affine = np.eye(4)
    affine[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(spacing)
    affine[:3, 3] = _LPS_TO_RAS @ origin
    return array, affine


def _read_sitk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # MetaIO prints its own lines, or reads garbage on; compressed voxels come inflated
    damage, voxels = checked_metaimage(path)
    if damage:
        raise VolumeError(f"{path}: cannot read image file ({damage})")
    try:
        header = _header_for_voxels(path, voxels) if voxels is not None else None
        img = sitk.ReadImage(str(path)) if header is None else None
    except Exception as exc:
        raise VolumeError(f"{path}: cannot read image file ({itk_reason(exc)})") from exc
    if header is not None:  # the voxels inflated once, by the check, not again by ITK
        return _sitk_to_numpy(header, path, voxels)
    return _sitk_to_numpy(img, path)


def _header_for_voxels(path: Path, voxels: np.ndarray) -> sitk.ImageFileReader | None:
    """The file's header as ITK reads it (not its voxels), if it agrees with ``voxels`` in
    shape and type; None (ITK then reads the whole file) where it does not."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    same = reader.GetNumberOfComponents() == 1 and tuple(reader.GetSize()) == voxels.shape[::-1]
    return reader if same and reader.GetPixelID() == _SITK_PIXEL.get(voxels.dtype.name) else None


def _read_dicom_dir(path: Path, series: str | None) -> tuple[np.ndarray, np.ndarray, str, str]:
    """The folder's series with the most slices (or ``series``), its UID and the note."""
    try:
        img, uid, note = read_series(path, series)
    except DicomError as exc:
        raise VolumeError(str(exc)) from exc
    return (*_sitk_to_numpy(img, path), uid, note)
