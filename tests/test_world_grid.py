"""Layers sit at their RAS position in napari's world: an RAS NIfTI and an LPS NRRD of the same
anatomy overlay, masks move between their grids, and the radiological view shows both alike."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from napari.layers import Image, Labels

from napari_segpl import _reader, _writer
from napari_segpl.layers import (
    GRID_KEY,
    export_layer,
    grid_of,
    layer_kwargs,
    on_grid,
    radiological_view,
    same_grid_kwargs,
)
from napari_segpl.volume import Volume, read_volume

SHAPE = (10, 8, 6)  # RAS array: i towards the patient's right, j anterior, k superior
SPACING = np.array([2.0, 1.5, 3.0])
ORIGIN = np.array([-9.0, -5.25, -7.5])  # RAS position of the RAS array's first voxel
MARK = (8, 6, 4)  # right, anterior, superior: a corner a flipped axis would move far away
RAS_AFFINE = np.eye(4)
RAS_AFFINE[:3, :3] = np.diag(SPACING)
RAS_AFFINE[:3, 3] = ORIGIN


def _phantom() -> np.ndarray:
    array = np.full(SHAPE, 10.0, np.float32)
    array[MARK] = 1000.0
    return array


def _mark_in_lps() -> tuple[int, int, int]:
    """The marked voxel's index in the LPS array: i and j run the other way."""
    return SHAPE[0] - 1 - MARK[0], SHAPE[1] - 1 - MARK[1], MARK[2]


@pytest.fixture
def phantom_files(tmp_path: Path) -> tuple[Path, Path]:
    """The same phantom as an RAS NIfTI and as a DICOM-style LPS NRRD (identity direction)."""
    nifti = tmp_path / "phantom.nii.gz"
    nib.save(nib.Nifti1Image(_phantom(), RAS_AFFINE), nifti)
    lps = _phantom()[::-1, ::-1, :]  # LPS index (0, 0, 0) is the RAS array's (9, 7, 0)
    first = ORIGIN + SPACING * np.array([SHAPE[0] - 1, SHAPE[1] - 1, 0])  # its RAS position
    image = sitk.GetImageFromArray(np.ascontiguousarray(lps.transpose(2, 1, 0)))
    image.SetSpacing(SPACING.tolist())
    image.SetOrigin((-first[0], -first[1], first[2]))  # LPS = RAS with x and y negated
    nrrd = tmp_path / "phantom_lps.nrrd"
    sitk.WriteImage(image, str(nrrd))
    return nifti, nrrd


def _open(path: Path) -> Image:
    ((data, kwargs, kind),) = _reader.reader_function(str(path))
    assert kind == "image"
    return Image(data, **kwargs)


def _marked_index(layer: Image) -> tuple[int, ...]:
    return tuple(int(n) for n in np.unravel_index(np.argmax(layer.data), layer.data.shape))


def test_marked_voxel_is_at_one_world_point_in_both_files(phantom_files) -> None:
    nifti, nrrd = (_open(path) for path in phantom_files)
    assert _marked_index(nifti) == MARK and _marked_index(nrrd) == _mark_in_lps()
    by_hand = ORIGIN + SPACING * np.array(MARK)  # RAS mm of the marked voxel
    for layer in (nifti, nrrd):
        world = np.asarray(layer.data_to_world(_marked_index(layer)))
        np.testing.assert_allclose(world, by_hand, atol=0.01)
    # The whole volumes overlay too: the same box in the world.
    np.testing.assert_allclose(nifti.extent.world, nrrd.extent.world, atol=0.01)
    # Voxel steps run with the anatomy: +1 along the LPS array's i is 2 mm to the left.
    step = np.asarray(nrrd.data_to_world((1, 0, 0))) - np.asarray(nrrd.data_to_world((0, 0, 0)))
    np.testing.assert_allclose(step, [-2.0, 0.0, 0.0], atol=1e-9)


def test_viewer_opens_both_at_one_world_point(make_napari_viewer, phantom_files) -> None:
    viewer = make_napari_viewer()
    layers = [viewer.open(path, plugin="napari-segpl")[0] for path in phantom_files]
    points = [np.asarray(layer.data_to_world(_marked_index(layer))) for layer in layers]
    assert np.linalg.norm(points[0] - points[1]) < 0.01


def _paint_at(labels: Labels, world_point: np.ndarray, value: int) -> tuple[int, int, int]:
    """Set the labels voxel that lies at `world_point`, as a brush click there would."""
    index = tuple(int(n) for n in np.round(labels.world_to_data(world_point)))
    labels.data[index] = value
    return index


