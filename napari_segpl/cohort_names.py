"""The mask a cohort writes for each input: ``<name>_mask.nii.gz``, the same file on a rerun,
and never one name for two inputs (``cohort.py`` imports it; ``segpl predict --out``)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from .volume import NIFTI_EXTENSIONS, SITK_EXTENSIONS

__all__ = ["MASK_SUFFIX", "mask_names"]

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
