"""Whole-volume prediction: hard labels, per-class probabilities and Monte-Carlo uncertainty.

Slices are predicted whole (the U-net is fully convolutional; they are only padded to a multiple
of its pooling factor), in batches, with the volume normalised case-wise as in training. For
SegPL-VI, section 4.4 of the paper: draw K thresholds T_k from the head's N(mu, sigma) for each
slice, form 1(p > T_k) and average; the mean is a Monte-Carlo foreground probability and the
standard deviation across the K samples the uncertainty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .device import release_memory, resolve_device
from .losses import sample_threshold
from .model import TrainedModel
from .networks import memory_format
from .sampling import Normaliser, pad_in_plane, stack_indices


@dataclass
class Prediction:
    """Arrays on the input volume's grid. ``probabilities``, ``mc_mean`` and ``mc_std`` are
    (K, *shape): one channel per class 1..K."""

    labels: np.ndarray
    probabilities: np.ndarray
    mc_mean: np.ndarray | None = None
    mc_std: np.ndarray | None = None


def labels_from_probabilities(prob: np.ndarray, threshold: float, nested: bool) -> np.ndarray:
    """(K, ...) sigmoid probabilities -> integer labels.

    Exclusive classes: the most probable class among those above the threshold, else 0.
    Nested classes: the highest class whose channel is above the threshold.
    """
    above = prob > threshold
    if nested:
        ranks = np.arange(1, prob.shape[0] + 1).reshape((-1,) + (1,) * (prob.ndim - 1))
        labels = (above * ranks).max(axis=0)
    else:
        labels = np.where(above.any(axis=0), prob.argmax(axis=0) + 1, 0)
    dtype = np.uint8 if prob.shape[0] < 256 else np.uint16
    return labels.astype(dtype)


def predict_volume(
    model: TrainedModel,
    image: np.ndarray,
    *,
    axis: int | None = None,
    batch_size: int = 8,
    mc_samples: int = 0,
    device: str = "auto",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Prediction:
    """Predict every slice of ``image`` along ``axis`` (the training axis by default).

    ``mc_samples`` > 0 adds Monte-Carlo uncertainty; it needs a method that learns a threshold.
    ``progress(done, total)`` is called after each batch of slices.
    """
    config, method = model.config, model.method
    if image.ndim != 3:
        raise ValueError(f"image must be 3D, got shape {image.shape}")
    if mc_samples and not method.learns_threshold:
        raise ValueError(
            f"Monte-Carlo uncertainty needs a learnt threshold (segpl-vi); this model is "
            f"{config.method}"
        )
    axis = config.axis if axis is None else axis
    dev = resolve_device(device)
    fmt = memory_format(config.dims)
    volume = np.moveaxis(Normaliser.from_config(config)(image), axis, 0)
    n, h, w = volume.shape
    padded = pad_in_plane(volume, 2**config.depth)
    k = method.num_classes
    prob = np.empty((k, n, h, w), np.float32)
    mc_mean = np.empty_like(prob) if mc_samples else None
    mc_std = np.empty_like(prob) if mc_samples else None
    generator = torch.Generator(device=dev).manual_seed(seed)
    method.to(dev)
    method.train(False)
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                if config.dims == 2:
                    x = torch.from_numpy(padded[start:stop, None])
                else:
                    x = torch.from_numpy(
                        np.stack([padded[stack_indices(s, n, 3)] for s in range(start, stop)])
                    )[:, None]
                x = x.to(dev).contiguous(memory_format=fmt)
                if mc_samples:
                    logits, mu, sigma = method.threshold_distribution(x)
                else:
                    logits = method.logits(x)
                p = torch.sigmoid(logits.float())
                if config.dims == 3:
                    p = p[:, :, 1]
                p = p[..., :h, :w]
                prob[:, start:stop] = p.transpose(0, 1).cpu().numpy()
                if mc_samples:
                    hits = torch.stack(
                        [
                            (p > sample_threshold(mu, sigma, generator)[..., None, None]).float()
                            for _ in range(mc_samples)
                        ]
                    )
                    mc_mean[:, start:stop] = hits.mean(0).transpose(0, 1).cpu().numpy()
                    mc_std[:, start:stop] = (
                        hits.std(0, unbiased=False).transpose(0, 1).cpu().numpy()
                    )
                if progress:
                    progress(stop, n)
    finally:
        method.to(torch.device("cpu"))
        release_memory(dev)
    labels = labels_from_probabilities(prob, config.threshold, config.nested)

    def back(a: np.ndarray | None, lead: int) -> np.ndarray | None:
        return None if a is None else np.ascontiguousarray(np.moveaxis(a, lead, lead + axis))

    return Prediction(back(labels, 0), back(prob, 1), back(mc_mean, 1), back(mc_std, 1))
