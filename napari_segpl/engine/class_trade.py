"""A class trade: a semi-supervised mask with the classes it lost taken from the twin's.

When one class's volume falls far below the supervised twin's (the safeguard's volume rule),
keeping the whole twin also throws away the classes the semi-supervised model got right.
The trade keeps them and takes only the lost classes from the twin (benchmarks/RESULTS.md (uu)).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .metrics import class_mask


def trade_classes(
    semi: np.ndarray, twin: np.ndarray, lost: Iterable[int], nested: bool = False
) -> np.ndarray:
    """A new label volume: ``semi`` with every voxel ``twin`` labels as a class of ``lost``
    set to that class (``semi``'s own voxels of it kept). ``nested``: class c is the region
    label >= c, so a traded voxel becomes at least c."""
    if semi.shape != twin.shape:
        raise ValueError(f"masks differ in shape: {semi.shape} against {twin.shape}")
    out = semi.copy()
    for c in sorted(set(int(c) for c in lost)):
        where = class_mask(twin, c, nested)
        out[where] = np.maximum(out[where], c) if nested else c
    return out
