"""The mask a cohort writes for each input: ``<name>_mask.nii.gz``, the same file on a rerun,
and never one name for two inputs; and the ``--out`` folder they go in, made for the run and
removed again if it stops with none written (``cohort.py`` imports both; ``segpl predict``)."""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

from .volume import NIFTI_EXTENSIONS, SITK_EXTENSIONS

__all__ = ["MASK_SUFFIX", "mask_names", "out_folder"]

MASK_SUFFIX = "_mask.nii.gz"
SUFFIXES = NIFTI_EXTENSIONS + SITK_EXTENSIONS


def mask_names(sources: Sequence[Path]) -> list[str]:
    """``<name>_mask.nii.gz`` per source; sources of the same name are told apart by their
    folders (``a_scan``, ``b_scan``), then numbers, so a rerun maps each to the same file."""
    names = []
    for p in sources:  # the name without its format's extension (a folder: its name, "." too)
        name = Path(os.path.abspath(p)).name or p.name
        ext = next((e for e in SUFFIXES if not p.is_dir() and name.lower().endswith(e)), "")
        names.append(name[: len(name) - len(ext)] or name)
    # names compared without case: Scan and scan are one file on macOS and Windows
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[name.casefold()].append(i)
    for members in groups.values():
        if len(members) == 1:
            continue
        parents = {i: sources[i].resolve().parent.parts[1:] for i in members}
        folders = {tuple(part.casefold() for part in p) for p in parents.values()}
        for depth in range(1, max(len(p) for p in parents.values()) + 2):
            trial = {i: "_".join([*parents[i][-depth:], names[i]]) for i in members}
            if len({v.casefold() for v in trial.values()}) == len(folders):  # as apart as
                break  # folders go
        for i in members:
            names[i] = trial[i]
    seen: set[str] = set()
    for i, name in enumerate(names):
        n = 1
        while names[i].casefold() in seen:  # the same name in one folder (scan.nii, scan.nrrd)
            n += 1
            names[i] = f"{name}-{n}"
        seen.add(names[i].casefold())
    return [name + MASK_SUFFIX for name in names]


@contextlib.contextmanager
def out_folder(out: Path) -> Iterator[None]:
    """``out`` made (parents too) for the ``with`` block; each folder made here is removed again
    when the block ends, however it ends, if still empty: a Ctrl-C or an error before the first
    mask leaves nothing behind. A folder that was there, or holds anything, is never touched."""
    missing = []
    for folder in (out, *out.parents):
        if folder.exists() or folder.is_symlink():  # a dangling link: mkdir below says why
            break
        missing.append(folder)
    made: list[tuple[Path, tuple[int, int]]] = []  # deepest last, with its device and inode
    try:
        try:
            for folder in reversed(missing):
                try:
                    folder.mkdir()
                except FileExistsError:  # made meanwhile by someone else: not ours to remove
                    if not folder.is_dir():
                        raise
                    continue
                st = folder.stat()
                made.append((folder, (st.st_dev, st.st_ino)))
            out.mkdir(parents=True, exist_ok=True)  # a file at ``out``: FileExistsError
        except OSError as exc:  # a file there, a read-only disk: said as such, one line
            cause = f"cannot create ({exc.strerror})"
            what = "is a file; give a folder" if out.is_file() else cause
            raise ValueError(f"--out {out}: {what}") from exc
        yield
    finally:
        for folder, identity in reversed(made):  # deepest first; stop at the first one kept
            if not _remove_empty(folder, identity):
                break


def _remove_empty(folder: Path, identity: tuple[int, int]) -> bool:
    """Whether ``folder`` is gone: removed if it is still the one made (not replaced since) and
    empty. rmdir itself refuses a folder holding anything, so a mask is never lost."""
    try:
        st = folder.stat()
        if (st.st_dev, st.st_ino) != identity:
            return False
        folder.rmdir()
    except FileNotFoundError:
        return True
    except OSError:  # not empty (a mask, a part file), or not ours to remove any more
        return False
    return True
