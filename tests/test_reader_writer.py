"""Reader, writer and layer-grid contract: what is exported lands on the source grid."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from napari.layers import Image, Labels

from napari_segpl import _reader, _writer
from napari_segpl._sample_data import RESOURCES, samples
from napari_segpl.layers import (
    GRID_KEY,
    HEADER_KEY,
    export_layer,
    grid_of,
    layer_kwargs,
    mm_spacing,
    same_grid_kwargs,
)
from napari_segpl.volume import VolumeError, read_volume

SHAPE = (12, 10, 6)
SPACING = np.array([0.7, 0.9, 2.5])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = np.radians(degrees_z), np.radians(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def _oblique_affine() -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = _rotation(20.0, -12.0) @ np.diag(SPACING)
    affine[:3, 3] = [-41.5, 17.25, -63.0]
    return affine


def _image() -> np.ndarray:
    return np.random.default_rng(0).normal(100.0, 20.0, SHAPE).astype(np.float32)


@pytest.fixture
def oblique_nifti(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An oblique NIfTI with distinct qform/sform codes (scanner qform, aligned sform)."""
    img = nib.Nifti1Image(_image(), _oblique_affine())
    img.set_qform(_oblique_affine(), code=1)
    img.set_sform(_oblique_affine(), code=2)
    path = tmp_path / "case.nii.gz"
    nib.save(img, path)
    return path, nib.load(path).affine  # the affine as stored (float32 sform)


@pytest.fixture
def oblique_nrrd(tmp_path: Path) -> Path:
    img = sitk.GetImageFromArray(_image().transpose(2, 1, 0))  # sitk wants (k, j, i)
    img.SetSpacing(SPACING.tolist())
    img.SetOrigin((12.5, -30.0, 44.0))
    img.SetDirection(_rotation(-15.0, 25.0).ravel().tolist())
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(img, str(path))
    return path


def _read(path: Path) -> list[tuple]:
    reader = _reader.get_reader(str(path))
    assert callable(reader)
    return reader(str(path))


def _open_image(path: Path) -> Image:
    data, kwargs, layer_type = _read(path)[0]
    assert layer_type == "image"
    return Image(data, **kwargs)


def _paint(layer: Labels) -> np.ndarray:
    layer.data[2:5, 3:7, 1] = 1
    layer.data[8, 1:4, 2:5] = 2
    return np.asarray(layer.data).copy()


# --- reader -------------------------------------------------------------------------------


def test_oblique_nifti_opens_with_spacing_origin_and_grid(oblique_nifti) -> None:
    path, affine = oblique_nifti
    ((data, kwargs, layer_type),) = _read(path)
    assert layer_type == "image"
    assert data.shape == SHAPE
    np.testing.assert_allclose(kwargs["scale"], SPACING, rtol=1e-6)
    np.testing.assert_allclose(kwargs["translate"], affine[:3, 3], atol=1e-6)
    grid = kwargs["metadata"][GRID_KEY]
    np.testing.assert_allclose(grid["affine"], affine, atol=1e-9)
    assert grid["shape"] == list(SHAPE)
    assert grid["source"] == str(path)
    assert isinstance(kwargs["metadata"][HEADER_KEY], nib.Nifti1Header)
    assert "segpl_affine" not in kwargs["metadata"]


def test_label_named_integer_file_opens_as_labels(tmp_path: Path) -> None:
    # Float storage with whole-number values (as some tools save masks) still counts.
    labels = np.zeros(SHAPE, np.float32)
    labels[3:6, 2:4, 1:3] = 2
    nib.save(nib.Nifti1Image(labels, _oblique_affine()), tmp_path / "liver_mask.nii.gz")
    ((data, kwargs, layer_type),) = _read(tmp_path / "liver_mask.nii.gz")
    assert layer_type == "labels"
    assert np.issubdtype(data.dtype, np.integer)
    np.testing.assert_array_equal(data, labels)
    assert kwargs["name"] == "liver_mask"
    # Integer data without a label-like name stays an image (e.g. CT in HU).
    nib.save(nib.Nifti1Image(labels.astype(np.int16), np.eye(4)), tmp_path / "ct.nii")
    assert _read(tmp_path / "ct.nii")[0][2] == "image"


