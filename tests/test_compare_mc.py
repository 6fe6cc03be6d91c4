"""segpl compare's Monte-Carlo calibration of SegPL-VI (the paper's section 4.4 Brier score)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import make_toy_volume

from napari_segpl import compare_cli
from napari_segpl.engine import TrainConfig
from napari_segpl.engine import compare as compare_module
from napari_segpl.engine.compare_store import run_from_json, run_to_json
from napari_segpl.engine.inference import predict_volume
from napari_segpl.engine.uncertainty import MC_SAMPLES

SHAPE = (32, 28, 12)
PAINTED = [1, 3, 5, 8, 10]
HOLDOUT = [3, 8]


@pytest.fixture(scope="module")
def toy():
    return make_toy_volume(SHAPE)


@pytest.fixture(scope="module")
def done(toy):
    """A quick compare of supervised training and SegPL-VI, with each run's model kept."""
    image, labels = toy
    config = TrainConfig.from_preset(
        "ct", normalisation="zscore", dims=2, steps=4, base_channels=4, depth=2, device="cpu"
    )
    models = {}
    result = compare_module.compare(
        image, labels, config, ["supervised", "segpl-vi"], HOLDOUT, labelled=PAINTED,
        gammas=(0.0,), epsilons=(0.0,), surface=False,
        on_run=lambda d: models.__setitem__(d.method, d.model),
    )  # fmt: skip
    return result, models


def test_segpl_vi_gets_the_brier_of_its_monte_carlo_mean_by_hand(done, toy):
    result, models = done
    image, labels = toy
    vi = next(r for r in result.runs if r.method == "segpl-vi")
    pred = predict_volume(models["segpl-vi"], image, mc_samples=MC_SAMPLES)  # seed 0, as compare
    mc = pred.mc_mean[:, :, :, HOLDOUT]  # (K, x, y, held-out slices): axis 2
    truth = labels[:, :, HOLDOUT]
    k = mc.shape[0]
    # a mean of MC_SAMPLES indicators: multiples of 1 / MC_SAMPLES only
    np.testing.assert_allclose(mc * MC_SAMPLES, np.round(mc * MC_SAMPLES), atol=1e-5)
    squares = [(mc[c] - (truth == c + 1)) ** 2 for c in range(k)]
    assert vi.brier_mc == pytest.approx(float(np.mean(squares)), rel=1e-6)
    assert 0 <= vi.ece_mc <= 1
    # the Brier of p is unchanged by drawing thresholds beside it
    p = pred.probabilities[:, :, :, HOLDOUT]
    by_hand = np.mean([(p[c] - (truth == c + 1)) ** 2 for c in range(k)])
    assert vi.brier == pytest.approx(float(by_hand), rel=1e-6)


def test_only_a_method_that_learns_a_threshold_has_them_and_the_table_says_so(done):
    result, _ = done
    sup = next(r for r in result.runs if r.method == "supervised")
    assert sup.brier_mc is None and sup.ece_mc is None
    rows = {r["method"]: r for r in result.summary()}
    assert rows["supervised"]["brier_mc"] is None
    assert math.isfinite(rows["segpl-vi"]["brier_mc"])
    head, table = compare_cli.table_rows(result)
    col = head.index("MC Brier")
    assert head[col + 1] == "MC ECE"
    by_method = {row[0]: row for row in table}
    assert by_method["supervised"][col] == "n/a"
    assert float(by_method["segpl-vi"][col]) == pytest.approx(
        rows["segpl-vi"]["brier_mc"], abs=1e-4
    )
    json.dumps(result.to_json(), allow_nan=False)


def test_a_compare_without_segpl_vi_keeps_its_old_columns(done):
    result, _ = done
    only = compare_module._finished(result, [r for r in result.runs if r.method == "supervised"])
    head, _ = compare_cli.table_rows(only)
    assert "MC Brier" not in head and head[-5:] == [
        "Brier",
        "ECE",
        "s/step",
        "x supervised",
        "params",
    ]


def test_run_files_keep_them_and_older_files_load_without(done):
    result, _ = done
    vi = next(r for r in result.runs if r.method == "segpl-vi")
    again = run_from_json(json.loads(json.dumps(run_to_json(vi))))
    assert again.brier_mc == pytest.approx(vi.brier_mc) and again.ece_mc == pytest.approx(vi.ece_mc)
    old = run_to_json(vi)
    del old["brier_mc"], old["ece_mc"]  # a run file written before these numbers existed
    assert run_from_json(old).brier_mc is None


def test_its_reliability_bins_are_the_monte_carlo_means_and_are_drawn_dotted(done, toy):
    from matplotlib.figure import Figure

    from napari_segpl.compare_figures import draw_reliability
    from napari_segpl.engine.metrics import calibration_bins

    result, models = done
    image, labels = toy
    vi = next(r for r in result.runs if r.method == "segpl-vi")
    mc = predict_volume(models["segpl-vi"], image, mc_samples=MC_SAMPLES).mc_mean
    mc_h = np.moveaxis(mc[:, :, :, HOLDOUT], 3, 1)  # (K, held-out slices, x, y)
    truth = np.moveaxis(labels[:, :, HOLDOUT], 2, 0)
    target = np.stack([truth == c + 1 for c in range(mc.shape[0])]).astype(np.float32)
    count, mean_p, _ = calibration_bins(mc_h, target)
    assert vi.calibration_mc["count"] == count.tolist()
    np.testing.assert_allclose(vi.calibration_mc["mean_p"], mean_p)  # NaN where empty
    filled = np.array([p for p, c in zip(mean_p, count, strict=True) if c]) * MC_SAMPLES
    np.testing.assert_allclose(filled, np.round(filled))  # each bin holds one k / 5 value
    rows = {r["method"]: r for r in result.summary()}
    assert rows["supervised"]["calibration_mc"] is None
    assert rows["segpl-vi"]["calibration_mc"]["count"] == count.tolist()  # one seed: as is
    lines = draw_reliability(Figure().add_subplot(), result)
    assert "segpl-vi MC" in lines and "supervised MC" not in lines
    assert lines["segpl-vi MC"].get_linestyle() == ":"
    again = run_from_json(json.loads(json.dumps(run_to_json(vi))))
    assert again.calibration_mc["count"] == vi.calibration_mc["count"]
