"""The twin-average candidate of RESULTS.md (ee) rule 2: the mean of two members' sigmoid
probabilities, cut as the engine cuts a prediction (hand examples)."""

import numpy as np

from benchmarks.twin_average import averaged_labels


def test_average_of_two_members_cut_at_half():
    # two classes, four voxels: (semi, twin) per class
    semi = np.array([[0.9, 0.9, 0.2, 0.6], [0.1, 0.2, 0.9, 0.7]], np.float16)
    twin = np.array([[0.3, 0.0, 0.1, 0.1], [0.1, 0.9, 0.2, 0.8]], np.float16)
    # means: class 1 [0.6, 0.45, 0.15, 0.35], class 2 [0.1, 0.55, 0.55, 0.75]
    assert averaged_labels(semi, twin, nested=False).tolist() == [1, 2, 2, 2]
    # nested: the highest class above 0.5
    assert averaged_labels(semi, twin, nested=True).tolist() == [1, 2, 2, 2]
    # a voxel only one member calls foreground at full confidence sits at 0.5: not kept
    only_one = averaged_labels(np.array([[1.0]]), np.array([[0.0]]), nested=False)
    assert only_one.tolist() == [0]