def test_nrrd_and_mha_open_with_lps_to_ras_affine(oblique_nrrd: Path, tmp_path: Path) -> None:
    sitk_img = sitk.ReadImage(str(oblique_nrrd))
    direction = np.array(sitk_img.GetDirection()).reshape(3, 3)
    expected = np.eye(4)
    expected[:3, :3] = LPS_TO_RAS @ direction @ np.diag(sitk_img.GetSpacing())
    expected[:3, 3] = LPS_TO_RAS @ np.array(sitk_img.GetOrigin())
    mha = tmp_path / "scan.mha"
    sitk.WriteImage(sitk_img, str(mha))
    for path in (oblique_nrrd, mha):
        ((data, kwargs, layer_type),) = _read(path)
        assert layer_type == "image"
        np.testing.assert_allclose(data, _image(), rtol=1e-6)
        np.testing.assert_allclose(kwargs["metadata"][GRID_KEY]["affine"], expected, atol=1e-9)
        # napari's world is RAS: the LPS file's i and j run towards -x and -y (rotated by
        # under 45 degrees), so their scale is negative and voxel 0 sits at its RAS position.
        np.testing.assert_allclose(kwargs["scale"], SPACING * [-1, -1, 1], rtol=1e-6)
        np.testing.assert_allclose(kwargs["translate"], expected[:3, 3], atol=1e-9)
        assert kwargs["metadata"][HEADER_KEY] is None


def test_dicom_folder_opens_as_image(tmp_path: Path) -> None:
    voxels = (np.arange(4 * 8 * 6).reshape(4, 8, 6) % 50).astype(np.int16)  # (k, j, i)
    volume = sitk.GetImageFromArray(voxels)
    volume.SetSpacing((0.8, 0.6, 2.0))
    volume.SetOrigin((10.0, -5.0, 30.0))
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.GetDepth()):
        slice_ = volume[:, :, k]
        position = volume.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.3",
            "0020|000e": "1.2.3.4",
            "0020|0032": "\\".join(str(p) for p in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0020|0013": str(k),
            "0028|0030": "0.6\\0.8",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(slice_)

    ((data, kwargs, layer_type),) = _read(folder)
    assert layer_type == "image" and kwargs["name"] == "series"
    np.testing.assert_array_equal(data, voxels.transpose(2, 1, 0))
    np.testing.assert_allclose(kwargs["scale"], [-0.8, -0.6, 2.0], rtol=1e-6)  # L, P, S
    np.testing.assert_allclose(kwargs["translate"], [-10.0, 5.0, 30.0], atol=1e-6)  # LPS->RAS
    assert kwargs["metadata"][GRID_KEY]["source"] == str(folder)


def test_corrupt_supported_file_raises_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"this is not a NIfTI file")
    reader = _reader.get_reader(str(path))
    assert callable(reader)  # ours: it must explain the failure, not decline silently
    with pytest.raises(VolumeError, match="broken.nii.gz: cannot read NIfTI"):
        reader(str(path))
    assert _reader.get_reader(str(tmp_path / "notes.txt")) is None
    assert _reader.get_reader(str(tmp_path)) is None  # a folder without DICOM


# --- layer contract and export ----------------------------------------------------------


