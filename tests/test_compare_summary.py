"""The (kk) rule-2 reading of merged compares: hand examples where the ordering holds or not."""

from benchmarks.compare_summary import ordering, per_seed, table


def test_ordering_on_means_and_at_every_seed():
    scores = {
        "supervised": {0: 0.50, 1: 0.60},
        "segpl": {0: 0.70, 1: 0.62},
        "cps": {0: 0.55, 1: 0.65},
    }
    # means: segpl 0.66 > cps 0.60, but at seed 1 cps (0.65) beats segpl (0.62)
    assert ordering(scores) == (True, False)
    scores["segpl-vi"] = {1: 0.66}
    assert ordering(scores) == (True, True)
    scores["ensemble"] = {0: 0.90}
    assert ordering(scores) == (False, False)


def test_per_seed_and_table_rows():
    results = {
        "runs": [
            {"method": "supervised", "seed": 0, "mean_iou": 0.5},
            {"method": "supervised", "seed": 1, "mean_iou": 0.7},
            {"method": "segpl", "seed": 0, "mean_iou": 0.8},
        ]
    }
    scores = per_seed(results)
    assert scores == {"supervised": {0: 0.5, 1: 0.7}, "segpl": {0: 0.8}}
    lines = table("lungs", scores)
    assert "| segpl | 1 | 0.800 | +30.0 / - |" in lines
    assert "| supervised | 2 | 0.600 ± 0.100 | +0.0 / +0.0 |" in lines
    assert lines[-1].endswith("holds at every seed.")