def test_mask_painted_on_one_grid_exports_on_the_other(phantom_files, tmp_path: Path) -> None:
    nifti, nrrd = (_open(path) for path in phantom_files)
    point = ORIGIN + SPACING * np.array(MARK)

    on_lps = Labels(np.zeros(SHAPE, np.uint8), **same_grid_kwargs(nrrd, "mask"))
    assert _paint_at(on_lps, point, 3) == _mark_in_lps()
    saved = nib.load(export_layer(on_lps, tmp_path / "on_ras", like=nifti))
    np.testing.assert_allclose(saved.affine, RAS_AFFINE, atol=1e-6)
    expected = np.zeros(SHAPE, np.uint8)
    expected[MARK] = 3
    np.testing.assert_array_equal(np.asanyarray(saved.dataobj), expected)

    on_ras = Labels(np.zeros(SHAPE, np.uint8), **same_grid_kwargs(nifti, "mask"))
    assert _paint_at(on_ras, point, 2) == MARK
    back = read_volume(export_layer(on_ras, tmp_path / "on_lps", like=nrrd))
    np.testing.assert_allclose(back.affine, nrrd.metadata[GRID_KEY]["affine"], atol=1e-6)
    expected = np.zeros(SHAPE, np.uint8)
    expected[_mark_in_lps()] = 2
    np.testing.assert_array_equal(back.array, expected)


def test_on_grid_takes_the_nearest_voxel_and_zero_outside() -> None:
    source = Volume(np.arange(64, dtype=np.int32).reshape(4, 4, 4), np.eye(4))
    coarse = np.diag([2.0, 2.0, 2.0, 1.0])  # voxel (i, j, k) is centred on source (2i, 2j, 2k)
    moved = on_grid(source, Volume(np.zeros((3, 3, 3), np.int32), coarse)).array
    expected = np.zeros((3, 3, 3), np.int32)
    expected[:2, :2, :2] = source.array[::2, ::2, ::2]  # index 4 is past the source's edge
    np.testing.assert_array_equal(moved, expected)


def test_radiological_view_is_the_same_for_both_files(phantom_files) -> None:
    nifti, nrrd = (_open(path) for path in phantom_files)
    for layer in (nifti, nrrd):
        affine = layer.metadata[GRID_KEY]["affine"]
        # Both worlds are RAS: axial slices show anterior up, the patient's right on the left.
        assert radiological_view(affine, 2) == ((2, 1, 0), ("up", "left"))
        assert radiological_view(affine, 2, scale=layer.scale) == ((2, 1, 0), ("up", "left"))
    # A layer placed in array order (unsigned spacing) needs the LPS array shown as it is.
    lps = nrrd.metadata[GRID_KEY]["affine"]
    assert radiological_view(lps, 2, scale=SPACING) == ((2, 1, 0), ("down", "right"))


def _bright_spot(viewer) -> tuple[float, float]:
    """Where the marked voxel shows on the canvas, as fractions of its width and height."""
    shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].sum(axis=-1)
    rows, cols = np.nonzero(shot > 0.9 * shot.max())
    return float(cols.mean()) / shot.shape[1], float(rows.mean()) / shot.shape[0]


def test_screen_shows_patient_right_on_the_left(make_napari_viewer, phantom_files) -> None:
    """The marked voxel (patient's right, anterior) shows left of and above the centre, for
    the NIfTI and for the LPS NRRD alike, in the axial radiological view."""
    viewer = make_napari_viewer(show=True)
    layers = [viewer.open(path, plugin="napari-segpl")[0] for path in phantom_files]
    (order, orientation) = radiological_view(layers[0].metadata[GRID_KEY]["affine"], 2)
    viewer.dims.order = order
    getattr(viewer, "scene", viewer).camera.orientation2d = orientation
    viewer.reset_view()
    viewer.dims.set_point(2, float(ORIGIN[2] + SPACING[2] * MARK[2]))
    for shown in layers:
        for layer in layers:
            layer.visible = layer is shown
            layer.contrast_limits = (0.0, 1000.0)
        x, y = _bright_spot(viewer)
        assert x < 0.5 and y < 0.5, (shown.name, x, y)


