"""The engine's default recipe learns: on a generated volume with three painted slices, every
slice never painted reaches a stated IoU, far above the same network untrained.

"Default" is what a user gets who paints and presses Train: the dock's and the CLI's "auto"
preset, which for a volume not in Hounsfield units is ``mri`` (the engine's recipe with every
lever as it ships: network chosen from the painted slices, burn-in, EMA teacher, perturbed and
warped student views, labelled slices moved by affine maps, near-slice sampling, one Dice over
the unlabelled batch, confidence band, gate, exclusive pseudo labels, CutMix, intensity
evidence). Only the run's length and size are cut, so that it takes about 30 s
of one CPU core: STEPS steps, 48 x 48 slices taken whole, a U-net of depth 3.
(test_trainer.py holds the same kind of test for the paper's recipe.)
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from napari_segpl.engine import (
    CollapseWarning,
    StepEvent,
    TrainConfig,
    Trainer,
    overlap_scores,
    predict_volume,
    prepare_data,
)
from napari_segpl.engine.config import resolve_preset

SHAPE = (48, 48, 24)
PAINTED = [6, 11, 16]
#: (centre x, y, z, radius, brightness in noise SDs) of class 1 and class 2
SPHERES = [(17, 18, 12, 11.0, 4.0), (34, 33, 10, 10.0, 2.0)]
STEPS = 120
#: The IoU every class must reach on the held-out slices; see the test's docstring for why.
BAR = 0.85


def two_spheres(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy MRI-like volume (mean 100, noise SD 40) with a bright sphere (class 1) and a
    dimmer one (class 2). Sliced along axis 2 their cross-sections grow and shrink from slice to
    slice and vanish at the ends, so the unpainted slices are a real test."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    image = rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    for c, (cx, cy, cz, r, brightness) in enumerate(SPHERES, start=1):
        inside = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < r**2
        labels[inside] = c
        image[inside] += brightness
    return image * 40.0 + 100.0, labels


@pytest.fixture(scope="module")
def default_run():
    """Train the default recipe once: (events, trained and untrained models, image, truth)."""
    image, truth = two_spheres()
    sparse = np.zeros_like(truth)
    sparse[..., PAINTED] = truth[..., PAINTED]
    preset = resolve_preset(None, image)  # what "auto" picks for this volume
    cfg = TrainConfig.from_preset(preset, steps=STEPS, patch=48, depth=3, preview_every=0)
    trainer = Trainer(cfg, prepare_data(image, sparse, cfg))
    untrained = copy.deepcopy(trainer.model)  # the same initial weights
    events = list(trainer.run())
    return preset, events, trainer.model, untrained, image, truth


def _held_out_iou(model, image: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    held_out = [s for s in range(SHAPE[2]) if s not in PAINTED]
    pred = predict_volume(model, image)
    scores = overlap_scores(pred.labels, truth, classes=[1, 2], axis=2, slices=held_out)
    return {c: s["iou"] for c, s in scores.items()}


def test_the_default_recipe_learns_the_held_out_slices(default_run):
    """Why BAR: both spheres stand 2 or more noise SDs above the background, so a network that
    has learnt them errs mostly at their rims. A rim one voxel wide is 2 / r of a disc of radius
    r, a fifth at r = 10: a prediction off by one voxel all round scores about 0.8, one off by
    half a voxel on average about 0.9; 0.85 asks for the latter, with the end slices' tiny
    cross-sections included. Measured (CPU, seeds 0-4 of the weights and the noise, this run
    length): class 1 0.953 to 0.986, class 2 0.904 to 0.957, about 28 s of one core per run; the
    untrained network 0.01 to 0.13. Hence also a gain of at least 0.6 over it."""
    preset, events, trained, untrained, image, truth = default_run
    assert preset == "mri"
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == STEPS
    # the pseudo labels took part (the gate opened and alpha ramped in): not a supervised run
    assert steps[-1].losses["alpha"] > 0 and "unsup" in steps[-1].losses
    assert not [e for e in events if isinstance(e, CollapseWarning)]
    learnt = _held_out_iou(trained, image, truth)
    before = _held_out_iou(untrained, image, truth)
    assert min(learnt.values()) >= BAR, learnt
    assert all(learnt[c] - before[c] >= 0.6 for c in (1, 2)), (learnt, before)
