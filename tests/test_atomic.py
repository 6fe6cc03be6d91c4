"""napari_segpl.atomic: a writer that fails half-way leaves no temporary file, and the
destination is either absent or the old file byte for byte; a whole write replaces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_segpl.atomic import temp_path, write_atomically


def half_then(exc: BaseException, seen: list[Path]):
    """A writer that writes part of its file, then fails with ``exc``."""

    def write(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"half a fi")
        raise exc

    return write


FAILURES = [OSError(28, "No space left on device"), KeyboardInterrupt(), ValueError("bad")]


@pytest.mark.parametrize("exc", FAILURES, ids=lambda e: type(e).__name__)
def test_failure_leaves_neither_destination_nor_temporary_file(tmp_path, exc):
    seen: list[Path] = []
    with pytest.raises(type(exc)):
        write_atomically(tmp_path / "out.bin", half_then(exc, seen))
    assert len(seen) == 1 and seen[0].parent == tmp_path  # it did write, beside the target
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exc", FAILURES, ids=lambda e: type(e).__name__)
def test_failure_keeps_an_existing_destination_untouched(tmp_path, exc):
    target = tmp_path / "model.pt"
    target.write_bytes(b"the good old model")
    with pytest.raises(type(exc)):
        write_atomically(target, half_then(exc, []))
    assert target.read_bytes() == b"the good old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_failing_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    target.write_text("old")

    def refuse(*args: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(PermissionError):
        write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_whole_write_replaces_the_destination_and_returns_it(tmp_path):
    target = tmp_path / "table.md"
    target.write_text("old")
    assert write_atomically(str(target), lambda tmp: tmp.write_text("new")) == target
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["table.md"]


@pytest.mark.parametrize(
    ("name", "suffix"),
    [("mask.nii.gz", ".nii.gz"), ("MASK.NII.GZ", ".nii.gz"), ("scan.v2.nii", ".nii"),
     ("m.pt", ".pt"), ("ct.mha", ".mha"), ("notes", "")],
)  # fmt: skip
def test_temporary_name_is_hidden_beside_and_keeps_the_format_suffix(tmp_path, name, suffix):
    tmp = temp_path(tmp_path / name)
    assert tmp.parent == tmp_path and tmp.name.startswith(f".{name}.")
    assert tmp.name.endswith(f".part{suffix}") and tmp != temp_path(tmp_path / name)
    assert temp_path(tmp_path / name, "abc") == tmp_path / f".{name}.abc.part{suffix}"


def test_nibabel_infers_compression_from_the_temporary_name(tmp_path):
    """The writer sees ``.nii.gz`` at the end, so nibabel gzips; the result is a real gzip."""
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    target = write_atomically(
        tmp_path / "mask.nii.gz", lambda tmp: nib.save(nib.Nifti1Image(data, np.eye(4)), tmp)
    )
    assert target.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(np.asarray(nib.load(target).dataobj), data)


def test_stays_importable_without_torch_qt_or_napari():
    """The engine imports it: it must not pull in a GUI (or anything heavy) itself."""
    code = (
        "import sys, napari_segpl.atomic; "
        "print(sorted(m for m in ('torch', 'qtpy', 'PyQt5', 'napari') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_writers_os_error_is_said_of_the_destination_not_the_hidden_file(tmp_path):
    """Every writer (masks, models, compare files): '[Errno 28] ...: .out.nii.gz.1a2b.part
    .nii.gz' named a file the user never gave; an error naming the destination stays as is."""
    target = tmp_path / "out.nii.gz"

    def full(tmp: Path) -> None:
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError) as err:
        write_atomically(target, full)
    assert str(err.value) == f"{target}: cannot write (No space left on device)"
    assert ".part" not in str(err.value) and list(tmp_path.iterdir()) == []

    def own(tmp: Path) -> None:
        raise OSError(f"{target}: cannot write the model file (torch said so)")

    with pytest.raises(OSError, match=r"cannot write the model file \(torch said so\)$"):
        write_atomically(target, own)
