"""Intensity evidence for the E-step: how likely each intensity is inside each class, learnt from
the painted slices.

SegPL casts pseudo labelling as Expectation-Maximisation; its E-step asks for the posterior of
the hidden labels of the unlabelled slices. The teacher network is one source of evidence; the
painted voxels' intensities are another, the one classical MRI tissue segmentation is built on
(a class-conditional intensity model fitted by EM). On slices unlike any painted one (the
brain's cerebellum, far from the three painted slices) the network calls grey matter white,
while grey and white matter still differ in intensity there as on the painted slices
(benchmarks/RESULTS.md (n)).

``intensity=w`` adds ``w`` times the log-likelihood ratio of each class against the rest,
``log p(x | k) / p(x | not k)``, to the teacher's logit of class k before thresholding. With
w = 1 that is Bayes' rule for two independent pieces of evidence (posterior odds = network odds
times likelihood ratio); the network also sees intensity, so they are not independent and w
tempers the second. The likelihoods are smoothed histograms of the normalised intensities of the
painted slices, whole (background included), so any intensity distribution is allowed (the
brain's background is both the zeros outside it and the cerebrospinal fluid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .sampling import TrainingData, encode_target

#: bins of the intensity histograms over the painted slices' 0.5-99.5th percentiles
BINS = 64
#: width (bins) of the box filter smoothing each histogram
SMOOTH = 5
#: largest log-likelihood ratio, so that an intensity rare on the painted slices decides nothing
#: alone
CLIP = 6.0


@dataclass
class IntensityEvidence:
    """Per class, the log-likelihood ratio of an intensity bin: ``table`` (K, bins) over the
    bins between ``edges`` (bins + 1 values; intensities outside fall into the end bins)."""

    edges: torch.Tensor
    table: torch.Tensor

    @classmethod
    def fit(cls, images: np.ndarray, targets: np.ndarray) -> IntensityEvidence:
        """From painted slices: ``images`` (S, H, W) normalised intensities and ``targets``
        (K, S, H, W) one channel per class (``sampling.encode_target``). A class with no
        painted voxel gets no evidence (a ratio of 0)."""
        values = np.asarray(images, dtype=np.float64).ravel()
        edges = bin_edges(values)
        bins = bin_index(values, edges)
        table = np.zeros((targets.shape[0], BINS))
        for k, channel in enumerate(np.asarray(targets).reshape(targets.shape[0], -1)):
            inside = channel > 0.5
            if not inside.any() or inside.all():
                continue
            ratio = smoothed_density(bins[inside]) / smoothed_density(bins[~inside])
            table[k] = np.clip(np.log(ratio), -CLIP, CLIP)
        return cls(
            torch.tensor(edges, dtype=torch.float32), torch.tensor(table, dtype=torch.float32)
        )

    @classmethod
    def from_painted(cls, data: TrainingData) -> IntensityEvidence:
        """Fitted on the labelled slices of prepared training data, whole slices."""
        labelled = list(data.labelled)
        targets = encode_target(data.labels[labelled], data.num_classes, data.nested)
        return cls.fit(data.image[labelled], targets)

    def to(self, device: torch.device | str) -> IntensityEvidence:
        """On ``device``, so that the E-step's lookups copy nothing per step."""
        return IntensityEvidence(self.edges.to(device), self.table.to(device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, ...) images -> (N, K, ...) log-likelihood ratios, one per class channel."""
        edges = self.edges.to(x.device)
        index = torch.bucketize(x[:, 0].float().contiguous(), edges[1:-1], right=True)
        return self.table.to(x.device)[:, index].movedim(0, 1)


def bin_edges(values: np.ndarray) -> np.ndarray:
    """BINS + 1 edges over the 0.5-99.5th percentiles of ``values`` (the painted slices')."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    if hi <= lo:  # a constant image: one bin says nothing
        hi = lo + 1.0
    return np.linspace(lo, hi, BINS + 1)


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each value; values outside the edges fall into the end bins."""
    return np.clip(np.digitize(values, edges) - 1, 0, BINS - 1)


def smoothed_density(bins: np.ndarray) -> np.ndarray:
    """Histogram of bin indices with one pseudo-count per bin, box-smoothed, summing to 1."""
    counts = np.bincount(bins, minlength=BINS).astype(np.float64) + 1.0
    counts = np.convolve(np.pad(counts, SMOOTH // 2, mode="edge"), np.ones(SMOOTH), "valid")
    return counts / counts.sum()
