"""benchmarks' saved probabilities cut as the engine cut them: two classes whose p both lie
near 1 (organs CT) must not tie once saved (RESULTS.md (gg))."""

from __future__ import annotations

import numpy as np

from benchmarks.uncertainty_auroc import saved_arrays
from napari_segpl.engine import labels_from_probabilities
from napari_segpl.engine.inference import Prediction


def test_two_near_one_classes_keep_the_engines_choice():
    p = np.zeros((5, 4, 1, 1), np.float32)
    p[1] = 0.9981  # class 2
    p[4] = 0.9982  # class 5: the larger, the engine's choice
    labels = labels_from_probabilities(p, 0.5, False)
    assert (labels == 5).all()
    # in float16 both round to the same value, and the cut would give the first class
    assert np.float16(0.9981) == np.float16(0.9982)
    saved = saved_arrays(Prediction(labels, p, tta_std=np.zeros_like(p)))
    again = labels_from_probabilities(saved["probabilities"].astype(np.float32), 0.5, False)
    np.testing.assert_array_equal(again, labels)
    assert saved["tta_std"].dtype == np.float16  # the uncertainties stay small
