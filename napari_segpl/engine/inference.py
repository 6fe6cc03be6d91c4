"""Whole-volume prediction: hard labels, per-class probabilities and Monte-Carlo uncertainty.

Slices are predicted whole (the U-net is fully convolutional; they are only padded to a multiple
of its pooling factor), in batches, with the volume normalised case-wise as in training. For
SegPL-VI, section 4.4 of the paper: draw K thresholds T_k from the head's N(mu, sigma) for each
slice, form 1(p > T_k) and average; the mean is a Monte-Carlo foreground probability and the
standard deviation across the K samples the uncertainty. Any method can add test-time
augmentation in the same pass (``tta_samples``): each batch is also predicted under M - 1
small affine maps, mapped back, and the standard deviation of p over the M kept per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .components import keep_painted_parts, paint_note
from .decision import label_dtype, labels_from_probabilities
from .device import release_memory, resolve_device
from .losses import sample_threshold
from .model import TrainedModel
from .networks import memory_format
from .sampling import (
    DataError,
    Normaliser,
    deepest_level_pixels,
    non_finite,
    pad_in_plane,
    stack_indices,
)
from .uncertainty import TTATransform, tta_transforms

if TYPE_CHECKING:
    from .config import TrainConfig
    from .methods import Method

#: How ``predict_volume`` may cut the probabilities into labels: at the configuration's fixed
#: ``threshold``, or (SegPL-VI) at the threshold head's mu for each slice and class.
CUTS = ("fixed", "mu")


@dataclass
class Prediction:
    """Arrays on the input volume's grid. ``probabilities``, ``mc_mean`` and ``mc_std`` are
    (K, *shape): one channel per class 1..K. ``threshold_note`` says in one line which
    threshold the labels were cut at, for front ends to show; ``mu`` is (K, n), the threshold
    head's mu per class and slice along the predicted axis, when it was computed (SegPL-VI
    with ``cut="mu"`` or Monte-Carlo samples), else None. ``spread`` (K, *shape): for a method
    with members (the ensemble), the standard deviation of their probabilities, else None.
    ``tta_std`` (K, *shape): with test-time augmentation, the standard deviation of p over
    the augmented predictions, else None; ``tta_mean`` their mean p, where asked for (with
    the std, two models' TTA maps pool into one std, ``uncertainty.pooled_std``).
    ``probabilities`` is None when ``predict_volume`` was told not to keep them.
    ``removed``: what ``paint`` removed from the labels."""

    labels: np.ndarray
    probabilities: np.ndarray | None
    mc_mean: np.ndarray | None = None
    mc_std: np.ndarray | None = None
    threshold_note: str = ""
    mu: np.ndarray | None = None
    spread: np.ndarray | None = None
    tta_std: np.ndarray | None = None
    #: voxels removed per painted class by ``keep_painted_parts`` (None: no paint was given)
    removed: dict[int, int] | None = None
    #: ``paint_note``: a painted class with no voxel in ``labels`` or unlike its paint on the
    #: painted slices ("" when none, or no paint was given)
    paint_note: str = ""
    tta_mean: np.ndarray | None = None
    #: (K, *shape): the TTA std pooled with the safeguard's other model
    #: (``uncertainty.predict_with_twin``), else None
    tta_twin_std: np.ndarray | None = None


def labels_from_pseudo(pseudo: np.ndarray, prob: np.ndarray, nested: bool) -> np.ndarray:
    """(K, ...) boolean pseudo labels (``Method.cut``) -> integer labels, for display.

    Nested classes: the highest class that is on. Otherwise the most probable class among those
    on (with exclusive pseudo labels the only one on; without, a pixel the E-step gave two
    classes shows the more probable)."""
    if nested:
        ranks = np.arange(1, pseudo.shape[0] + 1).reshape((-1,) + (1,) * (pseudo.ndim - 1))
        labels = (pseudo * ranks).max(axis=0)
    else:
        masked = np.where(pseudo, prob, -1.0)
        labels = np.where(pseudo.any(axis=0), masked.argmax(axis=0) + 1, 0)
    return labels.astype(label_dtype(pseudo.shape[0]))


class PredictionStopped(Exception):
    """Raised by ``stop_between_batches``'s hook: the caller's stop came during a prediction."""


def stop_between_batches(should_stop: Callable[[], bool]) -> Callable[[int, int], None]:
    """A ``progress`` hook for ``predict_volume`` that raises ``PredictionStopped`` once
    ``should_stop()`` is true: a whole-volume prediction (minutes on a big scan) then ends
    after the batch under way."""

    def check(done: int, total: int) -> None:
        if should_stop():
            raise PredictionStopped

    return check


def check_slice_size(config: TrainConfig, shape: Sequence[int], axis: int | None = None) -> None:
    """DataError when the 2D U-net of ``config`` cannot predict the slices of a volume of
    ``shape`` along ``axis`` (the training axis by default): padded to a multiple of
    2**depth and halved depth times, they would be one voxel at its deepest level, where
    instance normalisation fails (torch's 'Expected more than 1 spatial element when
    training'). ``predict_volume`` calls it; front ends call it first to refuse the volume
    before any work starts (the CLI adds the file's name). The 3D network has no such limit:
    its deepest level still holds the 3 slices of a stack."""
    axis = config.axis if axis is None else axis
    h, w = (n for i, n in enumerate(shape) if i != axis % len(shape))
    if config.dims == 2 and deepest_level_pixels((h, w), config.depth) < 2:
        raise DataError(
            f"slices of {h} x {w} voxels along axis {axis} are too small for this model's 2D "
            f"U-net (it halves them to 1/{2**config.depth})"
        )


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
    cut: str = "fixed",
    probabilities: bool = True,
    tta_samples: int = 0,
    tta: Sequence[TTATransform] | None = None,
    paint: Mapping[int, np.ndarray] | None = None,
    keep_parts: bool = True,
    tta_mean: bool = False,
) -> Prediction:
    """Predict every slice of ``image`` along ``axis`` (the training axis by default).

    ``mc_samples`` > 0 adds Monte-Carlo uncertainty; it needs a method that learns a threshold.
    ``cut``: "fixed" labels as ``TrainedModel.labels`` (the decision fitted to the paint after
    training, or p > the configuration's ``threshold`` where there is none) for every method;
    "mu" (SegPL-VI only) at the threshold head's mu for each slice and class.
    ``progress(done, total)`` is called after each batch of slices. ``probabilities`` False
    leaves ``Prediction.probabilities`` None: a mask alone then needs no (K, *shape) float32
    array (840 MB for two classes of a 512 x 512 x 400 scan); the labels are the same.
    Slices are normalised a batch at a time with the whole volume's statistics, and each
    output is filled in place on the input's grid, so nothing whole is copied.
    ``tta_samples`` M >= 2 (any method) adds ``tta_std``, the std of p over the M transforms
    of ``tta_transforms(M, seed)`` (or over ``tta``, a list of one's own), computed a batch
    at a time: M - 1 more forward passes, and a running mean and sum of squares (three of one
    batch's probabilities, whatever M). Nothing else in the prediction changes. ``tta_mean``
    True keeps their mean p too (``Prediction.tta_mean``; one more (K, *shape) array).
    ``paint`` (slice index along the training axis -> the labels painted there and trained on):
    the labels keep only the parts of each painted class that touch its paint
    (``components.keep_painted_parts``) unless ``keep_parts`` is False; probabilities and
    uncertainty are left as they are. With paint, ``paint_note`` names any painted class with no
    voxel in the labels or unlike its paint, whether parts were kept or not.
    """
    config, method = model.config, model.method
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be 3D, got shape {image.shape}")
    check_slice_size(config, image.shape, axis)
    if bad := non_finite(image):  # every probability would be NaN: an empty mask, no word
        raise ValueError(f"the image holds {bad} NaN or infinite voxels")
    if cut not in CUTS:
        raise ValueError(f"cut must be one of {', '.join(CUTS)}, got {cut!r}")
    for asked, what in ((mc_samples, "Monte-Carlo uncertainty"), (cut == "mu", "cut='mu'")):
        if asked and not method.learns_threshold:
            raise ValueError(
                f"{what} needs a learnt threshold (segpl-vi); this model is {config.method}"
            )
    if tta is None and tta_samples:
        if tta_samples < 2:
            raise ValueError(f"TTA needs at least 2 samples, got {tta_samples}")
        tta = tta_transforms(tta_samples, seed)
    axis = config.axis if axis is None else axis
    dev = resolve_device(device)
    normalise = Normaliser.from_config(config)
    stats = normalise.statistics(image)
    source = np.moveaxis(image, axis, 0)  # a view: slices are normalised a batch at a time
    n, h, w = source.shape
    k, multiple = method.num_classes, 2**config.depth
    fill = None  # pad as the whole normalised volume was: with its minimum, which is the
    if h % multiple or w % multiple:  # minimum voxel normalised (normalising is monotone)
        fill = float(normalise.apply(image.min(keepdims=True), stats).item())

    def grid(lead: tuple[int, ...], dtype: type) -> tuple[np.ndarray, np.ndarray]:
        """An array on the input's grid (``lead`` axes first, C order, as returned) and its
        view with the predicted axis first, which the batches fill: no copy at the end."""
        array = np.empty(lead + image.shape, dtype)
        return array, np.moveaxis(array, len(lead) + axis, len(lead))

    labels, labels_m = grid((), label_dtype(k))
    prob, prob_m = grid((k,), np.float32) if probabilities else (None, None)
    want_mu = bool(mc_samples) or cut == "mu"
    mu = np.empty((k, n), np.float32) if want_mu else None
    mc_mean, mc_mean_m = grid((k,), np.float32) if mc_samples else (None, None)
    mc_std, mc_std_m = grid((k,), np.float32) if mc_samples else (None, None)
    # an ensemble gives its members' spread in the same pass as their mean: no extra cost
    has_spread = callable(getattr(method, "spread", None))
    spread, spread_m = grid((k,), np.float32) if has_spread else (None, None)
    tta_std, tta_m = grid((k,), np.float32) if tta else (None, None)
    tta_mean_a, tta_mean_m = grid((k,), np.float32) if tta and tta_mean else (None, None)
    generator = torch.Generator(device=dev).manual_seed(seed)
    method.to(dev)
    method.train(False)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            # the slices this batch reads (3D: each one's neighbours too), normalised
            lo, hi = (start, stop) if config.dims == 2 else (max(start - 1, 0), min(stop + 1, n))
            part = pad_in_plane(normalise.apply(source[lo:hi], stats), multiple, fill)
            if config.dims == 2:  # (b, 1, H, W)
                batch = part[:, None]
            else:  # (b, 1, 3, H, W)
                stacks = [np.subtract(stack_indices(s, n, 3), lo) for s in range(start, stop)]
                batch = np.stack([part[idx] for idx in stacks])[:, None]
            del part
            out = _predict_batch(model, batch, dev, (h, w), want_mu, mc_samples, generator, tta)
            del batch
            if prob_m is not None:
                prob_m[:, start:stop] = out[0]
            if mu is not None:
                mu[:, start:stop] = out[1]
            if cut == "mu" and mu is not None:
                t_mu = out[1][:, :, None, None]
                labels_m[start:stop] = labels_from_probabilities(out[0], t_mu, config.nested)
            else:  # the decision fitted to the paint where the model has one
                labels_m[start:stop] = model.labels(out[0])
            if mc_mean_m is not None and mc_std_m is not None:
                mc_mean_m[:, start:stop], mc_std_m[:, start:stop] = out[2], out[3]
            if spread_m is not None:
                spread_m[:, start:stop] = out[4]
            if tta_m is not None:
                tta_m[:, start:stop] = out[5]
            if tta_mean_m is not None:
                tta_mean_m[:, start:stop] = out[6]
            del out
            if progress:
                progress(stop, n)
    finally:
        method.to(torch.device("cpu"))
        release_memory(dev)
    removed, note_on_paint = None, ""
    if paint is not None:
        if keep_parts:
            removed = keep_painted_parts(labels, paint, config.axis, config.nested)
        note_on_paint = paint_note(labels, paint, config.axis, config.nested)
    if cut == "mu" and mu is not None:
        means = " / ".join(f"{m:.2f}" for m in mu.mean(axis=1))
        note = f"labels: p > the threshold head's mu for each slice (mean {means})"
    elif model.decision is not None:
        note = f"labels: the decision fitted to the paint (from p > {config.threshold:g})"
    else:
        note = f"labels: p > {config.threshold:g} (fixed)"
    return Prediction(
        labels, prob, mc_mean, mc_std, note, mu, spread, tta_std, removed, note_on_paint, tta_mean_a
    )


def _predict_batch(
    model: TrainedModel,
    batch: np.ndarray,
    dev: torch.device,
    size: tuple[int, int],
    want_mu: bool,
    mc_samples: int,
    generator: torch.Generator,
    tta: Sequence[TTATransform] | None = None,
) -> tuple[np.ndarray | None, ...]:
    """One batch of slices -> numpy (prob (K, b, h, w), mu (K, b), mc_mean, mc_std, spread,
    tta_std, tta_mean; None where not computed). A function
    of its own so that every tensor of the batch is gone when it returns: nothing keeps device
    memory alive when the caller empties the cache."""
    config, method = model.config, model.method
    h, w = size
    spread_fn, spread = getattr(method, "spread", None), None
    with torch.no_grad():
        x = torch.from_numpy(batch).to(dev).contiguous(memory_format=memory_format(config.dims))
        if want_mu:
            logits, mu, sigma = method.threshold_distribution(x)
        elif callable(spread_fn):  # as the ensemble's own logits: the logit of the mean
            mean, std = spread_fn(x)
            logits, mu, sigma = torch.logit(mean, eps=1e-6), None, None
            std = std[:, :, 1] if config.dims == 3 else std
            spread = std[..., :h, :w].float().transpose(0, 1).cpu().numpy()
        else:
            logits, mu, sigma = method.logits(x), None, None
        p = torch.sigmoid(logits.float())
        if config.dims == 3:
            p = p[:, :, 1]
        tta_np = tta_mean_np = None
        if tta:  # on the padded slices: the maps turn about the same centre both ways
            mean_p, std = _tta_moments(method, x, p, tta, config.dims)
            tta_np = std[..., :h, :w].transpose(0, 1).cpu().numpy()
            tta_mean_np = mean_p[..., :h, :w].transpose(0, 1).cpu().numpy()
        p = p[..., :h, :w]
        prob = p.transpose(0, 1).cpu().numpy()
        mu_np = None if mu is None else mu.float().transpose(0, 1).cpu().numpy()
        if not mc_samples or mu is None or sigma is None:
            return prob, mu_np, None, None, spread, tta_np, tta_mean_np
        hits = torch.stack(
            [
                (p > sample_threshold(mu, sigma, generator)[..., None, None]).float()
                for _ in range(mc_samples)
            ]
        )
        mean = hits.mean(0).transpose(0, 1).cpu().numpy()
        std = hits.std(0, unbiased=False).transpose(0, 1).cpu().numpy()
        return prob, mu_np, mean, std, spread, tta_np, tta_mean_np


def _tta_moments(
    method: Method,
    x: torch.Tensor,
    p: torch.Tensor,
    tta: Sequence[TTATransform],
    dims: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and population std of p (b, K, H, W) over the transforms, each prediction mapped
    back onto the slices' grid; an identity transform reuses ``p``. Welford's running mean and
    sum of squares: one batch's prediction at a time, whatever M."""
    mean, m2 = torch.zeros_like(p), torch.zeros_like(p)
    for i, t in enumerate(tta, start=1):
        if t.identity:
            q = p
        else:
            xa = t.apply(x).contiguous(memory_format=memory_format(dims))
            q = torch.sigmoid(method.logits(xa).float())
            q = t.invert(q[:, :, 1] if dims == 3 else q)
        delta = q - mean
        mean += delta / i
        m2 += delta * (q - mean)
    return mean, (m2 / len(tta)).clamp_min_(0).sqrt_()
