"""The time-to-mask benchmark: its generated CT, and one tiny run end to end (a smoke test; the
benchmark itself is run by hand on an idle machine)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks import time_to_mask


def test_the_generated_ct_is_deterministic_and_looks_like_a_ct():
    image, labels = time_to_mask.make_ct((48, 40, 30))
    again, _ = time_to_mask.make_ct((48, 40, 30))
    np.testing.assert_array_equal(image, again)
    assert image.dtype == np.int16 and labels.dtype == np.uint8
    assert abs(np.median(image[0, 0]) + 1000) < 60  # air in the corners
    means = [float(image[labels == c].mean()) for c in (1, 2, 3)]
    for mean, (_, _, hu) in zip(means, time_to_mask.ORGANS, strict=True):
        assert abs(mean - hu) < 10  # one class per organ, each of its own HU
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]


def test_a_tiny_run_times_the_mask_and_scores_it(tmp_path, capsys):
    out = tmp_path / "rows.json"
    fast = "--steps 3 --patch 32 --channels 4 --ratio 1"
    argv = ["--cases", "generated", "--seeds", "0", "--threads", "1", "--extra", fast]
    argv += ["--generated-shape", "40", "40", "20", "--out", str(out)]
    assert time_to_mask.main(argv) == 0
    (row,) = json.loads(out.read_text())
    assert row["case"] == "generated" and row["extra"] == fast and row["steps"] == 3
    assert 0 < row["train_s"] < row["seconds"] and row["safeguard_s"] is not None
    assert row["mask_reused"] and row["predict_s"] == 0.0 and row["kept"] in ("segpl", "supervised")
    assert 0 <= row["iou"] <= 1 and len(row["iou_per_class"]) == 3
    printed = capsys.readouterr().out
    assert "| generated | segpl | --steps 3" in printed and "mean of 1" in printed
