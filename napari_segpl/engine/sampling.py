"""From a volume with a few labelled slices to training batches.

The sampler works on volumes already moved so that the slicing axis is axis 0, normalised case by
case (each volume with its own statistics, as in the paper). It crops or pads every slice to the
patch size, so nothing downstream assumes an image size (the authors' sampler only worked when
every dimension was 512). In 3D mode a sample is a stack of 3 neighbouring slices (edge slices
repeat at the volume's border) and only the centre slice of a labelled stack is supervised, because
its neighbours are usually unlabelled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import MAX_CLASSES, TrainConfig


class DataError(ValueError):
    """Input the trainer cannot learn from; the message says what to change."""


#: Voxels converted to float32 at a time when the statistics are computed (16 MB): a big scan
#: is never held in float32 twice. A power of two, so chunks fall on numpy's summation blocks.
CHUNK = 1 << 22


def _pairwise_sum(flat: np.ndarray, convert: Callable[[np.ndarray], np.ndarray]) -> np.float32:
    """``np.add.reduce(convert(flat))`` without converting ``flat`` whole: numpy sums float32
    pairwise, halving a long array (cut at a multiple of 8) until the blocks are short; this
    makes the same cuts down to ``CHUNK`` and lets numpy sum each chunk, so every partial sum
    and the result are the bits numpy gives (checked in tests/test_memory.py)."""
    n = flat.size
    if n <= CHUNK:
        return np.add.reduce(convert(flat))
    half = n // 2
    half -= half % 8
    return _pairwise_sum(flat[:half], convert) + _pairwise_sum(flat[half:], convert)


@dataclass(frozen=True)
class Normaliser:
    """Case-wise intensity normalisation: z-score, optionally after clipping to a CT window.

    The mean and standard deviation are those numpy gives on the whole volume in float32
    (``statistics``), computed a chunk at a time, so a 512 x 512 x 400 scan costs one float32
    copy (the result) instead of four, and prediction none (``apply`` per batch of slices)."""

    kind: str = "zscore"
    window: tuple[float, float] = (40.0, 400.0)

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        return self.apply(volume, self.statistics(volume))

    def _float(self, values: np.ndarray) -> np.ndarray:
        """A float32 copy of ``values``, clipped to the window for ``ct`` (in place)."""
        data = np.array(values, dtype=np.float32)
        if self.kind == "ct":
            level, width = self.window
            np.clip(data, level - width / 2, level + width / 2, out=data)
        elif self.kind != "zscore":
            raise ValueError(f"unknown normalisation {self.kind!r}")
        return data

    def statistics(self, volume: np.ndarray) -> tuple[float, float]:
        """(mean, divisor) of the whole volume, bit for bit what ``data.mean()`` and
        ``data.std()`` (1 when under 1e-8) give on its float32 copy ``data``."""
        flat = np.ravel(volume, order="K")  # memory order, the order numpy's reductions sum in
        if not np.shares_memory(flat, volume):  # strided: no order to follow but the copy's
            flat = self._float(volume).ravel(order="K")
        count = np.intp(flat.size)
        total = _pairwise_sum(flat, self._float)
        mean = float(total.dtype.type(total / count))  # as numpy's mean
        centre = np.full(1, total)  # as numpy's std: the mean divided in place, unsafe cast
        np.true_divide(centre, count, out=centre, casting="unsafe")

        def squares(chunk: np.ndarray) -> np.ndarray:
            x = self._float(chunk) - centre
            with np.errstate(over="ignore"):  # an overflow is refused below, by name
                return np.square(x, out=x)

        ss = _pairwise_sum(flat, squares)
        std = float(np.sqrt(ss.dtype.type(ss / count)))  # as numpy's std (ddof 0)
        if not np.isfinite(mean + std):  # else every normalised voxel is NaN: an empty mask
            raise DataError(f"intensities too large to normalise in float32 (mean {mean:.3g}, "
                            f"std {std:.3g}); rescale the image")  # fmt: skip
        return mean, (std if std > 1e-8 else 1.0)

    def apply(self, values: np.ndarray, stats: tuple[float, float]) -> np.ndarray:
        """``values`` (the whole volume or some of its slices) normalised with the volume's
        ``statistics``, as a new float32 array: every voxel as the whole volume's would be."""
        data = self._float(values)
        data -= stats[0]
        data /= stats[1]
        return data

    def axis_first(self, volume: np.ndarray, axis: int, slices: int = 16) -> np.ndarray:
        """The normalised volume with ``axis`` first, C-contiguous (what training samples
        from), filled ``slices`` at a time: the result is the only whole float32 copy."""
        stats = self.statistics(volume)
        moved = np.moveaxis(volume, axis, 0)
        out = np.empty(moved.shape, np.float32)
        for start in range(0, len(out), slices):
            out[start : start + slices] = self.apply(moved[start : start + slices], stats)
        return out

    @classmethod
    def from_config(cls, config: TrainConfig) -> Normaliser:
        return cls(config.normalisation, tuple(config.ct_window))


