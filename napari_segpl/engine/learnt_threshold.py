"""What SegPL-VI learnt about its threshold, in one line for the end of ``segpl train``.

The threshold head gives each slice and class a distribution N(mu, sigma) for T. A user (and a
researcher checking whether T learnt anything, issue 25) wants the volume's picture: mu and
sigma per class, averaged over slices spread evenly through the training volume. At most
``MAX_SLICES`` are read, so the summary costs a few forward passes even on a 400-slice scan,
where a whole-volume pass takes minutes on a CPU; the line says how many slices it averaged
and the prior beside it, since a head that sits on its prior has learnt nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import TrainedModel
from .sampling import TrainingData, slice_batch

#: slices the summary reads at most (evenly spread through the volume)
MAX_SLICES = 16


@dataclass(frozen=True)
class LearntThreshold:
    """Per class (K,): the head's mean mu and mean sigma over ``slices``; the prior."""

    mu: list[float]
    sigma: list[float]
    slices: list[int]
    prior: tuple[float, float]

    def line(self) -> str:
        classes = ", ".join(
            f"class {c} mu {m:.3f} sigma {s:.3f}"
            for c, (m, s) in enumerate(zip(self.mu, self.sigma, strict=True), start=1)
        )
        return (
            f"learnt threshold T ~ N(mu, sigma), mean over {len(self.slices)} slices: "
            f"{classes} (prior N({self.prior[0]:g}, {self.prior[1]:g}))"
        )


def spread_slices(n: int, count: int = MAX_SLICES) -> list[int]:
    """At most ``count`` distinct slices of 0..n-1, evenly spread, both ends included."""
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, min(count, n))})


def learnt_threshold(
    model: TrainedModel, data: TrainingData, max_slices: int = MAX_SLICES
) -> LearntThreshold | None:
    """The head's threshold distribution over slices of ``data``'s first volume (the one
    trained on, all of its slices: the head reads any image), or None for a method without a
    learnt threshold. The network is read in eval mode, on the CPU, and left in eval mode."""
    method, config = model.method, model.config
    if not method.learns_threshold:
        return None
    slices = spread_slices(data.image.shape[0], max_slices)
    x = torch.from_numpy(slice_batch(data.image, slices, config.dims, config.depth))
    method.train(False)
    with torch.no_grad():
        _, mu, sigma = method.threshold_distribution(x)  # (B, K) each
    return LearntThreshold(
        [float(v) for v in mu.float().mean(dim=0)],
        [float(v) for v in sigma.float().mean(dim=0)],
        slices,
        (float(config.prior_mu), float(config.prior_sigma)),
    )
