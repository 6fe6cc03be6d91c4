"""One volume type for every input format, and label writing on the exact source grid.

Convention used everywhere in the plugin: ``Volume.array`` is in NIfTI index order
(i, j, k) and ``Volume.affine`` maps voxel indices to RAS+ millimetres, exactly as
nibabel reports them. SimpleITK inputs (DICOM, MHA/MHD, NRRD) are converted to this
convention so that a mask written with :func:`write_nifti` lands on the same physical
grid as its source, whatever the source format.

Each format's reader is in ``volume_formats.py`` (VolumeError and the extension lists too,
re-exported here). This module must stay free of Qt, napari and torch so it can be used headless.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt

from .atomic import write_atomically
from .volume_formats import (
    NIFTI_EXTENSIONS,
    SITK_EXTENSIONS,
    VolumeError,
    _has_ext,
    _read_dicom_dir,
    _read_nifti,
    _read_sitk_file,
)

__all__ = [
    "NIFTI_EXTENSIONS",
    "SITK_EXTENSIONS",
    "Volume",
    "VolumeError",
    "check_labels",
    "is_supported",
    "read_labels",
    "read_volume",
    "write_nifti",
]

# Tolerance (mm) when deciding whether two grids are the same.
AFFINE_ATOL = 1e-3
# How many directory entries to sniff when guessing whether a folder holds DICOM.
_DICOM_SNIFF_LIMIT = 64


@dataclass(eq=False)
class Volume:
    """A 3D array on a physical grid, in NIfTI conventions whatever the source format.

    ``series_uid``: the DICOM series read from a folder (None for files). ``note``: what the
    reader chose that the user should be told (which series of several), else empty; front
    ends show it, since reading silently one of several series would segment the wrong one.
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    header: nib.Nifti1Header | None = None
    series_uid: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        # Validate here so a malformed Volume fails where it is built, not deep in a writer.
        self.array = np.asanyarray(self.array)
        self.affine = np.array(self.affine, dtype=np.float64)
        if self.path is not None:
            self.path = Path(self.path)
        if self.array.ndim != 3:
            raise VolumeError(f"{self._name()}: expected a 3D array, got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise VolumeError(f"{self._name()}: affine must be 4x4, got {self.affine.shape}")

    def _name(self) -> str:
        return str(self.path) if self.path is not None else "volume"

    @property
    def shape(self) -> tuple[int, int, int]:
        """Voxel counts along (i, j, k)."""
        i, j, k = self.array.shape
        return int(i), int(j), int(k)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (i, j, k); column norms so oblique grids are handled."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[0]), float(norms[1]), float(norms[2])

    def with_array(self, array: np.ndarray) -> Volume:
        """Same grid (affine, header, path), new data, so results can be written on it."""
        array = np.asanyarray(array)
        if array.shape != self.shape:
            raise VolumeError(
                f"{self._name()}: new array shape {array.shape} does not match grid {self.shape}"
            )
        return Volume(array, self.affine.copy(), self.path, self.header, self.series_uid)


def _looks_like_dicom(path: Path) -> bool:
    """True for a file with a .dcm extension or the DICM preamble magic."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_supported(path: str | Path) -> bool:
    """Cheap check for the napari reader hook: known extension or a folder holding DICOM."""
    path = Path(path)
    if path.is_dir():
        try:
            visible = (e for e in path.iterdir() if not e.name.startswith("."))  # macOS ._ files
            entries = sorted(visible)[:_DICOM_SNIFF_LIMIT]
        except OSError:
            return False
        return any(entry.is_file() and _looks_like_dicom(entry) for entry in entries)
    return _has_ext(path, NIFTI_EXTENSIONS + SITK_EXTENSIONS)


def _to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    """Accept 3D, or 4D+ whose extra axes are all 1 (a single frame); reject everything else."""
    if array.ndim < 3:
        raise VolumeError(f"{path}: {array.ndim}D image of shape {array.shape}; expected 3D")
    if array.ndim > 3:
        frames = int(np.prod(array.shape[3:]))
        if frames != 1:
            raise VolumeError(
                f"{path}: {array.ndim}D image of shape {array.shape} with {frames} frames; "
                "expected a single 3D volume"
            )
        array = array.reshape(array.shape[:3])
    return array


def _check_values(array: np.ndarray, name: str) -> None:
    """Reject empty volumes, non-numeric data and NaN/Inf voxels, which break training."""
    if array.size == 0:
        raise VolumeError(f"{name}: empty volume (shape {array.shape})")
    if np.iscomplexobj(array) or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
    ):
        raise VolumeError(f"{name}: unsupported voxel type {array.dtype}")
    if np.issubdtype(array.dtype, np.floating):
        n_nan = int(np.count_nonzero(np.isnan(array)))
        n_inf = int(np.count_nonzero(np.isinf(array)))
        if n_nan or n_inf:
            raise VolumeError(f"{name}: {n_nan} NaN and {n_inf} Inf voxels; all must be finite")
        # inf once in float32, as every engine path casts; max and min, not abs: no copy
        big = max(abs(float(array.max())), abs(float(array.min()))) if array.itemsize > 4 else 0
        if big > float(np.finfo(np.float32).max):
            raise VolumeError(f"{name}: voxel values up to {big:.3g}, beyond float32's range")


def read_volume(path: str | Path, series: str | None = None) -> Volume:
    """Read NIfTI, MHA/MHD/NRRD or a DICOM series folder into a validated 3D Volume.

    In a folder holding several DICOM series, the one with the most slices is read unless
    ``series`` (a Series Instance UID) names another; ``Volume.note`` says which."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"{path}: file not found")
    header, uid, note = None, None, ""
    if series is not None and not path.is_dir():
        raise VolumeError(f"{path}: a series ({series}) can only be chosen in a DICOM folder")
    if path.is_dir():
        array, affine, uid, note = _read_dicom_dir(path, series)
    elif _has_ext(path, NIFTI_EXTENSIONS):
        array, affine, header = _read_nifti(path)
    elif _has_ext(path, SITK_EXTENSIONS):
        array, affine = _read_sitk_file(path)
    else:
        supported = ", ".join(NIFTI_EXTENSIONS + SITK_EXTENSIONS)
        raise VolumeError(f"{path}: unsupported file type; expected {supported} or a DICOM folder")
    _check_values(array, str(path))  # before _to_3d: nibabel gives some empty volumes shape (0,)
    array = _to_3d(array, path)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError(f"{path}: invalid (singular or non-finite) voxel-to-world matrix")
    return Volume(array, affine, path, header, uid, note)


def _label_name(labels: Volume) -> str:
    return str(labels.path) if labels.path is not None else "labels"


def check_labels(labels: Volume, image: Volume) -> None:
    """Raise VolumeError unless `labels` is a valid label map on exactly `image`'s grid."""
    name = _label_name(labels)
    image_name = str(image.path) if image.path is not None else "the image"
    if labels.shape != image.shape:
        raise VolumeError(
            f"{name}: label shape {labels.shape} does not match image shape {image.shape} "
            f"({image_name})"
        )
    max_diff = float(np.max(np.abs(labels.affine - image.affine)))
    if max_diff > AFFINE_ATOL:
        raise VolumeError(
            f"{name}: label affine differs from the affine of {image_name} by up to "
            f"{max_diff:.4g} mm (tolerance {AFFINE_ATOL} mm); labels are not on the image grid"
        )
    array = labels.array
    _check_values(array, name)
    if np.issubdtype(array.dtype, np.floating):
        n_frac = int(np.count_nonzero(array != np.round(array)))
        if n_frac:
            raise VolumeError(f"{name}: {n_frac} voxels hold non-integer label values")
    if array.dtype.kind in "if":
        n_neg = int(np.count_nonzero(array < 0))
        if n_neg:
            raise VolumeError(f"{name}: {n_neg} voxels hold negative label values")
    limit = np.iinfo(np.int32).max  # labels become int32 (read_labels, every export)
    if array.dtype != np.bool_ and array.max() > limit:
        raise VolumeError(f"{name}: label value {array.max():.6g} too large (max {limit})")


_KEPT_LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.uint8), np.dtype(np.uint16))


