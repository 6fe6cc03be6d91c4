"""Uncertainty maps for every method: each formula against an independent computation, which
kinds each method has, and ``--uncertainty`` / ``--uncertainty-kind`` on the command line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_toy_volume
from torch.distributions import Bernoulli

from napari_segpl import cli
from napari_segpl.engine import Prediction, TrainConfig, TrainedModel, predict_volume
from napari_segpl.engine.uncertainty import (
    ENTROPY,
    MC,
    SPREAD,
    binary_entropy,
    default_kind,
    kinds_for,
    kinds_in,
    layer_name,
    resolve_kind,
    uncertainty_maps,
    uncertainty_volume,
)
from napari_segpl.volume import Volume, read_volume, write_nifti

TINY = {"base_channels": 4, "depth": 2, "axis": 2}


def _model(method: str, classes: int = 1, dims: int = 2, **extra) -> TrainedModel:
    torch.manual_seed(0)
    config = TrainConfig(method=method, dims=dims, extra=extra, **TINY).validate()
    return TrainedModel.new(config, classes)


def test_binary_entropy_by_hand_in_bits():
    h = binary_entropy(np.array([0.0, 1.0, 0.5, 0.25, 0.75]))
    expected = [0.0, 0.0, 1.0, -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))]
    np.testing.assert_allclose(h[:4], expected, atol=1e-6)
    assert h[3] == pytest.approx(h[4]) and h[3] == pytest.approx(0.811278, abs=1e-6)
    assert h.dtype == np.float32


def test_binary_entropy_matches_torch_bernoulli():
    p = np.random.default_rng(0).uniform(1e-4, 1 - 1e-4, (3, 5, 7)).astype(np.float32)
    nats = Bernoulli(probs=torch.from_numpy(p).double()).entropy().numpy()
    np.testing.assert_allclose(binary_entropy(p), nats / math.log(2), atol=1e-5)


def test_each_method_has_its_kinds_the_default_first():
    # SegPL-VI: the entropy of p first, it finds wrong voxels better (RESULTS.md (t))
    assert kinds_for("segpl-vi") == [ENTROPY, MC]
    assert kinds_for("ensemble") == [SPREAD, ENTROPY]
    for name in ("segpl", "supervised", "fixmatch", "mean-teacher", "cct", "cps", "selfloop"):
        assert kinds_for(name) == [ENTROPY], name
        assert default_kind(name) == ENTROPY
    assert default_kind("segpl-vi") == ENTROPY and default_kind("ensemble") == SPREAD
    assert resolve_kind("segpl-vi", None) == ENTROPY and resolve_kind("segpl-vi", MC) == MC
    with pytest.raises(ValueError, match="segpl-vi.*a segpl model has: entropy"):
        resolve_kind("segpl", MC)
    with pytest.raises(ValueError, match="--method ensemble"):
        resolve_kind("segpl-vi", SPREAD)
    with pytest.raises(ValueError, match="unknown uncertainty kind"):
        resolve_kind("segpl", "variance")
    assert layer_name(ENTROPY) == "uncertainty: entropy of p"
    assert layer_name(MC) == "uncertainty: MC std of 1(p>T)"
    assert layer_name(SPREAD) == "uncertainty: ensemble spread"


def test_maps_from_a_hand_made_prediction():
    prob = np.array([[[[0.5, 0.9]]], [[[0.1, 0.5]]]], np.float32)  # (K=2, 1, 1, 2)
    pred = Prediction(np.zeros((1, 1, 2), np.uint8), prob)
    assert kinds_in(pred) == [ENTROPY]
    maps = uncertainty_maps(pred, ENTROPY)
    h09 = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))
    np.testing.assert_allclose(maps.reshape(2, 2), [[1.0, h09], [h09, 1.0]], atol=1e-6)
    np.testing.assert_allclose(uncertainty_volume(pred, ENTROPY).ravel(), [1.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="Monte-Carlo"):
        uncertainty_maps(pred, MC)
    with pytest.raises(ValueError, match="ensemble"):
        uncertainty_maps(pred, SPREAD)
    std = np.full_like(prob, 0.25)
    pred_vi = Prediction(pred.labels, prob, mc_std=std)
    assert kinds_in(pred_vi) == [ENTROPY, MC] and uncertainty_maps(pred_vi, MC) is std


def test_segpl_vi_mc_kind_is_the_prediction_mc_std():
    image, _ = make_toy_volume((24, 20, 6))
    pred = predict_volume(_model("segpl-vi"), image, mc_samples=4)
    assert kinds_in(pred) == [ENTROPY, MC]
    np.testing.assert_array_equal(uncertainty_maps(pred, MC), pred.mc_std)


@pytest.mark.parametrize("dims", [2, 3])
def test_ensemble_spread_is_the_std_of_members_predicted_alone(dims):
    image, _ = make_toy_volume((24, 20, 6))
    ensemble = _model("ensemble", classes=2, dims=dims, members=3)
    pred = predict_volume(ensemble, image)
    config = ensemble.config
    alone = np.stack(
        [
            predict_volume(TrainedModel(member, config, 2), image).probabilities
            for member in ensemble.method.members
        ]
    )  # each member as a model of its own: an independent path to the same numbers
    assert pred.spread is not None and pred.spread.shape == pred.probabilities.shape
    np.testing.assert_allclose(pred.spread, np.std(alone, axis=0), atol=1e-5)
    np.testing.assert_allclose(pred.probabilities, alone.mean(axis=0), atol=1e-5)
    assert pred.spread.max() > 1e-3  # untrained members disagree: the test can fail
    assert kinds_in(pred) == [SPREAD, ENTROPY]


def test_other_methods_predict_no_spread():
    image, _ = make_toy_volume((24, 20, 6))
    pred = predict_volume(_model("segpl"), image)
    assert pred.spread is None and pred.mc_std is None and kinds_in(pred) == [ENTROPY]


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def files(tmp_path):
    image, _ = make_toy_volume((24, 20, 6), classes=1)
    img = write_nifti(image, Volume(image, np.eye(4)), tmp_path / "image.nii.gz")
    models = {}
    for name, extra in (("segpl", {}), ("segpl-vi", {}), ("ensemble", {"members": 2})):
        models[name] = _model(name, **extra).save(tmp_path / f"{name}.pt")
    return tmp_path, img, models


def _predict(files, method, *extra):
    d, img, models = files
    args = ["predict", str(models[method]), str(img), "--mask", str(d / "m.nii.gz")]
    args += ["--prob", str(d / "p.nii.gz"), "--uncertainty", str(d / "u.nii.gz"), *extra]
    return cli.main(args), d


def test_cli_writes_the_entropy_for_a_method_without_its_own(files, capsys):
    code, d = _predict(files, "segpl")
    assert code == 0
    assert "binary entropy" in capsys.readouterr().out
    p, u = read_volume(d / "p.nii.gz").array, read_volume(d / "u.nii.gz").array
    np.testing.assert_allclose(u, binary_entropy(p), atol=1e-5)
    assert u.max() > 0


def test_cli_writes_the_method_own_kind_or_the_one_asked_for(files, capsys):
    code, d = _predict(files, "ensemble")
    assert code == 0 and "members' probabilities" in capsys.readouterr().out
    spread = read_volume(d / "u.nii.gz").array
    code, d = _predict(files, "ensemble", "--uncertainty-kind", "entropy")
    assert code == 0
    p, u = read_volume(d / "p.nii.gz").array, read_volume(d / "u.nii.gz").array
    np.testing.assert_allclose(u, binary_entropy(p), atol=1e-5)
    assert not np.allclose(u, spread)
    code, d = _predict(files, "segpl-vi")  # its default: the entropy, no MC samples drawn
    assert code == 0 and "binary entropy" in capsys.readouterr().out
    p, u = read_volume(d / "p.nii.gz").array, read_volume(d / "u.nii.gz").array
    np.testing.assert_allclose(u, binary_entropy(p), atol=1e-5)
    code, d = _predict(files, "segpl-vi", "--uncertainty-kind", "mc", "--mc-samples", "3")
    assert code == 0 and "1(p > T_k)" in capsys.readouterr().out
    mc = read_volume(d / "u.nii.gz").array
    assert 0 <= mc.min() and mc.max() <= 0.5 and not np.allclose(mc, u)


@pytest.mark.parametrize(
    ("method", "extra", "fragment"),
    [
        ("segpl", ["--uncertainty-kind", "mc"], "needs a learnt threshold (--method segpl-vi)"),
        ("segpl-vi", ["--uncertainty-kind", "spread"], "needs --method ensemble"),
    ],
)
def test_cli_refuses_a_kind_the_model_lacks(files, capsys, method, extra, fragment):
    code, d = _predict(files, method, *extra)
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert not (d / "u.nii.gz").exists() and not (d / "m.nii.gz").exists()


def test_cli_kind_without_an_output_is_refused(files, capsys):
    d, img, models = files
    args = ["predict", str(models["segpl"]), str(img), "--mask", str(d / "m.nii.gz")]
    assert cli.main([*args, "--uncertainty-kind", "entropy"]) == 2
    assert "--uncertainty-kind needs --uncertainty" in capsys.readouterr().err


def test_after_the_safeguard_the_kept_model_own_kind_or_a_warning():
    from argparse import Namespace

    from napari_segpl._cli_support import uncertainty_for_kept

    kept = _model("supervised")
    args = Namespace(uncertainty="u.nii.gz", uncertainty_kind=None)
    assert uncertainty_for_kept(args, kept, "supervised") is None
    line = uncertainty_for_kept(args, kept, "segpl-vi")
    assert line == "note: the safeguard kept supervised: --uncertainty holds its entropy of p"
    assert args.uncertainty == "u.nii.gz"
    args = Namespace(uncertainty="u.nii.gz", uncertainty_kind="mc")
    line = uncertainty_for_kept(args, kept, "segpl-vi")
    assert line.startswith("warning: --uncertainty not written") and args.uncertainty is None
