"""napari writers: labels and image layers to NIfTI on the grid they were read from.

napari hands writers ``(path, data, meta)`` where ``meta`` is the layer state, so the grid
recorded by the reader (``meta["metadata"]["segpl_grid"]``) is available here too; layers
without it are written on the grid their napari transform gives (scale, translate, rotate,
shear, affine; the world read as RAS).
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path
from typing import Any

from .atomic import temp_path
from .layers import grid_from_parts, write_on_grid
from .volume import Volume, VolumeError


class SegplWriteError(RuntimeError):
    """A layer could not be written; raised instead of VolumeError because napari treats a
    ValueError from a writer as "no writer found" and would hide the reason."""


def _viewer_layers() -> list[Any]:
    """The layers of napari's current viewer (none without one): a layer napari's own New
    labels made has no grid of its own, the image it overlays has."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 (no napari, no Qt: a headless writer call)
        return []
    return list(viewer.layers) if viewer is not None else []


def _grid(data: Any, meta: dict[str, Any], name: str) -> Volume:
    """The layer's data on its source grid (from the layer state napari hands writers)."""
    try:
        return grid_from_parts(
            data,
            meta.get("metadata"),
            meta.get("scale"),
            meta.get("translate"),
            name,
            rotate=meta.get("rotate"),
            shear=meta.get("shear"),
            affine=meta.get("affine"),
            others=_viewer_layers(),
        )
    except VolumeError as exc:
        raise SegplWriteError(str(exc)) from exc


def _write_grid(grid: Volume, path: str | Path, labels: bool) -> str:
    try:
        return str(write_on_grid(grid, path, labels=labels))
    except VolumeError as exc:
        raise SegplWriteError(str(exc)) from exc


def _write(path: str, data: Any, meta: dict[str, Any], *, labels: bool) -> list[str]:
    name = str(meta.get("name") or Path(path).name)
    return [_write_grid(_grid(data, meta, name), path, labels)]


def write_labels(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: one labels layer as integer NIfTI on its source grid."""
    return _write(path, data, meta, labels=True)


def write_image(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 writer: one image layer as float32 NIfTI on its source grid."""
    return _write(path, data, meta, labels=False)


def write_layers(path: str, layer_data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """npe2 writer for several image and labels layers at once (napari's "Save Selected
    Layers" with more than one selected): a folder named after ``path`` (a .nii/.nii.gz suffix
    dropped) holding one NIfTI file per layer, named after the layer, each on its own source
    grid. Without it napari found no writer and saved nothing, silently.

    All or nothing: every layer is checked (kind, grid, file name, no existing file replaced)
    and then written to a hidden file in the folder; only when every one is written are they
    renamed into place. A failure, a bad voxel type or a full disk included, leaves no file of
    the set behind, and the folder is removed again if this call created it."""
    folder = Path(re.sub(r"\.nii(\.gz)?$", "", str(path)))
    if folder.exists() and not folder.is_dir():
        raise SegplWriteError(f"{folder} is a file, not a folder; choose another name")
    plans, names = [], set()
    for data, meta, kind in layer_data:
        if kind not in ("image", "labels"):
            raise SegplWriteError(f"cannot write a {kind} layer as NIfTI")
        stem = _file_stem(str(meta.get("name") or kind))
        name, n = stem, 1
        while name.casefold() in names:  # "Mask" and "mask" are one file on macOS and Windows
            n += 1
            name = f"{stem}-{n}"
        names.add(name.casefold())
        out = folder / f"{name}.nii.gz"
        if out.exists():
            raise SegplWriteError(f"{out} already exists; choose another folder")
        plans.append((_grid(data, meta, name), out, kind == "labels"))
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged: list[Path] = []
    placed: list[Path] = []
    try:
        for grid, out, labels in plans:
            part = temp_path(out, token)
            staged.append(part)
            try:
                _write_grid(grid, part, labels)
            except SegplWriteError as exc:  # named as the user will look for it, not hidden
                raise SegplWriteError(str(exc).replace(str(part), str(out))) from exc
        for part, (_, out, _) in zip(staged, plans, strict=True):
            if out.exists():  # appeared while writing: still never replaced
                raise SegplWriteError(f"{out} already exists; choose another folder")
            os.replace(part, out)
            placed.append(out)
    except BaseException:
        for leftover in (*staged, *placed):
            leftover.unlink(missing_ok=True)
        for made in created:  # deepest first; only ones this call created, and only if empty
            with contextlib.suppress(OSError):
                made.rmdir()
        raise
    return [str(out) for _, out, _ in plans]


def _file_stem(name: str) -> str:
    """A layer name made safe as a file name (path separators and odd characters become _)."""
    stem = re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" .")
    return stem or "layer"
