"""A damaged MetaImage (.mha, .mhd): MetaIO prints its reasons on the terminal in several lines
(from C++, where Python cannot hold them back), and reads a bad compressed stream as garbage
without failing. The damage is found before ITK reads the file: one line, nothing printed."""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from napari_segpl.volume import VolumeError, read_volume

VOXELS = (np.arange(4 * 6 * 5).reshape(4, 6, 5) % 7).astype(np.float32)  # z, y, x


def _write(path: Path, compress: bool = False, **metadata: str) -> bytes:
    image = sitk.GetImageFromArray(VOXELS)
    for key, value in metadata.items():
        image.SetMetaData(key, value)
    sitk.WriteImage(image, str(path), compress)
    return path.read_bytes()


def _data_at(raw: bytes) -> int:
    """Where a LOCAL MetaImage's voxel data begin."""
    return raw.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")


def _cut_in_voxels(raw: bytes) -> bytes:
    return raw[: _data_at(raw) + 12]


def _cut_in_header(raw: bytes) -> bytes:
    return raw[: raw.index(b"DimSize")]


def _bad_dim_size(raw: bytes) -> bytes:
    return raw.replace(b"DimSize = 5 6 4", b"DimSize = 5 6 x")


def _bad_stream(raw: bytes) -> bytes:
    """Bytes changed inside the deflate stream: MetaIO said "Uncompress failed" and read on."""
    start = _data_at(raw) + 5
    return raw[:start] + b"\x13" * 7 + raw[start + 7 :]


def _flagged_compressed(raw: bytes) -> bytes:
    """Plain voxels under CompressedData = True: MetaIO read garbage the same way."""
    return raw.replace(b"CompressedData = False", b"CompressedData = True")


@pytest.mark.parametrize(
    ("name", "compress", "damage", "reason"),
    [
        ("cut.mha", False, _cut_in_voxels, "a truncated MetaImage: 12 of 480 bytes"),
        ("head.mha", False, _cut_in_header, "a MetaImage header cut short"),
        ("dims.mha", False, _bad_dim_size, "a damaged MetaImage header (DimSize 5 6 x"),
        ("stream.mha", True, _bad_stream, "a truncated or damaged compressed MetaImage"),
        ("zcut.mha", True, _cut_in_voxels, "a truncated or damaged compressed MetaImage"),
        ("flag.mha", False, _flagged_compressed, "damaged compressed MetaImage: 0 of 480"),
    ],
)
def test_a_damaged_metaimage_is_refused_in_one_line_and_itk_prints_nothing(
    tmp_path, capfd, name, compress, damage, reason
):
    path = tmp_path / name
    path.write_bytes(damage(_write(path, compress)))
    capfd.readouterr()
    with pytest.raises(VolumeError) as info:
        read_volume(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot read image file (") and reason in message
    assert "\n" not in message
    assert capfd.readouterr() == ("", "")  # before: "MetaImage: M_ReadElementsData: ..."


@pytest.mark.parametrize("compress", [False, True])
def test_a_metaimage_header_with_its_data_file_cut_or_missing(tmp_path, capfd, compress):
    path = tmp_path / "t.mhd"
    _write(path, compress)
    (data,) = (p for p in tmp_path.iterdir() if p != path)
    data.write_bytes(data.read_bytes()[:-20])
    capfd.readouterr()
    with pytest.raises(VolumeError, match="truncated"):
        read_volume(path)
    data.unlink()
    with pytest.raises(VolumeError, match=f"the data file {data.name} it names is missing"):
        read_volume(path)
    assert capfd.readouterr() == ("", "")


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("ext", [".mha", ".mhd"])
def test_a_whole_metaimage_still_reads_as_before(tmp_path, capfd, ext, compress):
    """ITK's metadata keys (a DICOM tag, words with spaces) and CRLF line ends are no damage."""
    path = tmp_path / f"t{ext}"
    raw = _write(path, compress, **{"0008|0060": "CT", "my key-1.x": "a = b"})
    if ext == ".mha":
        at = _data_at(raw)
        path.write_bytes(raw[:at].replace(b"\n", b"\r\n") + raw[at:])
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.array, VOXELS.transpose(2, 1, 0))
    assert capfd.readouterr() == ("", "")


def _big_endian_mha(path: Path, voxels: np.ndarray) -> None:
    """A compressed MetaImage of big-endian voxels, as other writers than ITK leave them (with
    CompressedDataSize: MetaIO inflates a LOCAL stream without it as garbage)."""
    data = zlib.compress(voxels.astype(voxels.dtype.newbyteorder(">")).tobytes())
    dims = " ".join(map(str, voxels.shape[::-1]))
    path.write_bytes(
        b"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = True\n"
        + f"CompressedData = True\nCompressedDataSize = {len(data)}\nDimSize = {dims}\n".encode()
        + b"ElementSpacing = 0.5 0.75 2\nOffset = 1 -2 3\n"
        + b"ElementType = MET_SHORT\nElementDataFile = LOCAL\n"
        + data
    )


def test_compressed_voxels_are_inflated_once_by_the_check_not_again_by_itk(
    tmp_path, monkeypatch, capfd
):
    """The check inflated a compressed MetaImage's voxels (to find a bad stream) and dropped
    them, then ITK inflated them all again. Now the check's voxels are read and ITK reads the
    header alone: the same array and affine as ITK's, SimpleITK's ReadImage never called."""
    direction = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    paths = []
    for n, dtype in enumerate((np.uint8, np.int16, np.float32, np.float64)):
        image = sitk.GetImageFromArray((VOXELS * 9 - 20).astype(dtype))
        image.SetSpacing((0.5, 0.75, 2.0))
        image.SetOrigin((1.0, -2.0, 3.0))
        image.SetDirection(direction)
        paths.append(tmp_path / f"t{n}{'.mha' if n % 2 else '.mhd'}")  # .mhd: a .zraw beside
        sitk.WriteImage(image, str(paths[-1]), True)
    paths.append(tmp_path / "msb.mha")
    _big_endian_mha(paths[-1], (VOXELS * 1000 - 3000).astype(np.int16))
    itk = {p: sitk.ReadImage(str(p)) for p in paths}

    def inflated_again(*args: object, **kwargs: object) -> None:
        raise AssertionError("SimpleITK read (and inflated) the voxels again")

    monkeypatch.setattr(sitk, "ReadImage", inflated_again)
    for path, image in itk.items():
        vol = read_volume(path)
        expected = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
        assert vol.array.dtype == expected.dtype and vol.array.dtype.isnative, path
        np.testing.assert_array_equal(vol.array, expected)
        assert vol.spacing == pytest.approx((0.5, 0.75, 2.0))
        assert vol.affine[:3, 3] == pytest.approx([-1.0, 2.0, 3.0])  # LPS to RAS
    assert capfd.readouterr() == ("", "")


def test_checking_a_compressed_metaimage_keeps_no_more_than_a_chunk(tmp_path):
    """The check alone (no voxels kept) inflates 16 MiB of voxels in a few MiB of memory."""
    from napari_segpl.metaimage import metaimage_damage

    path = tmp_path / "big.mha"
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 4, (64, 256, 256)).astype(np.float32))
    sitk.WriteImage(image, str(path), True)
    tracemalloc.start()
    try:
        assert metaimage_damage(path) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * 2**20, peak  # the data inflate to 16 MiB
