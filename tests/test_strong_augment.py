"""FixMatch's strong view against independent computations: the blur is SciPy's Gaussian
filter in-plane, the jitter is brightness about the minimum and contrast about the mean with
the factors drawn, and the CutMix boxes have the area, shape and probability asked for."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from napari_segpl.engine import strong_augment
from napari_segpl.engine.strong_augment import StrongAugment, cutmix_boxes, gaussian_blur, jitter


@pytest.mark.parametrize("sigma", [0.4, 1.0, 1.7])
def test_blur_is_scipys_gaussian_filter_in_plane(sigma):
    image = np.random.default_rng(0).normal(size=(2, 3, 20, 24)).astype(np.float32)
    got = gaussian_blur(torch.from_numpy(image), sigma).numpy()
    # SciPy's "mirror" is torch's "reflect"; the kernel reaches ceil(3 sigma) pixels (at least
    # one); channels and the stack's slices are not blurred across
    radius = max(1, int(np.ceil(3 * sigma)))
    expected = gaussian_filter(image, sigma=(0, 0, sigma, sigma), mode="mirror", radius=radius)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_jitter_scales_about_the_minimum_then_the_mean_and_clips(monkeypatch):
    draws = iter([1.4, 0.6])  # brightness, then contrast
    monkeypatch.setattr(strong_augment, "_uniform", lambda low, high: next(draws))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.tensor(0.9))  # keep the order
    x = torch.tensor([[[0.0, 1.0], [2.0, 5.0]]])
    lo, hi = 0.0, 5.0
    b = np.clip((x.numpy() - lo) * 1.4 + lo, lo, hi)  # brightness about the minimum
    c = np.clip((b - b.mean()) * 0.6 + b.mean(), lo, hi)  # contrast about the new mean
    np.testing.assert_allclose(jitter(x, 0.5, 0.5).numpy(), c, rtol=1e-6)


def test_cutmix_boxes_area_shape_and_probability():
    torch.manual_seed(0)
    aug = StrongAugment(cutmix_p=0.5)
    like = torch.zeros(2000, 1, 3, 40, 60)
    keep = cutmix_boxes(2000, like, aug)
    assert keep.shape == (2000, 1, 1, 40, 60)
    taken = 1 - keep.flatten(1).mean(dim=1)
    used = taken > 0
    assert 0.45 < used.float().mean() < 0.55
    # 2-40 % of the area, less by the rounding down of each side
    assert taken[used].min() >= 0.01 and taken[used].max() <= 0.40
    assert taken[used].max() > 0.3 and taken[used].min() < 0.04  # the whole range is drawn
    ratios = []
    for i in torch.nonzero(used)[:200, 0]:  # each one a single rectangle
        rows, cols = torch.nonzero(keep[i, 0, 0] == 0, as_tuple=True)
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert h * w == rows.numel()
        if h < 40 and w < 60:  # a side cut at the image's edge changes the shape
            ratios.append(float(h / w))
    assert 0.2 <= min(ratios) and max(ratios) <= 3.6  # 0.3-3.3, rounded to whole pixels
    assert min(ratios) < 0.5 and max(ratios) > 2.0
    assert torch.equal(
        cutmix_boxes(5, like[:5], StrongAugment(cutmix_p=0.0)), torch.ones(5, 1, 1, 40, 60)
    )
