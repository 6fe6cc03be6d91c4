"""The threshold sweep of benchmarks/cut_sweep.py on a constructed under-confident model."""

import numpy as np

from benchmarks.cut_sweep import cut_sweep, neighbour_dice, neighbours
from napari_segpl.engine import painted_slices


def test_neighbours_of_painted_slices():
    assert neighbours([0, 5, 6], 8) == {1: 0, 4: 5, 7: 6}
    assert neighbours([2, 4], 6) == {1: 2, 3: 2, 5: 4}  # 3 lies between: the lower one


def _case():
    truth = np.zeros((12, 10, 10), np.uint8)
    truth[2:10, 3:7, 3:7] = 1
    prob = np.zeros((1, *truth.shape), np.float32)
    prob[0][truth == 1] = 0.25  # right everywhere, but under the fixed threshold
    painted = [5]
    paint = painted_slices(truth, painted, 0)
    return prob, truth, painted, paint


def test_the_sweep_finds_the_cut_the_probabilities_need():
    prob, truth, painted, paint = _case()
    out = cut_sweep(prob, truth, painted, paint, 0)
    assert out["sweep_shared"]["0.5"] == 0.0  # nothing above 0.5: IoU 0
    assert out["sweep_shared"]["0.2"] == 1.0 and out["sweep_shared"]["0.1"] == 1.0
    assert out["sweep_shared"]["0.3"] == 0.0
    # among equal scores, the cut nearest 0.5
    assert out["oracle_cut"] == {"1": 0.2}
    # the neighbours of slice 5 (4 and 6) hold the paint's square: their cut is the same
    assert out["neighbour_cut"] == {"1": 0.2}
    assert out["neighbour_cut_iou"] == {"1": 1.0}


def test_neighbour_dice_by_hand():
    labels = np.zeros((3, 2, 2), np.uint8)
    paint = {1: np.array([[1, 1], [0, 0]], np.uint8)}
    labels[0] = [[1, 0], [0, 0]]  # 1 of 2 painted voxels, no extra
    labels[2] = [[1, 1], [1, 0]]  # both, one extra
    # pooled: intersection 1 + 2 = 3; sizes (1 + 2) + (3 + 2) = 8
    assert neighbour_dice(labels, paint, 0, 1) == 2 * 3 / 8


def test_report_reads_the_gains_of_a_row():
    from benchmarks.cut_sweep import report

    prob, truth, painted, paint = _case()
    row = {"dataset": "lungs_ct", "k": 1, "seed": 0, **cut_sweep(prob, truth, painted, paint, 0)}
    text = report([row])
    # at 0.5 nothing is found (0.0); the oracle and the neighbour cut both reach IoU 1.0
    assert "| tuning | lungs_ct | 1 | 0 | 0.0 | +100.0 | +100.0 | 0.2 | 0.2 |" in text
    assert "neighbour cut on the oracle's side of 0.5 in 1 of 1" in text
