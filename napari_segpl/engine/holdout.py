"""Slices the user holds out: labelled slices kept out of training, to score models on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .sampling import DataError, labelled_slices


def training_slices(
    labels: np.ndarray, axis: int, holdout: Sequence[int], labelled: Sequence[int] | None = None
) -> list[int]:
    """The labelled slices left to train on once ``holdout`` is kept out. Held-out slices must
    be labelled ones; at least one labelled slice must remain (DataError otherwise)."""
    found = labelled_slices(labels, axis, labelled)
    wrong = sorted(set(holdout) - set(found))
    if wrong:
        raise DataError(f"held-out slices {wrong} are not labelled slices along axis {axis}")
    left = [s for s in found if s not in set(holdout)]
    if not left:
        raise DataError("every labelled slice is held out: keep at least one to train on")
    return left


def withhold(
    labels: np.ndarray, axis: int, holdout: Sequence[int], labelled: Sequence[int] | None = None
) -> tuple[np.ndarray, list[int]]:
    """(a copy of ``labels`` with the held-out slices zeroed, the slices left to train on;
    ``training_slices`` checks them)."""
    left = training_slices(labels, axis, holdout, labelled)
    out = np.array(labels, copy=True)
    index: list = [slice(None)] * out.ndim
    index[axis] = sorted(set(holdout))
    out[tuple(index)] = 0
    return out, left
