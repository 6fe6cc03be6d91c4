"""Which slices of a labels volume hold painted voxels, kept up to date stroke by stroke.

Scanning the whole volume (``np.any`` over 100 million voxels for a 512 x 512 x 400 volume)
takes long enough to freeze the window after every stroke. A full scan happens only when the
layer, its data or the axis changes; a stroke re-checks only the slices it touched, which
napari's ``paint`` event names (its undo-history atoms). No Qt here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..engine import labelled_slices


def touched_slices(atoms: Iterable[object], axis: int, size: int) -> set[int]:
    """Slice indices along ``axis`` that the undo-history atoms of a paint event changed.

    An atom is napari's ``(indices, old values, new values)`` tuple (``data_setitem``) or a
    masked atom with a ``slice_key`` bounding box (brush, fill, polygon); ``size`` is the
    volume's length along ``axis``."""
    touched: set[int] = set()
    for atom in atoms:
        key = getattr(atom, "slice_key", None)
        if key is not None:
            part = key[axis]
            if isinstance(part, slice):
                touched.update(range(*part.indices(size)))
            else:
                touched.add(int(part))
            continue
        indices = atom[0]
        along = np.asarray(indices[axis]).ravel()
        touched.update(int(i) for i in np.unique(along))
    return touched


class PaintedSlices:
    """The set of painted slices of one labels array along one axis."""

    def __init__(self) -> None:
        self.slices: set[int] = set()
        self.full_scans = 0

    def rescan(self, data: np.ndarray | None, axis: int) -> None:
        """Every slice (when the layer, its data or the axis changed)."""
        self.full_scans += 1
        if data is None or np.ndim(data) != 3:
            self.slices = set()
            return
        self.slices = set(labelled_slices(np.asarray(data), axis))

    def check(self, data: np.ndarray, axis: int, slices: Iterable[int]) -> bool:
        """Re-check only ``slices``; True when the set changed."""
        if np.ndim(data) != 3:
            return False
        before = set(self.slices)
        n = np.shape(data)[axis]
        for s in slices:
            if not 0 <= s < n:
                continue
            index = [slice(None)] * 3
            index[axis] = s
            if np.any(np.asarray(data[tuple(index)])):
                self.slices.add(s)
            else:
                self.slices.discard(s)
        return self.slices != before
