"""Keep only the predicted parts of a class that connect to the user's paint.

A network trained on a few painted slices also marks look-alikes far from the structure (bowel
gas below the diaphragm taken for lung). A part of class c that touches no voxel painted c is
such a look-alike more often than not: dropping those parts raised every method's
whole-volume IoU on both the tuning and the validation volumes (benchmarks/RESULTS.md (rr)).
A structure made of separate parts (several lesions, say) loses the parts nobody painted, so
front ends say what was removed and let the user switch it off.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from .metrics import class_mask

#: 26-connectivity: voxels touching by a face, an edge or a corner belong to one part, so a
#: thin structure running diagonally across slices stays whole
FULL = np.ones((3, 3, 3), bool)


def painted_slices(labels: np.ndarray, slices: list[int], axis: int) -> dict[int, np.ndarray]:
    """The paint a prediction is checked against: ``labels``' slices along ``axis`` that were
    trained on (never held-out ones: their paint is the truth a score is taken against)."""
    return {int(s): np.take(labels, s, axis=axis) for s in slices}


def keep_painted_parts(
    labels: np.ndarray, paint: Mapping[int, np.ndarray], axis: int, nested: bool = False
) -> dict[int, int]:
    """In place: for each class painted somewhere in ``paint`` (slice index along ``axis`` ->
    that slice's painted labels), the voxels of the class outside every 26-connected part that
    holds a voxel painted that class are removed (to background; nested classes: to the class
    below, which holds them). A class nobody painted is left as it is. Returns the voxels
    removed per painted class."""
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D, got shape {labels.shape}")
    plane = tuple(n for a, n in enumerate(labels.shape) if a != axis)
    for s, painted in paint.items():
        if not 0 <= s < labels.shape[axis] or painted.shape != plane:
            raise ValueError(
                f"painted slice {s} of shape {painted.shape} does not fit labels of shape "
                f"{labels.shape} along axis {axis}"
            )
    classes = sorted({int(c) for p in paint.values() for c in np.unique(p) if c > 0})
    if nested and classes:  # paint of class c is paint of every region that holds it
        classes = list(range(1, classes[-1] + 1))
    removed: dict[int, int] = {}
    for c in classes:
        mask = class_mask(labels, c, nested)
        box = _bounding_box(mask)
        if box is None:
            removed[c] = 0
            continue
        part = mask[box]  # a view: the propagation's arrays are the class's box, not the scan
        seed = np.zeros_like(part)
        for s, painted in paint.items():
            if not box[axis].start <= s < box[axis].stop:
                continue
            touched = class_mask(painted, c, nested)
            index: list = [slice(None)] * 3
            index[axis] = s - box[axis].start
            plane_box = tuple(b for a, b in enumerate(box) if a != axis)
            seed[tuple(index)] = touched[plane_box] & part[tuple(index)]
        kept = ndimage.binary_propagation(seed, structure=FULL, mask=part)
        np.logical_and(part, ~kept, out=part)  # the parts to remove, in mask's memory
        del seed, kept
        removed[c] = int(part.sum())
        if removed[c]:
            labels[mask] = c - 1 if nested else 0
    return removed


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every True voxel of a 3D mask, or None when there is none."""
    box = []
    for a in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def removed_note(removed: Mapping[int, int] | None) -> str:
    """One line for front ends: what ``keep_painted_parts`` removed ("" when it did not run)."""
    if removed is None:
        return ""
    if not any(removed.values()):
        return "every predicted part touches the paint: nothing removed"
    parts = ", ".join(
        f"class {c}: {n} voxel{'' if n == 1 else 's'}" for c, n in removed.items() if n
    )
    return f"parts not touching the paint removed: {parts}"


#: a painted class whose labels match its paint on the painted slices with a Dice below this is
#: named: on the saved runs every such class scored under 0.30 IoU on the other slices too
#: (benchmarks/RESULTS.md (U2))
PAINT_DICE = 0.5


def paint_dice(
    labels: np.ndarray, paint: Mapping[int, np.ndarray], axis: int, nested: bool = False
) -> dict[int, float]:
    """Per painted class: the Dice of ``labels`` against the paint over the painted slices
    (``paint``: slice index along ``axis`` -> its labels); 0 for a class missing there."""
    painted = sorted({int(c) for p in paint.values() for c in np.unique(p) if c > 0})
    out = {}
    for c in painted:
        hits = total = 0
        for s, p in paint.items():
            pred, truth = (
                class_mask(np.take(labels, s, axis=axis), c, nested),
                class_mask(p, c, nested),
            )
            hits += int(np.logical_and(pred, truth).sum())
            total += int(pred.sum()) + int(truth.sum())
        out[c] = 2 * hits / total if total else 1.0
    return out


def paint_note(
    labels: np.ndarray, paint: Mapping[int, np.ndarray], axis: int, nested: bool = False
) -> str:
    """One line for front ends when the mask contradicts the paint ("" when it does not): a
    painted class with no voxel in ``labels``, or one whose labels on the painted slices
    (``paint``: slice index along ``axis`` -> its labels) match the paint with a Dice below
    PAINT_DICE. A mask that lost a whole organ, or gives the right lung the left lung's class,
    looks plausible, and nothing else says so (benchmarks/RESULTS.md (D2), (U2))."""
    painted = sorted({int(c) for p in paint.values() for c in np.unique(p) if c > 0})
    missing = [c for c in painted if not class_mask(labels, c, nested).any()]
    lines = []
    if missing:
        one = len(missing) == 1
        which = ", ".join(str(c) for c in missing)
        lines.append(
            f"{'class' if one else 'classes'} {which} painted but nowhere in the mask: the "
            f"model did not learn {'it' if one else 'them'}, so the mask is incomplete; check "
            "it before use"
        )
    dice = paint_dice(labels, paint, axis, nested)
    low = [f"class {c} {d:.2f}" for c, d in dice.items() if c not in missing and d < PAINT_DICE]
    if low:
        lines.append(
            f"the mask does not match your paint on the painted slices (Dice {', '.join(low)}): "
            "the model mixes a class up with another or misses it there, so it is likely "
            "wrong on the other slices too; check the mask, or train again with another seed"
        )
    return "; ".join(lines)
