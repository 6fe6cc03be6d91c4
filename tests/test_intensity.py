"""Mechanics of the E-step's intensity evidence (``engine/intensity.py``), not its accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import PreviewEvent, TrainConfig, Trainer, prepare_data
from napari_segpl.engine.config import ConfigError
from napari_segpl.engine.intensity import BINS, CLIP, SMOOTH, IntensityEvidence


def _by_hand(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The log-likelihood ratio per bin, written out with np.histogram and a plain loop."""
    lo, hi = np.percentile(values, [0.5, 99.5])
    edges = np.linspace(lo, hi, BINS + 1)
    clipped = np.clip(values, lo, hi)  # outside the range counts in the end bins

    def density(v):
        counts = np.histogram(v, edges)[0] + 1.0
        half = SMOOTH // 2
        smooth = [
            sum(counts[min(max(i + j, 0), BINS - 1)] for j in range(-half, half + 1))
            for i in range(BINS)
        ]
        return np.array(smooth) / sum(smooth)

    return np.clip(np.log(density(clipped[inside]) / density(clipped[~inside])), -CLIP, CLIP)


def test_fit_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (2, 100, 120))
    targets = np.zeros((2, 2, 100, 120), np.float32)
    targets[0] = images > 0.8  # class 1: bright
    targets[1] = images < -1.0  # class 2: dark
    evidence = IntensityEvidence.fit(images, targets)
    for k in range(2):
        expected = _by_hand(images.ravel(), targets[k].ravel() > 0.5)
        np.testing.assert_allclose(evidence.table[k].numpy(), expected, rtol=1e-5, atol=1e-5)
    bright, dark = evidence.table[0], evidence.table[1]
    assert bright[-1] > 3 and bright[0] < -3  # the bright class: likely high, unlikely low
    assert dark[0] > 3 and dark[-1] < -3


def _window_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts (+1 each bin) summed over the SMOOTH bins around each bin, ends repeated."""
    counts = np.histogram(np.clip(values, edges[0], edges[-1]), edges)[0] + 1.0
    padded = np.pad(counts, SMOOTH // 2, mode="edge")
    return np.convolve(padded, np.ones(SMOOTH), mode="valid")


def test_no_evidence_where_intensity_says_nothing():
    """Inside and outside share one distribution, so each bin's log ratio is noise: for
    Poisson window counts m_in and m_out its spread is sqrt(1/m_in + 1/m_out) (delta method);
    4 of those in every bin (chance of one of 64 bins beyond: about 0.4%)."""
    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, (1, 100, 100))
    targets = np.zeros((2, 1, 100, 100), np.float32)
    targets[0, 0, :, :50] = 1  # class 1: the left half, whatever its intensity
    evidence = IntensityEvidence.fit(images, targets)
    edges = np.linspace(*np.percentile(images, [0.5, 99.5]), BINS + 1)
    inside = targets[0].ravel() > 0.5
    m_in = _window_counts(images.ravel()[inside], edges)
    m_out = _window_counts(images.ravel()[~inside], edges)
    bound = 4 * np.sqrt(1 / m_in + 1 / m_out)
    assert (evidence.table[0].abs().numpy() < bound).all()
    assert bound.max() < 1.0  # enough voxels that a real signal (|log ratio| > 3) stands out
    assert torch.equal(evidence.table[1], torch.zeros(BINS))  # class 2 never painted


def test_lookup_agrees_with_numpy_bins():
    evidence = IntensityEvidence(
        torch.linspace(-1.0, 1.0, BINS + 1), torch.arange(2 * BINS, dtype=torch.float32)
    )
    evidence.table = evidence.table.reshape(2, BINS)
    x = torch.cat([torch.linspace(-2, 2, 101), evidence.edges]).reshape(1, 1, 1, -1)
    out = evidence(x)
    assert out.shape == (1, 2, 1, x.shape[-1])
    bins = np.clip(np.digitize(x.flatten().numpy(), evidence.edges.numpy()) - 1, 0, BINS - 1)
    np.testing.assert_array_equal(out[0, 0, 0].numpy(), bins)
    np.testing.assert_array_equal(out[0, 1, 0].numpy(), bins + BINS)
    # 3-slice stacks: (N, 1, 3, H, W) -> (N, K, 3, H, W)
    assert evidence(torch.zeros(2, 1, 3, 4, 5)).shape == (2, 2, 3, 4, 5)


def test_trainer_fits_the_evidence_on_the_painted_slices_and_previews_with_it(toy_volume):
    image, labels = toy_volume
    sparse = np.zeros_like(labels)
    sparse[..., [5, 14]] = labels[..., [5, 14]]
    cfg = TrainConfig(steps=2, patch=32, base_channels=4, depth=2, intensity=1.0, preview_every=1)
    trainer = Trainer(cfg, prepare_data(image, sparse, cfg))
    previews = [e for e in trainer.run() if isinstance(e, PreviewEvent)]
    evidence = trainer.model.method.evidence
    assert evidence is not None and evidence.table.shape == (2, BINS)
    # the toy's class 2 is the brightest: its evidence rises from the dark end to the bright one
    assert evidence.table[1, -1] > 2 and evidence.table[1, 0] < 0
    network_only = trainer._probabilities(previews[-1].slice_index)
    assert not np.allclose(previews[-1].probabilities, network_only)  # the preview is the E-step's


@pytest.mark.parametrize("preset", [None, "paper-mri", "paper-ct"])
def test_off_by_default_and_in_the_paper_presets(toy_volume, preset):
    """The paper's E-step is the network's alone: a run from the defaults or from either
    paper preset fits no evidence, and its previews are the network's own probabilities."""
    image, labels = toy_volume
    small = {"steps": 1, "patch": 32, "base_channels": 4, "depth": 2, "dims": 2, "axis": 2}
    small |= {"method": "segpl", "preview_every": 1}
    cfg = TrainConfig(**small) if preset is None else TrainConfig.from_preset(preset, **small)
    trainer = Trainer(cfg, prepare_data(image, labels, cfg, labelled=[5, 14]))
    previews = [e for e in trainer.run() if isinstance(e, PreviewEvent)]
    assert trainer.model.method.evidence is None
    network_only = trainer._probabilities(previews[-1].slice_index)
    np.testing.assert_allclose(previews[-1].probabilities, network_only, atol=1e-6)
    with pytest.raises(ConfigError, match="intensity"):
        TrainConfig(intensity=-1.0).validate()
