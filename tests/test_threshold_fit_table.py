"""benchmarks/threshold_signal.py's ``fit_table`` (RESULTS.md (bb) rule 2) on hand-made rows."""

from benchmarks.threshold_signal import fit_table


def _row(recipe: str, seed: int, dice: dict, mu_dice: dict, mu: list) -> dict:
    return {
        "dataset": "lungs_ct", "seed": seed, "method": "segpl-vi", "recipe": recipe,
        "threshold_trace": [[280, 0.5, 0.1], [300, 0.6, 0.02]], "mu_per_class": mu,
        "whole_iou": {"1": 0.5, "2": 0.7}, "whole_dice": dice, "mu_whole_dice": mu_dice,
    }  # fmt: skip


def test_the_table_pairs_the_fits_and_gives_the_cut_difference_in_points():
    rows = [
        _row("vi-likelihood", 0, {"1": 0.8, "2": 0.6}, {"1": 0.85, "2": 0.65}, [0.7, 0.65]),
        _row("default", 0, {"1": 0.8, "2": 0.6}, {"1": 0.8, "2": 0.6}, [0.51, 0.5]),
        {"dataset": "lungs_ct", "seed": 0, "method": "supervised", "recipe": "default"},
    ]
    lines = fit_table(rows).splitlines()
    assert len(lines) == 4  # the header, its rule and the two SegPL-VI rows, dice first
    dice, likelihood = lines[2], lines[3]
    assert "| dice |" in dice and "0.510, 0.500" in dice and "| +0.0 |" in dice
    assert "| likelihood |" in likelihood and "0.700, 0.650" in likelihood
    assert "| 0.0200 |" in likelihood  # sigma: the trace's last
    # IoU at 0.5 (mean over classes), Dice at 0.5, Dice at mu, their difference in points
    assert likelihood.endswith("| 0.600 | 0.700 | 0.750 | +5.0 |")


def test_the_mu_cut_is_scored_as_exported_with_the_parts_touching_the_paint(monkeypatch):
    """``learnt_cut`` hands the paint to the prediction, so the mu cut keeps only the parts
    touching it, as the fixed cut's scores and every export do (without it, the mu cut was
    scored on every part: RESULTS.md (G2))."""
    import numpy as np
    import torch
    from conftest import make_toy_volume

    import napari_segpl.engine as engine
    from benchmarks.threshold_signal import learnt_cut

    torch.manual_seed(0)
    config = engine.TrainConfig(method="segpl-vi", dims=2, base_channels=4, depth=2, axis=2)
    model = engine.TrainedModel.new(config.validate(), 1)
    image, truth = make_toy_volume((24, 20, 6), classes=1)
    paint = {2: (truth[..., 2] == 1).astype(np.uint8)}
    seen, original = [], engine.predict_volume

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "predict_volume", spy)
    got = learnt_cut(model, image, truth, [2], 2, [1], "cpu", paint=paint)
    assert len(seen) == 1 and seen[0]["paint"] is paint and seen[0]["cut"] == "mu"
    kept = original(model, image, cut="mu", paint=paint, probabilities=False)
    expected = engine.exported_scores(kept.labels, truth, [2], axis=2, classes=[1])
    assert got["mu_whole_iou"] == {"1": expected[1]["iou"]}
