"""The next slice to paint: the per-slice score (uncertainty near the predicted structure) and
the three rules that pick an unlabelled slice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from napari_segpl.engine.suggest import (
    DEFAULT_RULE,
    GAP,
    RANDOM,
    UNCERTAINTY,
    describe,
    grow_in_plane,
    largest_gap_middle,
    rank_by_score,
    slice_scores,
    suggest_next,
)


def test_growing_in_plane_matches_scipy_slice_by_slice():
    mask = np.random.default_rng(0).random((4, 17, 13)) > 0.97
    mask[2] = False  # an empty slice between two that are not: it stays empty
    for radius in (1, 3):
        square = np.ones((2 * radius + 1,) * 2, bool)
        expected = np.stack([ndimage.binary_dilation(m, square) for m in mask])
        np.testing.assert_array_equal(grow_in_plane(mask, radius), expected)
    assert mask[1].any() and mask[3].any() and not grow_in_plane(mask, 3)[2].any()


def _disc_volume(n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Labels: a disc on every slice along axis 2; uncertainty 0.1 around each disc."""
    x, y = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    disc = (x - 20) ** 2 + (y - 15) ** 2 < 25
    labels = np.repeat(disc[..., None], n, axis=2).astype(np.uint8)
    unc = np.zeros(labels.shape, np.float32)
    unc[grow_in_plane(np.moveaxis(labels > 0, 2, 0), 3).transpose(1, 2, 0)] = 0.1
    return unc, labels


def test_a_constructed_uncertain_slice_ranks_first_and_background_does_not_dilute():
    unc, labels = _disc_volume()
    unc[18:23, 13:18, 6] = 0.9  # slice 6 is unsure of its structure
    scores = slice_scores(unc, labels, axis=2)
    assert rank_by_score(scores, labelled=[])[0][0] == 6
    # a hand value: slice 6's region is the disc grown by 3 (a square): 0.9 on 25 voxels
    region = grow_in_plane(labels[None, ..., 6] > 0, 3)[0]
    assert scores[6] == pytest.approx((0.9 * 25 + 0.1 * (region.sum() - 25)) / region.sum())
    assert scores[0] == pytest.approx(0.1)
    # confident structure, unsure far background (another slice): the score does not move
    noisy = unc.copy()
    noisy[:5, :5, 2] = 1.0
    np.testing.assert_allclose(slice_scores(noisy, labels, axis=2), scores)
    # along another axis the same numbers, transposed
    np.testing.assert_allclose(
        slice_scores(np.moveaxis(unc, 2, 0), np.moveaxis(labels, 2, 0), axis=0), scores
    )


def test_slices_without_structure_have_no_score_and_are_never_picked_by_uncertainty():
    unc, labels = _disc_volume()
    labels[..., 4] = 0
    unc[..., 4] = 1.0  # unsure everywhere, but nothing predicted there
    scores = slice_scores(unc, labels, axis=2)
    assert math.isnan(scores[4]) and np.isfinite(np.delete(scores, 4)).all()
    assert suggest_next(9, [0], UNCERTAINTY, scores).slice != 4
    with pytest.raises(ValueError, match="one 3D shape"):
        slice_scores(unc[..., :3], labels, axis=2)


@pytest.mark.parametrize(
    ("n", "labelled", "middle", "run"),
    [
        (100, [50], 24, (0, 49)),  # one painted slice: the ends count as gaps
        (100, [25, 50], 75, (51, 99)),
        (100, [30, 70], 50, (31, 69)),
        (10, [], 4, (0, 9)),
        (7, [0, 6], 3, (1, 5)),
        (7, [2, 4], 0, (0, 1)),  # ties: the earliest run
    ],
)
def test_gap_middle_by_hand(n, labelled, middle, run):
    assert largest_gap_middle(n, labelled) == (middle, run)
    s = suggest_next(n, labelled)  # the default rule
    assert s.slice == middle and s.rule == GAP


def test_default_rule_is_gap_middle_until_measured():
    assert DEFAULT_RULE == GAP


def test_uncertainty_rule_takes_the_highest_unlabelled_score():
    scores = np.array([0.9, 0.1, 0.5, np.nan, 0.7, 0.2])
    s = suggest_next(6, [0], UNCERTAINTY, scores)
    assert (s.slice, s.score, s.nearest, s.distance) == (4, 0.7, 0, 4)
    assert rank_by_score(scores, [0]) == [(4, 0.7), (2, 0.5), (5, 0.2), (1, 0.1)]
    with pytest.raises(ValueError, match="predict first"):
        suggest_next(6, [0], UNCERTAINTY)


def test_uncertainty_rule_falls_back_to_gap_middle_and_says_so():
    s = suggest_next(10, [2], UNCERTAINTY, np.full(10, np.nan))
    assert s.rule == GAP and s.slice == 6 and "gap-middle instead" in s.reason


def test_random_rule_picks_an_unlabelled_slice_reproducibly():
    labelled = [0, 1, 2, 3, 5, 6, 8]
    picks = {suggest_next(10, labelled, RANDOM, seed=seed).slice for seed in range(40)}
    assert picks == {4, 7, 9}
    assert suggest_next(10, labelled, RANDOM, seed=3) == suggest_next(10, labelled, RANDOM, seed=3)


def test_every_slice_labelled_and_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="every slice is labelled"):
        suggest_next(3, [0, 1, 2])
    with pytest.raises(ValueError, match="unknown rule"):
        suggest_next(3, [0], "entropy")
    with pytest.raises(ValueError, match="2 scores for 3 slices"):
        suggest_next(3, [0], GAP, np.zeros(2))


def test_the_status_line_says_why():
    scores = np.array([0.9, 0.1, 0.5, 0.3])
    line = describe(suggest_next(4, [0, 3], UNCERTAINTY, scores), "bits")
    assert line.startswith("slice 2: highest uncertainty")
    assert "score 0.500 bits" in line and "1 slice from labelled slice 3" in line
    assert "no labelled slice yet" in describe(suggest_next(5, []))
    assert "no score" in describe(suggest_next(5, [1]))
