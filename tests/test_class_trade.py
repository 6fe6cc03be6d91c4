"""The class trade against hand-made masks."""

import numpy as np
import pytest

from napari_segpl.engine.class_trade import trade_classes


def test_lost_class_comes_from_the_twin_and_the_rest_stays():
    semi = np.array([[1, 1, 1, 0], [2, 0, 0, 0]])
    twin = np.array([[1, 2, 2, 0], [0, 0, 0, 1]])
    out = trade_classes(semi, twin, [2])
    # the twin's class-2 voxels become 2; semi's own 2 stays; semi's class 1 elsewhere stays;
    # the twin's class 1 (not lost) is not taken
    assert out.tolist() == [[1, 2, 2, 0], [2, 0, 0, 0]]
    assert semi.tolist() == [[1, 1, 1, 0], [2, 0, 0, 0]]  # the input is not changed


def test_nested_trade_raises_only_to_the_lost_class():
    semi = np.array([3, 1, 0, 2])
    twin = np.array([2, 2, 2, 0])
    # nested: the region of class 2 is label >= 2; a voxel already 3 stays 3
    assert trade_classes(semi, twin, [2], nested=True).tolist() == [3, 2, 2, 2]


def test_nothing_lost_is_a_copy_and_shapes_must_match():
    semi = np.arange(6).reshape(2, 3)
    out = trade_classes(semi, np.zeros_like(semi), [])
    assert out.tolist() == semi.tolist() and out is not semi
    with pytest.raises(ValueError, match="shape"):
        trade_classes(semi, np.zeros((3, 2), int), [1])
