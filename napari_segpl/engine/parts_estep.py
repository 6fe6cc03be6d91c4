"""The export's parts rule (``components.keep_painted_parts``) inside the E-step.

A teacher that marks a look-alike far from the structure (bowel gas taken for lung) teaches the
student that look-alike through its pseudo labels, and the look-alike can grow until it joins
the structure, where the export's rule no longer removes it. Here, every ``parts_every`` steps
after the burn-in, the teacher labels the whole training volume; a part of class c that touches
no voxel painted c is marked, and until the next refresh the E-step gives class c no
probability there, so such a pixel's pseudo label is background (or another class the teacher
is sure of). Slices of extra unlabelled volumes have no paint and are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .batches import encode_target
from .components import keep_painted_parts


class PartsMask:
    """Which class each voxel of the training volume may not be pseudo-labelled with."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, nested: bool) -> None:
        self.num_classes, self.nested = num_classes, nested
        #: the teacher's label at a voxel the rule changed (0: unchanged), and what it became
        self.before = np.zeros(shape, np.uint8)
        self.after = np.zeros(shape, np.uint8)
        self.removed: dict[int, int] = {}

    def refresh(self, labels: np.ndarray, paint: Mapping[int, np.ndarray]) -> dict[int, int]:
        """From the teacher's labels of the whole volume (slices first) and the trained-on
        slices' paint: mark the voxels of the parts touching no paint of their class."""
        kept = labels.copy()
        self.removed = keep_painted_parts(kept, paint, axis=0, nested=self.nested)
        changed = kept != labels
        self.before = np.where(changed, labels, 0).astype(np.uint8)
        self.after = np.where(changed, kept, 0).astype(np.uint8)
        return self.removed

    def allowed(self, s: int) -> np.ndarray:
        """(K, H, W) float32 for slice ``s``: 0 where class k may not be pseudo-labelled.
        Exclusive classes lose only the class the rule removed; nested ones every class the
        voxel fell through (channel k is "label >= k")."""
        before = self.before[s]
        if self.nested:
            k = np.arange(1, self.num_classes + 1)[:, None, None]
            lost = (k > self.after[s][None]) & (k <= before[None])
        else:
            lost = encode_target(before, self.num_classes, False) > 0
        return (~lost).astype(np.float32)


def allow_batch(
    mask: PartsMask,
    drawn: Sequence[tuple[int, int, tuple[int, int]]],
    out: tuple[int, int],
    dims: int,
) -> np.ndarray:
    """(N, K, H', W') or (N, K, 3, H', W') for the unlabelled images drawn (volume, slice,
    crop offsets), cropped and padded as the sampler crops the images (padding allowed). In
    3D a stack's three slices take the centre slice's mask: only the centre is trained."""
    k = mask.num_classes
    batch = []
    for v, s, (oh, ow) in drawn:
        full = np.ones((k, *out), np.float32)
        if v == 0:
            crop = mask.allowed(s)[:, oh : oh + out[0], ow : ow + out[1]]
            full[:, : crop.shape[1], : crop.shape[2]] = crop
        batch.append(np.repeat(full[:, None], 3, axis=1) if dims == 3 else full)
    return np.stack(batch)