def test_layer_without_metadata_exports_where_napari_shows_it(tmp_path: Path) -> None:
    """A layer placed by napari's own reader (affine=, here flipped and rotated, with a scale
    and translate on top) is written on the grid that puts each voxel where napari shows it."""
    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    outer = np.array([[-c, -s, 0, 4.0], [s, -c, 0, -2.0], [0, 0, 1, 7.5], [0, 0, 0, 1]])
    data = np.zeros(SHAPE, np.uint8)
    data[MARK] = 5
    layer = Labels(data, scale=(1.5, 2.0, 0.5), translate=(3.0, -1.0, 2.0), affine=outer)
    for out in (
        export_layer(layer, tmp_path / "plain"),
        Path(
            _writer.write_labels(str(tmp_path / "state.nii.gz"), *layer.as_layer_data_tuple()[:2])[
                0
            ]
        ),
    ):
        saved = nib.load(out)
        for index in [(0, 0, 0), MARK, (9, 0, 5)]:
            world = np.asarray(layer.data_to_world(index))  # napari's own transform
            np.testing.assert_allclose(saved.affine @ [*index, 1.0], [*world, 1.0], atol=1e-5)
        np.testing.assert_array_equal(np.asanyarray(saved.dataobj), data)
    assert same_grid_kwargs(layer, "copy")["affine"].shape == (4, 4)
    copy = Labels(data, **same_grid_kwargs(layer, "copy"))
    np.testing.assert_allclose(copy.data_to_world(MARK), layer.data_to_world(MARK), atol=1e-9)


def _rotation(degrees_z: float, degrees_x: float) -> np.ndarray:
    a, b = np.radians(degrees_z), np.radians(degrees_x)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.mark.parametrize("flip", [(1.0, 1.0, 1.0), (-1.0, -1.0, 1.0)])
def test_oblique_grid_sits_on_its_nearest_axis_aligned_grid(flip, tmp_path: Path) -> None:
    """napari cannot slice a rotated layer, so an oblique grid is shown axis-aligned: its first
    voxel at its RAS position and each step the voxel size along the axis it runs nearest;
    the export is still on the exact oblique grid."""
    affine = np.eye(4)
    affine[:3, :3] = np.diag(flip) @ _rotation(20.0, -12.0) @ np.diag(SPACING)
    affine[:3, 3] = [-41.5, 17.25, -63.0]
    volume = Volume(_phantom(), affine)
    layer = Image(volume.array, **layer_kwargs(volume, "oblique"))
    np.testing.assert_allclose(layer.data_to_world((0, 0, 0)), affine[:3, 3], atol=1e-9)
    # The rotation is under 45 degrees, so array axis d runs nearest RAS axis d, flipped or not.
    np.testing.assert_allclose(layer.scale, np.array(flip) * SPACING, atol=1e-9)
    out = export_layer(
        Labels(np.zeros(SHAPE, np.uint8), **same_grid_kwargs(layer, "m")), tmp_path / "m"
    )
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-5)
    np.testing.assert_allclose(grid_of(layer).affine, affine, atol=1e-12)


def test_reader_names_the_dicom_series_and_says_which_was_read() -> None:
    """The series a folder's layer came from is in its metadata, and a note from the volume
    reader (which of several series it read) reaches the user as a warning."""
    volume = Volume(_phantom(), RAS_AFFINE, Path("folder"))
    volume.series_uid = "1.2.840.5"  # set by read_volume for DICOM folders
    volume.note = "read series 1.2.840.5 (6 slices) of 2"
    with pytest.warns(UserWarning, match=r"^scan: read series 1\.2\.840\.5 \(6 slices\) of 2$"):
        _, kwargs, _ = _reader.volume_layer(volume, "scan")
    assert kwargs["metadata"][_reader.SERIES_KEY] == "1.2.840.5"
    plain = Volume(_phantom(), RAS_AFFINE, Path("phantom.nii.gz"))
    assert _reader.SERIES_KEY not in _reader.volume_layer(plain, "phantom")[1]["metadata"]


def test_permuted_grid_keeps_array_axes_with_ras_coordinates() -> None:
    """A sagittal-style grid (array axes run posterior, superior, left): napari slices only
    along array axes, so world axis d is array axis d, holding the RAS coordinate along the
    anatomical axis it runs (y, z, x), growing towards A, S and R."""
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2] = -0.5, 1.2, -3.0  # i -> P, j -> S, k -> L
    affine[:, 3] = [40.0, 25.0, -60.0, 1.0]
    volume = Volume(np.zeros((6, 5, 4), np.float32), affine)
    layer = Image(volume.array, **layer_kwargs(volume, "sagittal"))
    for index in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        ras = affine @ [*index, 1.0]
        np.testing.assert_allclose(layer.data_to_world(index), ras[[1, 2, 0]], atol=1e-9)
    # Slices along k (sagittal): superior up, anterior on the screen's left.
    assert radiological_view(affine, 2) == ((2, 1, 0), ("up", "left"))