def labelled_slices(
    labels: np.ndarray, axis: int, explicit: Sequence[int] | None = None
) -> list[int]:
    """Indices of labelled slices along ``axis``.

    Without ``explicit``, a slice is labelled when it holds any non-zero voxel. With it, exactly
    the listed slices count, whole, background included: that is how a user says "this slice is
    done" for a slice with nothing to paint, or trains on a few slices of a full label volume.
    """
    n = labels.shape[axis]
    if explicit is not None:
        chosen = sorted({int(i) for i in explicit})
        bad = [i for i in chosen if not 0 <= i < n]
        if bad:
            raise DataError(f"labelled slices {bad} lie outside 0..{n - 1} along axis {axis}")
        return chosen
    other = tuple(a for a in range(labels.ndim) if a != axis)
    return [int(i) for i in np.flatnonzero(np.any(labels != 0, axis=other))]


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


def check_in_plane(plane: Sequence[int], config: TrainConfig) -> None:
    """DataError when the 2D U-net's deepest level would be one pixel (instance normalisation
    needs two): slices are trained at most ``patch`` wide, padded to a multiple of 2**depth."""
    m = 2**config.depth
    h, w = (-(-min(n, config.patch) // m) for n in plane)
    if config.dims == 2 and h * w < 2:
        raise DataError(
            f"slices of {plane[0]} x {plane[1]} pixels are too small for the 2D U-net (its "
            f"deepest level, 1/{m} of a slice, would be one pixel): choose the 3D network"
        )


def non_finite(volume: np.ndarray) -> int:
    """How many voxels are NaN or infinite (integers never are), counted slice by slice so
    that no volume-sized mask is made on a big scan."""
    if volume.dtype.kind not in "fc":
        return 0
    return sum(int((~np.isfinite(s)).sum()) for s in volume)


def _check_image(name: str, volume: np.ndarray) -> None:
    if volume.ndim != 3:
        raise DataError(f"{name} must be 3D, got shape {volume.shape}")
    if count := non_finite(volume):
        raise DataError(f"{name} holds {count} NaN or infinite voxels")


def prepare_data(
    image: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    labelled: Sequence[int] | None = None,
    unlabelled: Sequence[np.ndarray] = (),
) -> TrainingData:
    """Check the inputs, normalise each volume case-wise and move the slicing axis first."""
    _check_image("image", image)
    if labels.shape != image.shape:
        raise DataError(f"labels shape {labels.shape} does not match image shape {image.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.isfinite(labels).all() or np.any(labels != np.round(labels)):
            raise DataError("labels must be whole numbers (0 background, 1..K classes)")
        labels = labels.astype(np.int32)
    if labels.min(initial=0) < 0:
        raise DataError("labels must not be negative (0 is background, 1..K are classes)")
    axis = config.axis
    slices = labelled_slices(labels, axis, labelled)
    if not slices:
        raise DataError(
            f"no labelled slice along axis {axis}: paint at least one slice or list the "
            "labelled slices explicitly"
        )
    moved = np.moveaxis(labels, axis, 0)
    seen = np.unique(moved[slices])
    if seen.max() == 0:
        raise DataError("the labelled slices hold only background: paint at least one class")
    if seen.min() != 0:
        raise DataError(
            "the labelled slices hold no background: two classes are needed (mark background "
            "as 0 somewhere on a labelled slice)"
        )
    num_classes = config.num_classes or int(seen.max())
    if seen.max() > num_classes:
        raise DataError(f"labels hold class {int(seen.max())} but num_classes is {num_classes}")
    if num_classes > MAX_CLASSES:
        raise DataError(f"labels hold class {num_classes}; at most {MAX_CLASSES} are supported")
    present = [int(c) for c in seen if c]
    if not config.num_classes and 2 * len(present) < num_classes:
        # one network channel per number up to the largest: most would never see a label
        raise DataError(
            f"the labelled slices hold classes {present[:5]}{' ...' if len(present) > 5 else ''}"
            f" but no others up to {num_classes}: number the classes 1 to {len(present)} (a "
            "mask saved as 0 and 255 should hold 0 and 1)"
        )
    normalise = Normaliser.from_config(config)
    extra = []
    for i, vol in enumerate(unlabelled):
        _check_image(f"unlabelled volume {i + 1}", vol)
        extra.append(normalise.axis_first(vol, axis))
    in_plane = [s for a, s in enumerate(image.shape) if a != axis]
    for i, vol in enumerate(extra):
        if vol.shape[0] == 0 or min(vol.shape[1:]) == 0:
            raise DataError(f"unlabelled volume {i + 1} is empty")
    if min(in_plane) < 1:
        raise DataError("image is empty")
    return TrainingData(
        image=normalise.axis_first(image, axis),
        labels=np.ascontiguousarray(moved),
        labelled=slices,
        num_classes=num_classes,
        nested=config.nested,
        unlabelled_volumes=extra,
    )


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
