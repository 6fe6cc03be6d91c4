"""Which labelling the image supports: the painted slices' intensity densities, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_segpl.engine.label_evidence import label_evidence


def _case() -> tuple[np.ndarray, np.ndarray]:
    """Two 10 x 10 slices along axis 0: intensity 0 on the left half (background), 1 on the
    right half (class 1), and the truth; slice 0 is the painted one."""
    image = np.zeros((2, 10, 10), np.float32)
    image[:, :, 5:] = 1.0
    truth = (image > 0.5).astype(np.uint8)
    return image, truth


def test_the_mean_log_ratio_matches_a_hand_computation():
    image, truth = _case()
    painted = truth.copy()
    a = truth.copy()
    a[1, 0, 0] = 1  # one background voxel (intensity 0) called class 1
    b = np.zeros_like(truth)  # no class 1 at all
    a[0], b[0] = 1, 0  # differences on the painted slice do not count
    # 50 voxels of each value on the painted slice: both at the ends of the 64 bins; with one
    # pseudo-count a bin and a 5-bin box filter (edges repeated), a value's own bin holds
    # 3 * 51 + 2 = 155 of the 6 * 50 + 320 = 620 smoothed counts, the far end bin 5
    ratio = math.log(155 / 5)
    got = label_evidence(image, a, b, painted, [0], axis=0)
    assert got.voxels == 51
    assert got.mean == pytest.approx((50 - 1) * ratio / 51, rel=1e-9)
    swapped = label_evidence(image, b, a, painted, [0], axis=0)
    assert swapped.mean == pytest.approx(-got.mean) and swapped.voxels == 51


def test_agreement_says_nothing_and_shapes_must_match():
    image, truth = _case()
    same = label_evidence(image, truth, truth.copy(), truth, [0], axis=0)
    assert (same.mean, same.voxels) == (0.0, 0)
    with pytest.raises(ValueError, match="shapes differ"):
        label_evidence(image, truth[:1], truth, truth, [0], axis=0)


def test_a_label_grown_onto_tissue_of_another_intensity_loses_along_any_axis():
    rng = np.random.default_rng(0)
    image = rng.normal(0.0, 1.0, (12, 16, 16))
    truth = np.zeros(image.shape, np.uint8)
    truth[:, 4:10, 4:10] = 1
    image[truth == 1] += 4.0
    grown = truth.copy()
    grown[:, 10:14, 4:10] = 1  # over background intensities
    for axis in range(3):
        moved = [np.moveaxis(v, 0, axis) for v in (image, truth, grown)]
        painted = moved[1]
        got = label_evidence(moved[0], moved[1], moved[2], painted, [3, 8], axis=axis)
        assert got.mean > 1.0 and got.voxels == 10 * 4 * 6, (axis, got)
