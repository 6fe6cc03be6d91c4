"""Metrics against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_segpl.engine.metrics import brier_score, exported_scores, overlap_scores


def test_iou_and_dice_per_class_by_hand():
    truth = np.array([[[1, 1, 0, 2]], [[0, 2, 2, 0]]])
    pred = np.array([[[1, 0, 0, 2]], [[1, 2, 0, 0]]])
    scores = overlap_scores(pred, truth)
    # class 1: pred {0,0,0},{1,0,0}; truth {0,0,0},{0,0,1}: inter 1, union 3
    assert scores[1]["iou"] == pytest.approx(1 / 3)
    assert scores[1]["dice"] == pytest.approx(2 * 1 / 4)
    # class 2: pred {0,0,3},{1,0,1}; truth {0,0,3},{1,0,1},{1,0,2}: inter 2, union 3
    assert scores[2]["iou"] == pytest.approx(2 / 3)
    assert scores[2]["dice"] == pytest.approx(4 / 5)
    assert 0 not in scores  # background is never scored


def test_nested_classes_are_scored_as_regions_by_hand():
    """BRATS-style: 1 whole tumour, 2 core inside it. The whole tumour is exact and the core
    shifted by one voxel: region 1 (label >= 1) is perfect; region 2 overlaps on 1 of 3."""
    truth = np.array([[[0, 1, 2, 2, 1, 0]]])
    pred = np.array([[[0, 1, 1, 2, 2, 0]]])
    regions = overlap_scores(pred, truth, nested=True)
    assert regions[1]["iou"] == 1.0 and regions[1]["true_voxels"] == 4
    assert regions[2]["iou"] == pytest.approx(1 / 3)
    assert overlap_scores(pred, truth)[1]["iou"] == pytest.approx(1 / 3)  # exclusive: the ring
    exported = exported_scores(pred, truth, [], axis=0, nested=True)
    assert exported[1]["iou"] == 1.0 and exported[1]["volume_ratio"] == 1.0


def test_absent_class_is_nan_not_perfect():
    scores = overlap_scores(np.zeros((2, 2, 2), int), np.zeros((2, 2, 2), int), classes=[1])
    assert math.isnan(scores[1]["iou"]) and math.isnan(scores[1]["dice"])


def test_slices_restrict_the_score():
    truth = np.zeros((2, 2, 3), int)
    pred = np.zeros((2, 2, 3), int)
    truth[..., 0] = 1
    pred[..., 0] = 1
    pred[..., 2] = 1  # wrong, but outside the chosen slice
    assert overlap_scores(pred, truth, axis=2, slices=[0])[1]["iou"] == 1.0
    assert overlap_scores(pred, truth)[1]["iou"] == pytest.approx(0.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        overlap_scores(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def test_brier_by_hand():
    p = np.array([0.9, 0.2, 0.5, 1.0])
    y = np.array([1, 0, 1, 0])
    assert brier_score(p, y) == pytest.approx((0.01 + 0.04 + 0.25 + 1.0) / 4)


def test_exported_scores_count_a_false_positive_on_an_empty_slice():
    """A mask painted on a slice where the structure does not exist costs IoU in the
    whole-volume score, while the foreground-slice score cannot see it."""
    truth = np.zeros((4, 4, 5), np.uint8)
    truth[1:3, 1:3, 1:3] = 1  # slices 1 and 2 hold the structure (4 voxels each)
    pred = truth.copy()
    pred[0:2, 0:2, 4] = 1  # 4 false voxels on slice 4, which holds no structure
    painted = [1]
    fg_only = overlap_scores(pred, truth, axis=2, slices=[2])  # the old view: slices with it
    assert fg_only[1]["iou"] == 1.0
    whole = exported_scores(pred, truth, painted, axis=2)
    # slices 0, 2, 3, 4: inter 4 (slice 2), union 4 + 4 = 8
    assert whole[1]["iou"] == pytest.approx(4 / 8)
    assert whole[1]["dice"] == pytest.approx(2 * 4 / (8 + 4))
    assert whole[1]["volume_ratio"] == pytest.approx(8 / 4)
    # the painted slice is left out: spoiling it changes nothing
    spoiled = pred.copy()
    spoiled[:, :, 1] = 0
    assert exported_scores(spoiled, truth, painted, axis=2)[1]["iou"] == whole[1]["iou"]


def test_exported_volume_ratio_of_a_class_absent_from_the_truth():
    truth = np.zeros((2, 2, 3), np.uint8)
    pred = truth.copy()
    pred[0, 0, 2] = 2
    scores = exported_scores(pred, truth, [0], axis=2, classes=[1, 2])
    assert scores[1]["volume_ratio"] == 1.0 and math.isnan(scores[1]["iou"])
    assert scores[2]["volume_ratio"] == float("inf") and scores[2]["iou"] == 0.0


def test_nested_classes_found_by_themselves_include_every_outer_region():
    """BRATS-style: a volume holding only label 2 holds class 1 (label >= 1) as well."""
    truth = np.zeros((4, 4, 2), np.uint8)
    truth[1:3, 1:3] = 2
    pred = np.zeros_like(truth)
    pred[1:3, 1:2] = 2
    scores = overlap_scores(pred, truth, nested=True)
    assert sorted(scores) == [1, 2]
    assert scores[1]["iou"] == 0.5  # label >= 1: 4 of the 8 voxels
    assert scores[1]["true_voxels"] == 8.0
    assert sorted(overlap_scores(pred, truth)) == [2]  # flat classes: the labels present