def test_round_trip_oblique_nifti(oblique_nifti, tmp_path: Path) -> None:
    path, affine = oblique_nifti
    data, kwargs, _ = _read(path)[0]
    image = Image(data, **kwargs)
    labels = Labels(np.zeros(SHAPE, np.int32), **same_grid_kwargs(image, "case labels"))
    painted = _paint(labels)

    out = export_layer(labels, tmp_path / "out" / "case_labels.nii.gz")
    saved, source = nib.load(out), nib.load(path)
    assert saved.shape == SHAPE
    np.testing.assert_allclose(saved.affine, affine, atol=1e-6)
    for form in ("qform_code", "sform_code"):
        assert int(saved.header[form]) == int(source.header[form])
    np.testing.assert_allclose(saved.header.get_qform(), source.header.get_qform(), atol=1e-6)
    assert np.issubdtype(saved.get_data_dtype(), np.integer)
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), painted)

    # Image layers export as float32 on the same grid.
    image_out = export_layer(image, tmp_path / "image_copy.nii")
    saved_image = nib.load(image_out)
    assert saved_image.get_data_dtype() == np.float32
    np.testing.assert_allclose(saved_image.affine, affine, atol=1e-6)
    np.testing.assert_allclose(np.asanyarray(saved_image.dataobj), data)


