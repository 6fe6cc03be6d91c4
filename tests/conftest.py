"""Shared fixtures: small generated volumes, so no test reads data from outside the repo."""

from __future__ import annotations

import locale
import os

import numpy as np
import pytest
import torch

from napari_segpl.engine.methods import Batch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on the 2 cores (Makefile TEST_WORKERS): one torch
    # thread each, so they do not fight over the cores.
    torch.set_num_threads(1)


def make_toy_volume(
    shape: tuple[int, int, int] = (48, 40, 20), seed: int = 0, classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image with bright tubes whose radius varies along axis 2, and their labels.

    The classes differ in brightness, so a small network can learn them in a few dozen steps,
    and their cross-sections change from slice to slice, so held-out slices are a real test.
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    image = rng.normal(0.0, 1.0, shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    centres = [(0.3, 0.35, 0.22), (0.68, 0.62, 0.16)]
    for c, (cx, cy, r) in enumerate(centres[:classes], start=1):
        radius = r * min(shape[:2]) * (1.0 - 0.4 * np.abs(z - shape[2] / 2) / shape[2])
        inside = (x - cx * shape[0]) ** 2 + (y - cy * shape[1]) ** 2 < radius**2
        labels[inside] = c
        image[inside] += 1.5 * c
    return image * 40.0 + 100.0, labels


def add_toy_layers(viewer, shape, painted) -> np.ndarray:
    """``make_toy_volume(shape)`` in ``viewer`` as the image "toy" and, as "toy labels", its
    truth on the ``painted`` slices along axis 2 only; returns the whole truth."""
    image, truth = make_toy_volume(shape)
    labels = np.zeros_like(truth)
    labels[..., painted] = truth[..., painted]
    viewer.add_image(image, name="toy")
    viewer.add_labels(labels, name="toy labels")
    return truth


@pytest.fixture(autouse=True)
def _keep_the_locale():
    """GDCM's DICOM writer, which tests use to make series, leaves the process in the C locale
    (text then reads as ASCII by default): every test ends in the locale it started in."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture
def toy_volume() -> tuple[np.ndarray, np.ndarray]:
    return make_toy_volume()


def make_batch(dims=2, n_l=2, n_u=4, size=32, classes=1, seed=0) -> Batch:
    """Random labelled and unlabelled images for one step (3D: 3-slice stacks, centre mask)."""
    g = torch.Generator().manual_seed(seed)
    depth = (3,) if dims == 3 else ()
    x_l = torch.randn(n_l, 1, *depth, size, size, generator=g)
    y_l = (torch.rand(n_l, classes, *depth, size, size, generator=g) > 0.7).float()
    x_u = torch.randn(n_u, 1, *depth, size, size, generator=g)
    mask = None
    if dims == 3:
        mask = torch.zeros(1, 1, 3, 1, 1)
        mask[:, :, 1] = 1
    return Batch(x_l, y_l, mask, x_u)


def set_model_labels(monkeypatch, change) -> None:
    """Every prediction's labels replaced by ``change(prob, labels)`` (the (K, ...) batch of
    probabilities and the labels the model would give them): ``TrainedModel.labels`` is where
    every prediction of a trained model turns probabilities into labels."""
    from napari_segpl.engine.model import TrainedModel

    real = TrainedModel.labels
    monkeypatch.setattr(TrainedModel, "labels", lambda self, p: change(p, real(self, p)))


def threshold_rule(monkeypatch) -> None:
    """Runs end without a fitted label decision, so masks are cut at the threshold as by a
    model file from before the decision. For tests of a mask's plumbing that need a few-step
    model's mask to hold every class: fitted to the paint, such a model's p separates nothing
    yet and its mask is all background (tests/test_decision.py tests the decision itself)."""
    from napari_segpl.engine.trainer import Trainer

    monkeypatch.setattr(Trainer, "fit_decision", lambda self, method=None, seen=None: None)