def read_labels(path: str | Path, like: Volume) -> Volume:
    """Read a label map and check it sits on `like`'s grid; returns integer labels."""
    labels = read_volume(path)
    check_labels(labels, like)
    array = labels.array
    if array.dtype in _KEPT_LABEL_DTYPES:
        return labels
    return labels.with_array(array.astype(np.int32))  # check_labels kept it in range


def _choose_dtype(array: np.ndarray) -> np.dtype:
    """Smallest common on-disk type that holds the data without rescaling."""
    if array.dtype == np.bool_:
        return np.dtype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = int(array.min()), int(array.max())
        if lo >= 0 and hi < 256:
            return np.dtype(np.uint8)
        for candidate in (np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                return np.dtype(candidate)
        raise VolumeError(f"label values {lo}..{hi} do not fit in int32")
    if np.issubdtype(array.dtype, np.floating):
        return np.dtype(np.float32)
    raise VolumeError(f"cannot write voxel type {array.dtype} to NIfTI")


def _header_for(like: Volume, dtype: np.dtype, shape: tuple[int, ...]) -> nib.Nifti1Header:
    """Header carrying like's grid; keeps the source qform/sform and their codes if any."""
    if isinstance(like.header, nib.Nifti1Header):
        hdr = like.header.copy()
        if not np.allclose(hdr.get_best_affine(), like.affine, rtol=0, atol=1e-5):
            # The Volume's affine is authoritative: restate it, keeping the source codes.
            hdr.set_sform(like.affine, code=int(hdr["sform_code"]) or 1)
            hdr.set_qform(like.affine, code=int(hdr["qform_code"]) or 1)
    else:
        hdr = nib.Nifti1Header()
        hdr.set_qform(like.affine, code=1)
        hdr.set_sform(like.affine, code=1)
        hdr.set_xyzt_units("mm")
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    # Labels must be stored verbatim: no intensity scaling, no display window from the image.
    hdr["scl_slope"] = np.nan
    hdr["scl_inter"] = np.nan
    hdr["cal_min"] = 0
    hdr["cal_max"] = 0
    return hdr


def write_nifti(
    array: np.ndarray, like: Volume, path: str | Path, *, dtype: npt.DTypeLike = None,
    description: str = "",
) -> Path:  # fmt: skip
    """Write `array` as NIfTI on exactly `like`'s grid so it overlays the source image (and
    `description`, if any, as its descrip), atomically: the old file or the whole new one."""
    path = Path(path)
    if not _has_ext(path, NIFTI_EXTENSIONS):
        raise VolumeError(f"{path}: output must end with .nii or .nii.gz")
    array = np.asanyarray(array)
    # A 4th axis is allowed for per-class maps (x, y, z, K), the NIfTI convention.
    if array.shape[:3] != like.shape or array.ndim > 4:
        raise VolumeError(
            f"{path}: array shape {array.shape} does not match the grid shape {like.shape}"
        )
    out_dtype = np.dtype(dtype) if dtype is not None else _choose_dtype(array)
    data = np.asarray(array, dtype=out_dtype)
    hdr = _header_for(like, out_dtype, data.shape)
    hdr["descrip"] = description.encode() if description else hdr["descrip"]
    img_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    # Passing the header's own best affine stops nibabel from rewriting the forms and codes.
    img = img_class(data, hdr.get_best_affine(), header=hdr)
    img.set_data_dtype(out_dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: a failure (a full disk, Ctrl-C) leaves
    # the old file as it was and no partial file behind.
    return write_atomically(path, lambda tmp: nib.save(img, str(tmp)))
