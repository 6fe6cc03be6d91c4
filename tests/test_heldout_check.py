"""benchmarks/heldout_check.py: which slice a user would hold out, and what the safeguard then
keeps, on hand-made predictions (no training, no shared data)."""

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.heldout_check import drawn, empty_ends, farthest, outcome


def test_the_farthest_test_slice_and_ties_go_to_the_lower():
    assert farthest([3, 4, 10, 17], [10]) == 3  # 7 away, as is 17: the lower
    assert farthest([1, 5, 9], [0, 8]) == 5
    assert drawn([2, 4, 6, 8, 10]) == drawn([2, 4, 6, 8, 10])  # seeded: the same for every method
    assert len(set(drawn([2, 4, 6, 8, 10]))) == 3


def test_empty_ends_are_the_nearest_empty_slices_beyond_the_structure():
    truth = np.zeros((4, 4, 10), np.uint8)
    truth[1, 1, 3:8] = 1
    assert empty_ends(truth, 2) == [2, 8]
    truth[1, 1, 0] = 1  # the structure reaches the first slice: only one end is left
    assert empty_ends(truth, 2) == [8]


def _case():
    truth = np.zeros((8, 8, 6), np.uint8)
    truth[2:6, 2:6, :] = 1
    return SimpleNamespace(truth=truth, chosen=[0])


@pytest.mark.parametrize("semi_wrong_on", [3, 4])
def test_a_model_wrong_on_the_held_out_slice_is_dropped_and_scored_without_it(semi_wrong_on):
    case = _case()
    sup = case.truth.copy()
    sup[2, 2, :] = 0  # supervised: a voxel short on every slice
    semi = case.truth.copy()
    semi[..., semi_wrong_on] = 0  # semi-supervised: perfect but one slice lost
    areas = [16.0]
    held_bad = outcome("segpl", semi, sup, case, 2, areas, [semi_wrong_on])
    assert held_bad["kept_heldout"] == "supervised" and held_bad["heldout"] == 0
    assert held_bad["kept_loss_only"] == "segpl"  # the volume alone does not see it
    # held out elsewhere, semi is kept; scored on slices 1-5 but the held-out one
    other = 2 if semi_wrong_on != 2 else 1
    held_good = outcome("segpl", semi, sup, case, 2, areas, [other])
    assert held_good["kept_heldout"] == "segpl"
    scored = [s for s in range(1, 6) if s != other]
    inter = sum(np.logical_and(semi[..., s], case.truth[..., s]).sum() for s in scored)
    union = sum(np.logical_or(semi[..., s], case.truth[..., s]).sum() for s in scored)
    inter_sup = sum(np.logical_and(sup[..., s], case.truth[..., s]).sum() for s in scored)
    union_sup = sum(np.logical_or(sup[..., s], case.truth[..., s]).sum() for s in scored)
    assert held_good["raw"] == pytest.approx(inter / union - inter_sup / union_sup)