def _write_dicom(folder: Path, uid: str, lps: np.ndarray, first: np.ndarray) -> None:
    """An axial series of the LPS array (i, j, k): one file per k, positions in LPS mm."""
    folder.mkdir(exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(lps.shape[2]):
        plane = sitk.GetImageFromArray(np.ascontiguousarray(lps[:, :, k].T.astype(np.int16)))
        plane.SetSpacing((SPACING[0], SPACING[1]))
        position = first + [0.0, 0.0, SPACING[2] * k]
        tags = {
            "0008|0060": "CT",
            "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": "1.2.3",
            "0020|000e": uid,
            "0020|0032": "\\".join(f"{p:.4f}" for p in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{SPACING[1]}\\{SPACING[0]}",  # row spacing (j), column spacing (i)
            "0020|0013": str(k + 1),
        }
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{uid[-1]}_{k:03d}.dcm"))
        writer.Execute(plane)


def test_dicom_series_overlays_the_nifti_and_is_named(phantom_files, tmp_path: Path) -> None:
    """A DICOM folder (LPS, the phantom's series beside a 2-slice scout) opens with the marked
    voxel at the NIfTI's world point, its series UID in the metadata and a note saying so."""
    lps = _phantom()[::-1, ::-1, :]
    corner = ORIGIN + SPACING * np.array([SHAPE[0] - 1, SHAPE[1] - 1, 0])
    first = corner * [-1.0, -1.0, 1.0]  # the LPS array's first voxel, in LPS mm
    folder = tmp_path / "study"
    _write_dicom(folder, "1.2.3.1", np.zeros((SHAPE[0], SHAPE[1], 2)), first)  # the scout
    _write_dicom(folder, "1.2.3.2", lps, first)
    with pytest.warns(UserWarning, match="study: .*1.2.3.2"):
        ((data, kwargs, _),) = _reader.reader_function(str(folder))
    assert kwargs["metadata"][_reader.SERIES_KEY] == "1.2.3.2"
    dicom, nifti = Image(data, **kwargs), _open(phantom_files[0])
    np.testing.assert_allclose(
        dicom.data_to_world(_marked_index(dicom)), nifti.data_to_world(MARK), atol=0.01
    )


def _permuted_and_oblique() -> list[np.ndarray]:
    permuted = np.zeros((4, 4))
    permuted[1, 0], permuted[2, 1], permuted[0, 2] = -0.5, 1.2, -3.0  # i -> P, j -> S, k -> L
    permuted[:, 3] = [40.0, 25.0, -60.0, 1.0]
    oblique = np.eye(4)
    oblique[:3, :3] = _rotation(20.0, -12.0) @ np.diag(SPACING)
    oblique[:3, 3] = [-41.5, 17.25, -63.0]
    return [permuted, oblique]


@pytest.mark.parametrize("which", [0, 1], ids=["permuted", "oblique"])
def test_a_plain_labels_layer_over_an_image_exports_on_the_images_grid(which, tmp_path, qtbot):
    """napari's own New labels copies the image's scale and translate but not its metadata:
    over a permuted or oblique scan that transform is not the scan's grid. The dock's export
    and File > Save Layer borrow the grid of the image the layer overlays voxel for voxel."""
    import napari

    affine = _permuted_and_oblique()[which]
    volume = Volume(_phantom(), affine)
    image = Image(volume.array, **layer_kwargs(volume, "scan"))
    plain = Labels(np.ones(SHAPE, np.uint8), scale=image.scale, translate=image.translate)
    assert GRID_KEY not in plain.metadata
    alone = export_layer(plain, tmp_path / "alone")  # no image to go by: napari's transform
    assert not np.allclose(nib.load(alone).affine, affine, atol=1e-3)
    out = export_layer(plain, tmp_path / "m", others=[image])
    np.testing.assert_allclose(nib.load(out).affine, affine, atol=1e-5)
    moved = Labels(plain.data, scale=image.scale, translate=np.add(image.translate, 1.0))
    assert not np.allclose(grid_of(moved, [image]).affine, affine, atol=1e-3)  # not overlaid
    viewer = napari.Viewer(show=False)
    try:
        viewer.add_layer(image)
        viewer.add_layer(plain)
        saved = _writer.write_labels(str(tmp_path / "w.nii.gz"), plain.data, plain._get_state())
        np.testing.assert_allclose(nib.load(saved[0]).affine, affine, atol=1e-5)
    finally:
        viewer.close()