def test_round_trip_nrrd(oblique_nrrd: Path, tmp_path: Path) -> None:
    image = _open_image(oblique_nrrd)
    labels = Labels(np.zeros(SHAPE, np.uint8), **same_grid_kwargs(image, "scan labels"))
    painted = _paint(labels)
    out = export_layer(labels, tmp_path / "scan_labels")  # no suffix: .nii.gz appended
    assert out == tmp_path / "scan_labels.nii.gz"

    source, saved = sitk.ReadImage(str(oblique_nrrd)), sitk.ReadImage(str(out))
    np.testing.assert_allclose(saved.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(saved.GetSpacing(), source.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(saved.GetDirection(), source.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved).transpose(2, 1, 0), painted)


def test_read_layers_have_a_mm_spacing_and_a_plain_array_has_none(oblique_nifti) -> None:
    """HD95 in the dock is in mm only for layers on a recorded grid (the reader's, and labels
    made on their grid); an array added with napari's default scale 1 has no known spacing,
    and neither has a layer whose data no longer fits its recorded grid."""
    image = _open_image(oblique_nifti[0])
    np.testing.assert_allclose(mm_spacing(image), SPACING, rtol=1e-5)
    labels = Labels(np.zeros(SHAPE, np.uint8), **same_grid_kwargs(image, "case labels"))
    np.testing.assert_allclose(mm_spacing(labels), SPACING, rtol=1e-5)
    assert mm_spacing(Image(_image())) is None
    cropped = Image(_image()[:4], metadata=image.metadata)
    assert mm_spacing(cropped) is None


def test_same_grid_kwargs_copies_metadata_and_keeps_header(oblique_nifti) -> None:
    image = _open_image(oblique_nifti[0])
    kwargs = same_grid_kwargs(image, "new")
    assert kwargs["name"] == "new"
    np.testing.assert_allclose(kwargs["scale"], image.scale)
    np.testing.assert_allclose(kwargs["translate"], image.translate)
    assert kwargs["metadata"][GRID_KEY] == image.metadata[GRID_KEY]
    assert kwargs["metadata"][GRID_KEY] is not image.metadata[GRID_KEY]
    assert kwargs["metadata"][HEADER_KEY] is image.metadata[HEADER_KEY]
    kwargs["metadata"][GRID_KEY]["shape"][0] = 99
    assert image.metadata[GRID_KEY]["shape"][0] == SHAPE[0]


def test_grid_of_without_or_with_stale_metadata(oblique_nifti) -> None:
    # No metadata: the axis-aligned grid napari shows.
    layer = Labels(np.zeros(SHAPE, np.int32), scale=(2.0, 3.0, 4.0), translate=(1.0, 2.0, 3.0))
    grid = grid_of(layer)
    np.testing.assert_allclose(grid.affine[:3, :3], np.diag([2.0, 3.0, 4.0]))
    np.testing.assert_allclose(grid.affine[:3, 3], [1.0, 2.0, 3.0])
    assert grid.header is None
    assert grid.array is not None and grid.array.shape == SHAPE

    # Metadata recorded for another shape (e.g. data replaced by a crop) is ignored.
    volume = read_volume(oblique_nifti[0])
    stale = Labels(np.zeros((4, 4, 4), np.int32), **layer_kwargs(volume, "crop"))
    assert grid_of(stale).header is None
    np.testing.assert_allclose(grid_of(stale).affine[:3, :3], np.diag(SPACING), rtol=1e-6)

    with pytest.raises(VolumeError, match="flat: layer data has shape"):
        grid_of(Labels(np.zeros((5, 5), np.int32), name="flat"))


def test_npe2_writers_use_layer_state(oblique_nifti, tmp_path: Path) -> None:
    image = _open_image(oblique_nifti[0])
    labels = Labels(np.zeros(SHAPE, np.int32), **same_grid_kwargs(image, "lab"))
    painted = _paint(labels)
    data, meta, _ = labels.as_layer_data_tuple()
    out = tmp_path / "lab.nii"
    assert _writer.write_labels(str(out), data, meta) == [str(out)]
    np.testing.assert_allclose(nib.load(out).affine, oblique_nifti[1], atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(nib.load(out).dataobj), painted)
    # A ValueError would make napari report "no writer"; ours surfaces the real reason.
    with pytest.raises(_writer.SegplWriteError, match="only 3D"):
        _writer.write_image(str(tmp_path / "flat.nii.gz"), np.zeros((3, 3)), {"name": "flat"})


def test_several_layers_go_to_one_folder(oblique_nifti, tmp_path: Path) -> None:
    image = _open_image(oblique_nifti[0])
    labels = Labels(np.zeros(SHAPE, np.int32), **same_grid_kwargs(image, "lab/1"))
    painted = _paint(labels)
    twin = Labels(np.ones(SHAPE, np.int32), **same_grid_kwargs(image, "lab?1"))
    layers = [x.as_layer_data_tuple() for x in (image, labels, twin)]
    written = _writer.write_layers(str(tmp_path / "set.nii.gz"), layers)
    folder = tmp_path / "set"  # the suffix names a folder here, not a file
    assert written == [str(folder / f) for f in ("case.nii.gz", "lab_1.nii.gz", "lab_1-2.nii.gz")]
    for path in written:  # every layer on the source grid
        np.testing.assert_allclose(nib.load(path).affine, oblique_nifti[1], atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(nib.load(written[1]).dataobj), painted)
    assert np.asanyarray(nib.load(written[2]).dataobj).min() == 1
    assert nib.load(written[0]).get_data_dtype() == np.float32
    # nothing is replaced, and a bad layer stops the set before any file is written
    with pytest.raises(_writer.SegplWriteError, match="already exists"):
        _writer.write_layers(str(folder), layers)
    flat = (np.zeros((3, 3)), {"name": "flat"}, "image")
    with pytest.raises(_writer.SegplWriteError, match="only 3D"):
        _writer.write_layers(str(tmp_path / "other"), [layers[1], flat])
    assert not (tmp_path / "other").exists()
    with pytest.raises(_writer.SegplWriteError, match="points"):
        _writer.write_layers(str(tmp_path / "pts"), [(np.zeros((2, 3)), {}, "points")])


# --- through napari -------------------------------------------------------------------------


def test_saving_several_layers_in_napari(make_napari_viewer, tmp_path: Path) -> None:
    """napari's Save Selected Layers with an image and its labels selected: before this writer
    it found no plugin and wrote nothing, with only a console warning."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    viewer.layers.select_all()
    written = viewer.layers.save(str(tmp_path / "case.nii.gz"), selected=True)
    assert sorted(Path(p).name for p in written) == ["lungs_ct labels.nii.gz", "lungs_ct.nii.gz"]
    assert all(Path(p).parent == tmp_path / "case" for p in written)
    viewer.layers.selection = {viewer.layers["lungs_ct labels"]}
    (single,) = viewer.layers.save(str(tmp_path / "one.nii.gz"), selected=True)
    assert Path(single) == tmp_path / "one.nii.gz"  # one layer still writes one file


def test_viewer_open_and_save(make_napari_viewer, oblique_nifti, tmp_path: Path) -> None:
    path, affine = oblique_nifti
    label_path = tmp_path / "case_seg.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.uint8), affine), label_path)
    viewer = make_napari_viewer()
    (image,) = viewer.open(path, plugin="napari-segpl")
    (labels,) = viewer.open(label_path, plugin="napari-segpl")
    assert isinstance(image, Image) and isinstance(labels, Labels)
    np.testing.assert_allclose(image.scale, SPACING, rtol=1e-6)
    np.testing.assert_allclose(image.metadata[GRID_KEY]["affine"], affine, atol=1e-9)
    painted = _paint(labels)

    (written,) = labels.save(str(tmp_path / "saved_labels"), plugin="napari-segpl")
    assert written.endswith("saved_labels.nii.gz")  # npe2 appends the first extension
    saved = nib.load(written)
    np.testing.assert_allclose(saved.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), painted)

    viewer.layers.selection = {image}
    out = tmp_path / "saved_image.nii.gz"
    assert viewer.layers.save(str(out), selected=True, plugin="napari-segpl") == [str(out)]
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-6)

    broken = tmp_path / "broken.nii"
    broken.write_bytes(b"garbage")
    with pytest.raises(Exception, match="cannot read NIfTI"):
        viewer.open(broken, plugin="napari-segpl")


def test_open_sample_carries_grid(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-segpl", "lungs_ct")
    assert [type(layer) for layer in layers] == [Image, Labels]
    expected = nib.load(RESOURCES / samples()["lungs_ct"]["files"]["image"]).affine
    for layer in layers:
        np.testing.assert_allclose(layer.metadata[GRID_KEY]["affine"], expected, atol=1e-9)
        assert layer.metadata[GRID_KEY]["shape"] == list(layer.data.shape)
        assert "segpl_affine" not in layer.metadata
    np.testing.assert_allclose(grid_of(layers[1]).affine, expected, atol=1e-9)


def test_radiological_view_by_hand() -> None:
    from napari_segpl.layers import radiological_view

    ras = np.diag([3.0, 3.0, 10.0, 1.0])  # index i runs to the patient's right, j anterior, k up
    # axial: rows are j with anterior up, columns i with the patient's right on the left
    assert radiological_view(ras, 2) == ((2, 1, 0), ("up", "left"))
    assert radiological_view(ras, 1) == ((1, 2, 0), ("up", "left"))  # coronal: superior up
    assert radiological_view(ras, 0) == ((0, 2, 1), ("up", "left"))  # sagittal: anterior left
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # DICOM's order, placed in the RAS world (flipped)
    assert radiological_view(lps, 2) == ((2, 1, 0), ("up", "left"))
    # ... and placed in array order (positive scale): already as a radiologist reads it
    assert radiological_view(lps, 2, scale=(1.0, 1.0, 1.0)) == ((2, 1, 0), ("down", "right"))
    sra = np.zeros((4, 4))  # array axes (S, R, A): axial slices run along axis 0
    sra[2, 0], sra[0, 1], sra[1, 2], sra[3, 3] = 1.0, 1.0, 1.0, 1.0
    assert radiological_view(sra, 0) == ((0, 2, 1), ("up", "left"))
    degenerate = np.diag([1.0, 1.0, 1.0, 1.0])
    degenerate[0, 1] = degenerate[1, 1] = 0.0  # two axes along x, none along y
    degenerate[0, 1] = 1.0
    assert radiological_view(degenerate, 2) is None
