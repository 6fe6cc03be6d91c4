"""Write a file whole or not at all: the one place that does the temp-then-rename dance.

A writer is given a hidden path beside the destination (same folder, so the final
``os.replace`` is an atomic rename on one file system, never a copy) that ends with the
destination's suffix, so nibabel, SimpleITK or torch see the format they would for the real
name. Only when the writer returns is the file renamed over the destination; any failure,
Ctrl-C included, removes the temporary file and leaves the old destination byte for byte.

Stdlib only (no torch, Qt or napari): the engine imports it too. The temporary name is
chosen here rather than by ``tempfile.mkstemp`` so the writer creates the file itself and it
gets the usual permissions (``0o666`` less the umask) rather than mkstemp's ``0o600``.
No ``fsync``: the callers never did; the rename already keeps a half-written file away from
the destination, which is what they promise.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

__all__ = ["temp_path", "write_atomically"]

_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def _suffix(name: str) -> str:
    """The format suffix, lower case (what readers and writers match on): ``.md``, ``.pt``,
    ``.nii``, and for compressed files the two last ones, ``.nii.gz``."""
    path = Path(name.lower())
    if path.suffix in _COMPRESSED and Path(path.stem).suffix:
        return Path(path.stem).suffix + path.suffix
    return path.suffix


def temp_path(path: str | Path, token: str | None = None) -> Path:
    """A hidden name beside ``path`` that no other writer picks:
    ``.NAME.TOKEN.part.SUFFIX`` (``token`` lets a set of files share one)."""
    path = Path(path)
    token = token or uuid.uuid4().hex[:8]
    return path.with_name(f".{path.name}.{token}.part{_suffix(path.name)}")


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write the whole file at a temporary path beside ``path``, then
    rename it over ``path``. On any error the temporary file is removed and the error raised;
    ``path`` is then the old file (or still absent). The folder must exist."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        _write_named(write, tmp, path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # the writer's own error is the one to report
            tmp.unlink(missing_ok=True)
        raise
    return path


def _write_named(write: Callable[[Path], object], tmp: Path, path: Path) -> None:
    """``write(tmp)``; an OS error that does not name ``path`` already (a full disk, a folder
    that refuses files) is said of ``path``, not of the hidden temporary name the user never
    gave."""
    try:
        write(tmp)
    except OSError as exc:
        if str(path) in str(exc):
            raise
        raise OSError(f"{path}: cannot write ({exc.strerror or exc})") from exc
