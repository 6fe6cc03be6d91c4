"""Training batches from the prepared volumes (``sampling.prepare_data``): the Sampler, class
encoding, in-plane padding and 3-slice stacks.

The sampler crops or pads every slice to the patch size, so nothing downstream assumes an image
size (the authors' sampler only worked when every dimension was 512). In 3D mode a sample is a
stack of 3 neighbouring slices (edge slices repeat at the volume's border) and only the centre
slice of a labelled stack is supervised, because its neighbours are usually unlabelled.

Separate from ``sampling.py`` (input checks, normalisation, ``prepare_data``) so that both stay
under 400 lines; it sits below it, imports nothing from it, and ``sampling.py`` re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import TrainConfig


def encode_target(labels: np.ndarray, num_classes: int, nested: bool) -> np.ndarray:
    """Integer labels (...) -> float32 (K, ...) one channel per class 1..K.

    Exclusive classes: channel k is ``labels == k``. Nested classes (BRATS-style, whole tumour
    contains core contains enhancing): channel k is ``labels >= k``.
    """
    classes = np.arange(1, num_classes + 1).reshape((-1,) + (1,) * labels.ndim)
    hits = labels[None] >= classes if nested else labels[None] == classes
    return hits.astype(np.float32)


def padded_size(size: int, patch: int, multiple: int) -> int:
    """The in-plane size used for a dimension: the patch, or less for a small image (rounded up
    to what the U-net's pooling needs) so that small images are not padded to 176 for nothing."""
    return min(patch, -(-size // multiple) * multiple)


def pad_in_plane(volume: np.ndarray, multiple: int, fill: float | None = None) -> np.ndarray:
    """Pad whole slices (..., H, W) at their far edges to multiples of ``multiple`` (what the
    U-net's pooling needs), for whole-slice prediction. ``fill`` defaults to the minimum, the
    value the sampler pads training patches with."""
    h, w = volume.shape[-2:]
    ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (ph, pw) == (h, w):
        return volume
    widths = [(0, 0)] * (volume.ndim - 2) + [(0, ph - h), (0, pw - w)]
    return np.pad(volume, widths, constant_values=volume.min() if fill is None else fill)


@dataclass
class TrainingData:
    """Normalised volumes (slicing axis first) and the slice indices the sampler draws from."""

    image: np.ndarray
    labels: np.ndarray
    labelled: list[int]
    num_classes: int
    nested: bool = False
    unlabelled_volumes: list[np.ndarray] = field(default_factory=list)

    @property
    def unlabelled(self) -> list[tuple[int, int]]:
        """(volume, slice) pairs: volume 0 is the labelled volume, 1.. the extra ones."""
        labelled = set(self.labelled)
        pairs = [(0, s) for s in range(self.image.shape[0]) if s not in labelled]
        for v, vol in enumerate(self.unlabelled_volumes, start=1):
            pairs.extend((v, s) for s in range(vol.shape[0]))
        return pairs

    def volume(self, index: int) -> np.ndarray:
        return self.image if index == 0 else self.unlabelled_volumes[index - 1]

    def paint(self) -> dict[int, np.ndarray]:
        """The trained-on slices' labels (slice -> labels on the volume's in-plane grid), the
        ``paint`` a prediction of this volume keeps the touching parts of."""
        return {s: self.labels[s] for s in self.labelled}


def stack_indices(s: int, n: int, dims: int) -> list[int]:
    """The slice(s) a sample centred on slice s reads: itself, or s-1, s, s+1 clamped."""
    if dims == 2:
        return [s]
    return [min(max(s + d, 0), n - 1) for d in (-1, 0, 1)]


def slice_batch(volume: np.ndarray, slices: Sequence[int], dims: int, depth: int) -> np.ndarray:
    """Whole slices of a training volume (n, H, W) as a network input: (B, 1, H', W') in 2D,
    (B, 1, 3, H', W') 3-slice stacks in 3D, padded as the sampler pads (with the volume's
    minimum) to the U-net's multiple 2**depth."""
    fill = float(volume.min())
    n = volume.shape[0]
    images = [pad_in_plane(volume[stack_indices(s, n, dims)], 2**depth, fill) for s in slices]
    x = np.stack(images)
    return np.ascontiguousarray(x[:, None] if dims == 3 else x)


def unlabelled_weights(data: TrainingData, near: float) -> np.ndarray | None:
    """Sampling probabilities of the unlabelled pool, or None for uniform (``near`` 0).

    With ``near`` > 0 a slice of the labelled volume is drawn with weight ``exp(-d / (near n))``,
    d its distance in slices to the nearest labelled slice and n the volume's slice count (so
    one value suits a 34-slice chest CT and a 160-slice brain): pseudo labels are most often
    right next to what was painted, and the user paints where the structures are. Slices of
    extra volumes have no distance and get the mean weight of the labelled volume's slices.
    """
    pool = data.unlabelled
    if near <= 0 or not pool:
        return None
    own = np.array([v == 0 for v, _ in pool])
    slices = np.array([s for _, s in pool])[own]
    labelled = np.asarray(data.labelled)
    dist = np.abs(slices[:, None] - labelled[None]).min(axis=1)
    w_own = np.exp(-dist / (near * data.image.shape[0]))
    weights = np.full(len(pool), w_own.mean() if own.any() else 1.0)
    weights[own] = w_own
    return weights / weights.sum()


class Sampler:
    """Draws labelled and unlabelled batches as numpy arrays shaped for the network.

    Shapes: 2D (N, 1, H, W); 3D (N, 1, 3, H, W). Targets are (N, K, H, W) or (N, K, 3, H, W) with
    a mask marking the supervised (centre) slice.
    """

    def __init__(self, data: TrainingData, config: TrainConfig, rng: np.random.Generator) -> None:
        self.data, self.config, self.rng = data, config, rng
        self.multiple = 2**config.depth
        self._pool = data.unlabelled
        self._weights = unlabelled_weights(data, config.near)
        volumes = [data.image, *data.unlabelled_volumes]
        self._fill = [float(vol.min()) for vol in volumes]
        h, w = data.image.shape[1:]
        self.out = (
            padded_size(h, config.patch, self.multiple),
            padded_size(w, config.patch, self.multiple),
        )

    def _offsets(self, shape: tuple[int, ...], out: tuple[int, int]) -> tuple[int, int]:
        """Random crop offsets for a slice of ``shape`` (0 where the slice is padded instead)."""
        return tuple(  # type: ignore[return-value]
            int(self.rng.integers(0, size - target + 1)) if size > target else 0
            for size, target in zip(shape, out, strict=True)
        )

    @staticmethod
    def _fit(array: np.ndarray, offs: tuple[int, int], out: tuple[int, int], fill: float):
        """Crop ``array`` (..., H, W) at ``offs`` to at most ``out`` and pad the rest."""
        crop = array[..., offs[0] : offs[0] + out[0], offs[1] : offs[1] + out[1]]
        pad_h, pad_w = out[0] - crop.shape[-2], out[1] - crop.shape[-1]
        if pad_h or pad_w:
            widths = [(0, 0)] * (crop.ndim - 2) + [(0, pad_h), (0, pad_w)]
            crop = np.pad(crop, widths, constant_values=fill)
        return crop

    def _image(self, v: int, s: int, offs: tuple[int, int]) -> np.ndarray:
        """Slice (or 3-slice stack) s of volume v, padded with that volume's minimum."""
        volume = self.data.volume(v)
        idx = stack_indices(s, volume.shape[0], self.config.dims)
        patch = self._fit(volume[idx], offs, self.out, self._fill[v])
        return patch if self.config.dims == 3 else patch[0]

    def labelled_batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(images, targets, mask): mask is None in 2D, the centre-slice mask in 3D."""
        data = self.data
        picks = self.rng.choice(data.labelled, size=n, replace=len(data.labelled) < n)
        images, targets = [], []
        for s in picks:
            offs = self._offsets(data.image.shape[1:], self.out)
            images.append(self._image(0, int(s), offs))
            lab = self._fit(data.labels[int(s)], offs, self.out, 0)
            target = encode_target(lab, data.num_classes, data.nested)
            if self.config.dims == 3:
                target = np.repeat(target[:, None], 3, axis=1)
            targets.append(target)
        mask = None
        if self.config.dims == 3:
            mask = np.zeros((1, 1, 3, 1, 1), np.float32)
            mask[:, :, 1] = 1.0
        return np.stack(images)[:, None], np.stack(targets), mask

    def unlabelled_batch(self, n: int) -> np.ndarray | None:
        """Unlabelled images from every slice not labelled, across all volumes; None if none.

        Extra volumes of another in-plane size are cropped or padded to this volume's size."""
        if n == 0 or not self._pool:
            return None
        images = []
        if self._weights is None:
            draws = self.rng.integers(0, len(self._pool), size=n)
        else:
            draws = self.rng.choice(len(self._pool), size=n, p=self._weights)
        for r in draws:
            v, s = self._pool[int(r)]
            offs = self._offsets(self.data.volume(v).shape[1:], self.out)
            images.append(self._image(v, s, offs))
        return np.stack(images)[:, None]
