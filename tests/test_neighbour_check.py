"""(kk) rule 3's measure on hand-made volumes: the neighbour Dice, and the gap it reports."""

import numpy as np
import pytest

from benchmarks.neighbour_check import neighbour_dice, one_run


def test_neighbour_dice_by_hand():
    paint = np.zeros((5, 4, 4), np.uint8)
    paint[2, :2, :2] = 1  # 4 voxels painted on slice 2
    pred = np.zeros_like(paint)
    pred[1, :2, :2] = 1  # slice 1: the same 4 voxels, Dice 1
    pred[3, :2, :1] = 1  # slice 3: 2 of them, Dice 2*2/(4+2)
    assert neighbour_dice(pred, paint, [2], 1, reach=1) == pytest.approx((1 + 4 / 6) / 2)
    # reach 2 adds slices 0 and 4 (empty: Dice 0), a painted neighbour is left out
    assert neighbour_dice(pred, paint, [2], 1, reach=2) == pytest.approx((1 + 4 / 6) / 4)
    assert neighbour_dice(pred, paint, [2, 3], 1, reach=1) == pytest.approx(1.0)


def test_one_run_sees_a_class_swapped_next_to_the_paint():
    truth = np.zeros((6, 4, 4), np.uint8)
    truth[:, :2] = 1
    truth[:, 2:] = 2
    twin = truth.copy()
    semi = truth.copy()
    semi[1:] = 3 - truth[1:]  # the two classes trade places beyond the painted slice 0
    diff, lost, gap = one_run(semi, twin, truth, [0], reach=1)
    assert diff == pytest.approx(-100.0)
    assert not lost  # the volumes agree, so the default rule cannot see it
    assert gap == pytest.approx(1.0)
