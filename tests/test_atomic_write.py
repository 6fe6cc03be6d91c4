"""Exports never leave a broken file: a failure while overwriting keeps the old file byte for
byte and leaves no temporary file, and a multi-layer save writes all its files or none."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_segpl import _writer
from napari_segpl.volume import Volume, write_nifti

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
SHAPE = (6, 5, 4)


@pytest.fixture
def grid() -> Volume:
    return Volume(np.zeros(SHAPE, np.float32), AFFINE)


def fail_mid_write(monkeypatch, exc: BaseException, after: int = 0) -> list[str]:
    """nibabel's save writes part of the file it is given, then fails (after ``after`` good
    saves); returns the names it was asked to write."""
    real = nib.Nifti1Image.to_filename
    calls: list[str] = []

    def broken(self, filename, **kwargs):
        calls.append(str(filename))
        if len(calls) <= after:
            return real(self, filename, **kwargs)
        Path(filename).write_bytes(b"\x5c\x01\x00\x00partial header")
        raise exc

    monkeypatch.setattr(nib.Nifti1Image, "to_filename", broken)
    return calls


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
@pytest.mark.parametrize("name", ["mask.nii.gz", "mask.nii"])
def test_failed_overwrite_keeps_the_old_file(tmp_path, grid, monkeypatch, exc, name):
    old = np.zeros(SHAPE, np.uint8)
    old[1:3, 2, 1] = 7
    target = write_nifti(old, grid, tmp_path / name)
    before = target.read_bytes()
    calls = fail_mid_write(monkeypatch, exc)
    with pytest.raises(type(exc)):
        write_nifti(np.ones(SHAPE, np.uint8), grid, target)
    assert calls and all(Path(c) != target for c in calls)  # never written in place
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left


def test_overwrite_replaces_whole_file_with_usual_permissions(tmp_path, grid):
    target = write_nifti(np.zeros(SHAPE, np.uint8), grid, tmp_path / "mask.nii.gz")
    new = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
    write_nifti(new, grid, target)
    np.testing.assert_array_equal(np.asarray(nib.load(target).dataobj), new)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it


def layer(name: str, data: np.ndarray, kind: str = "labels") -> tuple:
    return data, {"name": name, "scale": (0.8, 0.8, 2.0), "translate": (0, 0, 0)}, kind


def test_single_layer_writer_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "seg.nii.gz"
    _writer.write_labels(str(target), *layer("seg", np.ones(SHAPE, np.int32))[:2])
    before = target.read_bytes()
    fail_mid_write(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(OSError):
        _writer.write_labels(str(target), *layer("seg", np.zeros(SHAPE, np.int32))[:2])
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]


def test_set_with_a_bad_layer_writes_nothing(tmp_path):
    good = layer("liver", np.ones(SHAPE, np.int32))
    half = np.full(SHAPE, 0.5, np.float32)  # labels that are not whole numbers
    with pytest.raises(_writer.SegplWriteError, match="whole numbers"):
        _writer.write_layers(str(tmp_path / "set.nii.gz"), [good, layer("bad", half)])
    assert list(tmp_path.iterdir()) == []  # not even the folder


def test_set_failing_on_disk_leaves_nothing_and_keeps_an_existing_folder(tmp_path, monkeypatch):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    layers = [layer("a", np.ones(SHAPE, np.int32)), layer("b", np.zeros(SHAPE, np.float32))]
    calls = fail_mid_write(monkeypatch, OSError(28, "No space left on device"), after=1)
    with pytest.raises(OSError):
        _writer.write_layers(str(folder), layers)
    assert len(calls) == 2  # the first layer was written, the second failed
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"


def test_set_written_whole_and_names_differing_in_case_kept_apart(tmp_path):
    layers = [layer("Mask", np.ones(SHAPE, np.int32)), layer("mask", np.zeros(SHAPE, np.int32))]
    layers.append(layer("t1", np.full(SHAPE, 3.5, np.float32), kind="image"))
    written = _writer.write_layers(str(tmp_path / "set"), layers)
    assert [Path(p).name for p in written] == ["Mask.nii.gz", "mask-2.nii.gz", "t1.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "set").iterdir()) == sorted(
        Path(p).name for p in written
    )
    assert np.asarray(nib.load(written[0]).dataobj).min() == 1
    assert np.asarray(nib.load(written[1]).dataobj).max() == 0
    np.testing.assert_allclose(np.asarray(nib.load(written[2]).dataobj), 3.5)


def test_set_into_a_path_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "set"
    blocker.write_text("a file, not a folder")
    with pytest.raises(_writer.SegplWriteError, match="not a folder"):
        _writer.write_layers(str(blocker), [layer("a", np.ones(SHAPE, np.int32))])
    assert blocker.read_text() == "a file, not a folder"
