"""Tests for napari_segpl.volume: every input format lands on one convention, and
masks written back overlay their source exactly. All data are generated in tmp_path."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from napari_segpl.volume import (
    Volume,
    VolumeError,
    is_supported,
    read_labels,
    read_volume,
    write_nifti,
)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def rotation(ax_deg: float, ay_deg: float, az_deg: float = 0.0) -> np.ndarray:
    """Proper rotation (det +1) about x, then y, then z."""
    ax, ay, az = np.deg2rad([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_affine() -> np.ndarray:
    """20 degrees about two axes, anisotropic spacing, non-zero translation."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(20, 20) @ np.diag([0.8, 1.2, 2.5])
    affine[:3, 3] = [-30.0, 12.5, 40.0]
    return affine


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """NIfTI with distinct qform (scanner) and sform (aligned) codes to check they survive."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    nib.save(img, str(path))
    return path


def image_data(shape: tuple[int, ...] = (6, 7, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(100, 20, size=shape).astype(np.float32)


def sitk_image(shape_xyz: tuple[int, int, int] = (7, 6, 5)) -> sitk.Image:
    """Int16 sitk image with non-identity direction, anisotropic spacing, non-zero origin."""
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 2000, size=shape_xyz[::-1]).astype(np.int16)  # z, y, x
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.9, 2.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    img.SetDirection(tuple(rotation(15, -25, 30).ravel()))
    return img


def ras_point(img: sitk.Image, index: tuple[int, int, int]) -> np.ndarray:
    return LPS_TO_RAS @ np.array(img.TransformIndexToPhysicalPoint(index))


def apply(affine: np.ndarray, index: tuple[int, int, int]) -> np.ndarray:
    return (affine @ np.array([*index, 1.0]))[:3]


CORNERS = [(0, 0, 0), (6, 0, 0), (0, 5, 0), (0, 0, 4), (6, 5, 4), (3, 2, 1)]


# --------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("affine_kind", ["axis", "oblique"])
def test_nifti_round_trip_keeps_voxels_affine_and_codes(tmp_path, ext, affine_kind):
    affine = oblique_affine() if affine_kind == "oblique" else np.diag([0.5, 0.6, 3.0, 1.0])
    data = image_data()
    src = save_nifti(tmp_path / f"img{ext}", data, affine)

    vol = read_volume(src)
    assert vol.shape == data.shape
    assert vol.path == src
    np.testing.assert_array_equal(vol.array, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    np.testing.assert_allclose(vol.spacing, np.linalg.norm(affine[:3, :3], axis=0), atol=1e-5)

    out = write_nifti(vol.array, vol, tmp_path / "out" / f"copy{ext}")
    assert out.exists()
    back = read_volume(out)
    np.testing.assert_array_equal(back.array, data)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.affine, vol.affine)

    src_hdr, out_hdr = nib.load(str(src)).header, nib.load(str(out)).header
    assert int(out_hdr["qform_code"]) == 1
    assert int(out_hdr["sform_code"]) == 2
    np.testing.assert_array_equal(out_hdr.get_qform(), src_hdr.get_qform())
    np.testing.assert_array_equal(out_hdr.get_sform(), src_hdr.get_sform())


def test_mask_written_on_nifti_grid_is_uint8_and_unscaled(tmp_path):
    img = nib.Nifti1Image(image_data().astype(np.int16), oblique_affine())
    img.header.set_slope_inter(2.0, -5.0)  # source scaling must not leak into the labels
    nib.save(img, str(tmp_path / "img.nii.gz"))
    vol = read_volume(tmp_path / "img.nii.gz")
    mask = (vol.array > 150).astype(np.int64) * 3

    out = write_nifti(mask, vol, tmp_path / "mask.nii.gz")
    written = nib.load(str(out))
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)
    assert np.asanyarray(written.dataobj).dtype == np.uint8

    labels = read_labels(out, vol)
    assert labels.array.dtype == np.uint8
    np.testing.assert_array_equal(labels.array, mask)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0, 1, 300], np.int16), ([0, 1, 40000], np.int32), ([0, 1.5], np.float32)],
)
def test_write_nifti_dtype_choice(tmp_path, values, expected):
    vol = Volume(np.zeros((3, 3, 3), np.float32), np.eye(4))
    arr = np.zeros(vol.shape, dtype=np.asarray(values).dtype)
    arr.flat[: len(values)] = values
    out = write_nifti(arr, vol, tmp_path / "m.nii")
    assert nib.load(str(out)).get_data_dtype() == expected
    np.testing.assert_array_equal(np.asanyarray(nib.load(str(out)).dataobj), arr)


def test_write_nifti_without_header_sets_scanner_codes(tmp_path):
    vol = Volume(np.zeros((4, 5, 6), np.uint8), oblique_affine())
    out = write_nifti(np.ones(vol.shape, np.uint8), vol, tmp_path / "m.nii.gz", dtype=np.int16)
    hdr = nib.load(str(out)).header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 1
    assert hdr.get_data_dtype() == np.int16
    np.testing.assert_allclose(hdr.get_sform(), vol.affine, atol=1e-5)
    np.testing.assert_allclose(hdr.get_qform(), vol.affine, atol=1e-4)


def test_volume_affine_wins_over_stale_header(tmp_path):
    vol = read_volume(save_nifti(tmp_path / "img.nii", image_data(), oblique_affine()))
    moved = vol.affine.copy()
    moved[:3, 3] += [10.0, -4.0, 2.5]
    out = write_nifti(vol.array, Volume(vol.array, moved, None, vol.header), tmp_path / "m.nii")
    hdr = nib.load(str(out)).header
    assert int(hdr["qform_code"]) == 1 and int(hdr["sform_code"]) == 2
    np.testing.assert_allclose(hdr.get_sform(), moved, atol=1e-5)
    np.testing.assert_allclose(hdr.get_qform(), moved, atol=1e-4)


def test_four_d_single_frame_is_accepted_as_3d(tmp_path):
    data = image_data((5, 6, 4, 1))
    path = save_nifti(tmp_path / "one_frame.nii.gz", data, oblique_affine())
    vol = read_volume(path)
    assert vol.shape == (5, 6, 4)
    np.testing.assert_array_equal(vol.array, data[..., 0])
    out = write_nifti((vol.array > 100).astype(np.uint8), vol, tmp_path / "m.nii.gz")
    assert nib.load(str(out)).shape == (5, 6, 4)


# --------------------------------------------------------------------- SimpleITK files


@pytest.mark.parametrize("ext", [".mha", ".mhd", ".nrrd"])
def test_sitk_formats_convert_to_nifti_convention(tmp_path, ext):
    img = sitk_image()
    src = tmp_path / f"img{ext}"
    sitk.WriteImage(img, str(src))

    vol = read_volume(src)
    assert vol.header is None
    assert vol.shape == (7, 6, 5)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, (0.7, 0.9, 2.0), atol=1e-6)
    for index in CORNERS:
        np.testing.assert_allclose(apply(vol.affine, index), ras_point(img, index), atol=1e-6)

    mask = (vol.array > 500).astype(np.uint8)
    out = write_nifti(mask, vol, tmp_path / "mask.nii.gz")
    back = sitk.ReadImage(str(out))
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back).transpose(2, 1, 0), mask)


def test_sitk_nifti_writer_agrees_with_our_affine(tmp_path):
    img = sitk_image()
    sitk.WriteImage(img, str(tmp_path / "img.mha"))
    sitk.WriteImage(img, str(tmp_path / "img_by_sitk.nii.gz"))
    ours = read_volume(tmp_path / "img.mha")
    theirs = read_volume(tmp_path / "img_by_sitk.nii.gz")
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    np.testing.assert_array_equal(ours.array, theirs.array)


def write_dicom_series(folder: Path, img: sitk.Image) -> None:
    """Write `img` slice by slice with the geometry tags a scanner would set."""
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    d = img.GetDirection()
    orientation = "\\".join(f"{v:.10f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    spacing = img.GetSpacing()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.4242424242"
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        position = img.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.4242",
            "0020|000e": series_uid,
            "0020|0032": "\\".join(f"{v:.10f}" for v in position),
            "0020|0037": orientation,
            "0028|0030": f"{spacing[1]:.10f}\\{spacing[0]:.10f}",
            "0018|0050": f"{spacing[2]:.10f}",
            "0020|0013": str(k + 1),
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder(tmp_path):
    img = sitk_image()
    folder = tmp_path / "series"
    write_dicom_series(folder, img)
    assert is_supported(folder)

    vol = read_volume(folder)
    assert vol.shape == (7, 6, 5)
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(img).transpose(2, 1, 0))
    np.testing.assert_allclose(vol.spacing, (0.7, 0.9, 2.0), atol=1e-4)
    for index in CORNERS:
        np.testing.assert_allclose(apply(vol.affine, index), ras_point(img, index), atol=1e-4)

    out = write_nifti((vol.array > 0).astype(np.uint8), vol, tmp_path / "mask.nii.gz")
    back = sitk.ReadImage(str(out))
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-4)


# ------------------------------------------------------------------------ bad inputs


def assert_volume_error(path: Path, *fragments: str) -> VolumeError:
    with pytest.raises(VolumeError) as info:
        read_volume(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message
    return info.value


def test_missing_file(tmp_path):
    assert_volume_error(tmp_path / "nope.nii.gz", "not found")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("hello")
    assert_volume_error(path, "unsupported")
    assert not is_supported(path)


@pytest.mark.parametrize("name", ["broken.nii.gz", "broken.nii", "broken.nrrd", "broken.mha"])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(3).bytes(2048))
    assert_volume_error(path, "cannot read")


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [("t.nrrd", "truncate", "fread got only"), ("t.mha", "truncate", "truncated MetaImage"),
     ("t.nhdr", "no data file", "couldn't open"), ("t.mhd", "no data file", "data file"),
     ("t.nrrd", "empty", "not an image file")],
)  # fmt: skip
def test_a_damaged_itk_file_is_named_in_one_line_with_its_reason(tmp_path, name, damage, reason):
    """ITK's text runs over several lines (its source path, an address, a chain of calls); the
    user gets one line with the reason."""
    path = tmp_path / name
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 6, 5), np.float32)), str(path))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        next(tmp_path.glob("*.raw")).unlink()
    with pytest.raises(VolumeError) as info:
        read_volume(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read image file (") and reason in message
    assert "\n" not in message and "0x" not in message and ".cxx" not in message


def test_a_nifti_header_with_an_impossible_shape_says_so(tmp_path):
    """A damaged header claiming 30000^3 voxels: the reason names the shape (a bare
    MemoryError has no text, and the message said "()")."""
    path = tmp_path / "huge.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), str(path))
    raw = bytearray(path.read_bytes())
    raw[40:56] = np.array([3, 30000, 30000, 30000, 1, 1, 1, 1], "<i2").tobytes()  # dim[8]
    path.write_bytes(bytes(raw))
    assert_volume_error(path, "cannot read NIfTI file (not enough memory for its shape (30000,")


def test_two_d_nifti_and_mha(tmp_path):
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.float32), np.eye(4)), str(path))
    assert_volume_error(path, "2D")
    mha = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5), np.int16)), str(mha))
    assert_volume_error(mha, "2D")


def test_four_d_with_three_frames(tmp_path):
    path = save_nifti(tmp_path / "series.nii.gz", image_data((4, 5, 6, 3)), np.eye(4))
    assert_volume_error(path, "3 frames")


def test_vector_image_rejected(tmp_path):
    path = tmp_path / "rgb.mha"
    arr = np.zeros((3, 4, 5, 3), np.uint8)  # z, y, x, components
    sitk.WriteImage(sitk.GetImageFromArray(arr, isVector=True), str(path))
    assert_volume_error(path, "3 components")


@pytest.mark.parametrize(("bad", "fragment"), [(np.nan, "2 NaN"), (np.inf, "2 Inf")])
def test_non_finite_voxels(tmp_path, bad, fragment):
    data = image_data()
    data[0, 0, 0] = data[1, 2, 3] = bad
    path = save_nifti(tmp_path / "bad.nii.gz", data, np.eye(4))
    assert_volume_error(path, fragment)


def test_empty_volume(tmp_path):
    path = tmp_path / "empty.nii"
    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.float32), np.eye(4)), str(path))
    assert_volume_error(path, "empty")


def test_empty_folder_is_not_dicom(tmp_path):
    folder = tmp_path / "no_dicom_here"
    folder.mkdir()
    assert not is_supported(folder)
    assert_volume_error(folder, "no DICOM series")
