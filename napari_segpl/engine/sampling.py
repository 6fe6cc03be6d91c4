"""From a volume with a few labelled slices to training batches.

``prepare_data`` checks the inputs and moves each volume so that the slicing axis is axis 0,
normalised case by case (each volume with its own statistics, as in the paper). The batches are
drawn from that by ``batches.py`` (TrainingData, the Sampler, class encoding, padding), whose
names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .batches import (  # noqa: F401  (re-exported: sampling's names before batches.py)
    Sampler,
    TrainingData,
    encode_target,
    pad_in_plane,
    padded_size,
    slice_batch,
    stack_indices,
    unlabelled_weights,
)
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


def deepest_level_pixels(plane: Sequence[int], depth: int) -> int:
    """Pixels of a 2D U-net's deepest level for slices of ``plane`` (padded to a multiple of
    2**depth, then halved depth times); instance normalisation needs at least two. Training
    (``check_in_plane``) and prediction (``inference.check_slice_size``) both ask this."""
    m = 2**depth
    h, w = (-(-n // m) for n in plane)
    return h * w


def check_in_plane(plane: Sequence[int], config: TrainConfig) -> None:
    """DataError when the 2D U-net's deepest level would be one pixel (instance normalisation
    needs two): slices are trained at most ``patch`` wide, padded to a multiple of 2**depth."""
    m = 2**config.depth
    cropped = [min(n, config.patch) for n in plane]
    if config.dims == 2 and deepest_level_pixels(cropped, config.depth) < 2:
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


def checked_labels(
    labels: np.ndarray, config: TrainConfig, labelled: Sequence[int] | None = None
) -> tuple[np.ndarray, list[int], int]:
    """(a view of the labels with the slicing axis first, the labelled slices, the number of
    classes), or the DataError ``prepare_data`` raises: its checks of the labels alone, which
    copy and normalise nothing, so that a front end can ask them before a run starts."""
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
    return moved, slices, num_classes


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
    moved, slices, num_classes = checked_labels(labels, config, labelled)
    axis = config.axis
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
