"""The compare's bookkeeping without training: cost ratios over the supervised runs, and the
summary's means, spreads and pooled calibration bins, against hand computations."""

from __future__ import annotations

import pytest

from napari_segpl.engine import compare as compare_module


def test_ratios_are_over_the_mean_of_the_supervised_runs():
    """``_finished``: copies with s/step over the supervised runs' mean, or over a supervised
    run timed for it alone; methods without a run are left out."""

    def run(method, seed, sps):
        return compare_module.RunResult(method, seed, [0.5], [0.6], 0.1, 0.05, sps, 1.0, 4, 10,
                                        [0.5], [0.5], {"count": [1], "mean_p": [0.5],
                                                       "freq": [0.5]})  # fmt: skip

    base = compare_module.CompareResult([], ["supervised", "segpl", "fixmatch"], [0, 1], [10],
                                        2, 1, [0.0], [0.0], {}, None, False)  # fmt: skip
    runs = [run("supervised", 0, 2.0), run("supervised", 1, 4.0), run("segpl", 0, 6.0)]
    merged = compare_module._finished(base, runs)
    assert merged.methods == ["supervised", "segpl"] and merged.supervised_seconds_per_step == 3
    assert [r.cost_ratio for r in merged.runs] == [2 / 3, 4 / 3, 2.0]
    assert runs[2].cost_ratio is None  # copies
    assert compare_module._finished(base, runs[2:], 3.0).runs[0].cost_ratio == 2.0
    assert compare_module._finished(base, runs[2:]).runs[0].cost_ratio is None


def _run(seed: int, iou: list[float], brier: float, count: list[int], mean_p: list[float],
         freq: list[float]) -> compare_module.RunResult:  # fmt: skip
    return compare_module.RunResult(
        "segpl", seed, iou, iou, brier, 0.1, 1.0, 10.0, 10, 100, [0.5], [0.4],
        {"count": count, "mean_p": mean_p, "freq": freq},
    )  # fmt: skip


def test_summary_is_the_population_mean_and_sd_with_bins_pooled_by_count():
    runs = [
        _run(0, [0.6, 0.2], 0.10, [3, 0, 1], [0.1, float("nan"), 0.9], [0.0, float("nan"), 1.0]),
        _run(1, [0.8, 0.5], 0.30, [1, 2, 3], [0.3, 0.5, 0.7], [1.0, 0.5, 0.0]),
    ]
    result = compare_module.CompareResult(
        runs, ["segpl"], [0, 1], [10], 2, 2, [0.0], [0.0], {}, None, False
    )
    (row,) = result.summary()
    assert row["iou"] == pytest.approx([0.7, 0.35]) and row["iou_sd"] == pytest.approx([0.1, 0.15])
    assert row["brier"] == pytest.approx(0.2) and row["brier_sd"] == pytest.approx(0.1)
    assert row["mean_iou"] == pytest.approx((0.4 + 0.65) / 2)
    assert row["mean_iou_sd"] == pytest.approx(0.125)  # |0.4 - 0.65| / 2, not the sample SD
    cal = row["calibration"]
    assert cal["count"] == [4, 2, 4]
    # bin 0: (3 x 0.1 + 1 x 0.3) / 4; bin 1: seed 1's alone; bin 2: (0.9 + 3 x 0.7) / 4
    assert cal["mean_p"] == pytest.approx([0.15, 0.5, 0.75])
    assert cal["freq"] == pytest.approx([0.25, 0.5, 0.25])
