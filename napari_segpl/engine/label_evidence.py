"""Which of two label volumes the image itself supports better, by the painted slices' intensities.

Two models trained on the same painted slices (a semi-supervised one and its supervised twin)
disagree on some voxels. Where a class has an intensity of its own (air in a lung, contrast in
a vessel), the painted slices say how likely each intensity is under each label value, and the
image is then more likely under one labelling than the other. The score is the mean, over the
voxels of the unpainted slices where the two differ, of log p(x | label of ``a``) - log p(x |
label of ``b``): positive where ``a``'s labels fit the image better. The densities are fitted
as ``intensity.py`` fits its evidence (the same bins, pseudo-counts and smoothing), one per
label value, background included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .intensity import BINS, CLIP, bin_edges, bin_index, smoothed_density

#: the safeguard keeps the twin below this many nats a voxel; near 0 the evidence told gains
#: from failures no better than a coin on the tuning runs (benchmarks/RESULTS.md (tt) rule 4)
MARGIN = -1.0


@dataclass(frozen=True)
class LabelEvidence:
    """``mean``: nats a voxel in favour of ``a`` over ``b`` where they differ; ``voxels``: how
    many differ (0: ``mean`` is 0 and says nothing)."""

    mean: float
    voxels: int


def label_evidence(
    image: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    painted: np.ndarray,
    slices: Sequence[int],
    axis: int,
) -> LabelEvidence:
    """``image`` (normalised or not: only its ranks within the bins matter), ``a`` and ``b``
    label volumes on its grid, ``painted`` the user's labels (read on ``slices`` along
    ``axis`` only, where they are the truth)."""
    if not (image.shape == a.shape == b.shape == painted.shape):
        raise ValueError(f"shapes differ: {image.shape}, {a.shape}, {b.shape}, {painted.shape}")
    values = np.take(image, list(slices), axis=axis).astype(np.float64).ravel()
    truth = np.take(painted, list(slices), axis=axis).ravel()
    edges = bin_edges(values)
    bins = bin_index(values, edges)
    labels = int(max(a.max(), b.max(), truth.max())) + 1
    # a label value never painted gets the flat density: its intensity says nothing
    log_density = np.full((labels, BINS), -np.log(BINS))
    for value in np.unique(truth):
        log_density[int(value)] = np.log(smoothed_density(bins[truth == value]))
    differ = a != b  # one boolean volume: the painted slices are cleared in place
    np.moveaxis(differ, axis, 0)[list(slices)] = False
    n = int(np.count_nonzero(differ))
    if n == 0:
        return LabelEvidence(0.0, 0)
    x = bin_index(image[differ].astype(np.float64), edges)
    terms = log_density[a[differ].astype(np.int64), x] - log_density[b[differ].astype(np.int64), x]
    return LabelEvidence(float(np.clip(terms, -CLIP, CLIP).mean()), n)
