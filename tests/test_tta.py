"""Test-time augmentation as an uncertainty (issue 25): the transforms and their inverses, the
std against an independent computation, the CLI's ``--uncertainty-kind tta``, the dock's combo
and the AUROC benchmark's column."""

from __future__ import annotations

import math
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import make_toy_volume
from scipy import ndimage

from napari_segpl import cli
from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
from napari_segpl.engine.sampling import Normaliser
from napari_segpl.engine.uncertainty import (
    ENTROPY,
    KINDS,
    MC,
    TTA,
    TTA_SAMPLES,
    TTATransform,
    kinds_for,
    kinds_in,
    layer_name,
    resolve_kind,
    tta_transforms,
    uncertainty_maps,
)
from napari_segpl.volume import Volume, write_nifti

TINY = {"base_channels": 4, "depth": 2, "axis": 2}
SHAPE = (24, 20, 6)  # in-plane 24 x 20: a multiple of 4, so no padding in these tests
FLIPS = [TTATransform(), TTATransform(False, True), TTATransform(True, False),
         TTATransform(True, True)]  # fmt: skip


def _model(method: str = "segpl", classes: int = 2, dims: int = 2, **extra) -> TrainedModel:
    torch.manual_seed(0)
    config = TrainConfig(method=method, dims=dims, extra=extra, **TINY).validate()
    return TrainedModel.new(config, classes)


def _asymmetric(h: int = 24, w: int = 20) -> torch.Tensor:
    """A smooth image with no symmetry: an off-centre blob on a tilted ramp, (2, 1, h, w)."""
    y, x = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    blob = torch.exp(-((y - 0.3 * h) ** 2 + (x - 0.65 * w) ** 2) / 50.0)
    image = blob + 0.03 * y + 0.011 * x
    return torch.stack([image, 2.0 - image])[:, None]


def _scipy_warp(a: np.ndarray, degrees: float, scale: float, inverse: bool) -> np.ndarray:
    """The affine map of ``TTATransform`` written with scipy: output pixel o (row, col) reads
    the input at M (o - c) + c, M = R / scale (rotation by ``degrees`` in (x = col, y = row)),
    or its inverse; linear interpolation, edge values repeated (an independent path)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    m = np.array([[c, s], [-s, c]]) / scale  # R(t) in (x, y) is [[c, -s], [s, c]]
    if inverse:
        m = np.linalg.inv(m)
    centre = (np.array(a.shape[-2:]) - 1) / 2.0
    offset = centre - m @ centre
    return ndimage.affine_transform(a, m, offset=offset, order=1, mode="nearest")


def _by_hand(t: TTATransform, a: np.ndarray, inverse: bool) -> np.ndarray:
    """``t.apply`` (or ``t.invert``) on one (H, W) slice, with numpy and scipy."""
    axes = [ax for ax, on in ((0, t.flip_rows), (1, t.flip_cols)) if on]
    affine = t.degrees != 0 or t.scale != 1
    if not inverse:
        a = _scipy_warp(a, t.degrees, t.scale, False) if affine else a
        return np.flip(a, axes) if axes else a
    a = np.flip(a, axes) if axes else a
    return _scipy_warp(a, t.degrees, t.scale, True) if affine else a


# --- the transforms ---------------------------------------------------------------------------


def test_the_list_is_fixed_by_its_seed_and_leaves_global_random_state_alone():
    model, image = _model(), make_toy_volume(SHAPE)[0]  # seeds torch: before the snapshot
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    first = tta_transforms(8, seed=3)
    assert first == tta_transforms(8, seed=3) and first != tta_transforms(8, seed=4)
    assert first[0].identity and not any(t.identity for t in first[1:])
    assert not any(t.flip_rows or t.flip_cols for t in first)  # no flips: (x) rule 3
    assert all(abs(t.degrees) <= 5 and abs(t.scale - 1) <= 0.05 for t in first)
    assert len({t.degrees for t in first[1:]}) == 7  # each its own map
    predict_volume(model, image, tta_samples=4)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


@pytest.mark.parametrize("t", FLIPS[1:])
def test_flip_then_unflip_is_exact(t):
    x = _asymmetric()
    moved = t.apply(x)
    axes = [d for d, on in ((-2, t.flip_rows), (-1, t.flip_cols)) if on]
    assert torch.equal(moved, torch.flip(x, axes)) and not torch.equal(moved, x)
    assert torch.equal(t.invert(moved), x)


@pytest.mark.parametrize("t", [TTATransform(False, False, 4.0, 1.04),
                               TTATransform(True, False, -5.0, 0.96)])  # fmt: skip
def test_affine_and_its_inverse_match_scipy_and_undo_each_other_inside(t):
    x = _asymmetric()
    moved = t.apply(x)
    for i in range(2):  # the forward map is the one scipy computes independently
        expected = _by_hand(t, x[i, 0].double().numpy(), inverse=False)
        np.testing.assert_allclose(moved[i, 0].numpy(), expected, atol=1e-5)
    assert (moved - x).abs().max() > 0.05  # it does move the image
    back = t.invert(moved)
    inside = (slice(None), slice(None), slice(4, -4), slice(4, -4))
    error = (back - x)[inside].abs().max().item()
    assert error < 0.02 * x.abs().max().item()  # two bilinear resamplings, away from the edge
    assert error < 0.25 * (moved - x)[inside].abs().max().item()  # much nearer than moved


# --- the std in predict_volume ----------------------------------------------------------------


def test_identity_only_gives_zero_std_and_leaves_the_prediction_unchanged():
    image, _ = make_toy_volume(SHAPE)
    model = _model()
    plain = predict_volume(model, image)
    same = predict_volume(model, image, tta=[TTATransform()] * 3)
    assert same.tta_std is not None and same.tta_std.shape == plain.probabilities.shape
    assert np.all(same.tta_std == 0)
    moved = predict_volume(model, image, tta_samples=3)
    assert moved.tta_std.max() > 1e-3  # a real list moves p: the zero above is no accident
    for pred in (same, moved):
        np.testing.assert_array_equal(pred.labels, plain.labels)
        np.testing.assert_array_equal(pred.probabilities, plain.probabilities)
    assert plain.tta_std is None and kinds_in(plain) == [ENTROPY]
    assert kinds_in(moved) == [ENTROPY, TTA]


def test_a_flip_equivariant_model_has_zero_std_under_flips_and_a_ramp_model_does_not():
    image, _ = make_toy_volume(SHAPE)
    model = _model()
    model.method.logits = lambda x: 0.02 * (x[:, :1] - 1).repeat(1, 2, 1, 1)  # pointwise
    pred = predict_volume(model, image, tta=FLIPS)
    assert pred.probabilities.std() > 1e-3 and pred.tta_std.max() < 1e-6
    ramp = torch.linspace(-2, 2, 20)  # depends on the column: not flip-invariant
    model.method.logits = lambda x: (x[:, :1] + ramp).repeat(1, 2, 1, 1)
    assert predict_volume(model, image, tta=FLIPS).tta_std.max() > 0.1


@pytest.mark.parametrize("dims", [2, 3])
def test_std_under_flips_equals_torch_std_of_flipped_volumes_predicted_alone(dims):
    image, _ = make_toy_volume(SHAPE)
    model = _model(dims=dims)
    pred = predict_volume(model, image, tta=FLIPS, batch_size=4)
    probs = []  # each flipped volume predicted whole and flipped back: the same statistics
    for t in FLIPS:
        axes = [ax for ax, on in ((0, t.flip_rows), (1, t.flip_cols)) if on]
        flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        p = predict_volume(model, flipped).probabilities
        probs.append(np.flip(p, [a + 1 for a in axes]) if axes else p)
    expected = torch.std(torch.from_numpy(np.stack(probs)), dim=0, unbiased=False)
    np.testing.assert_allclose(pred.tta_std, expected.numpy(), atol=1e-5)
    assert pred.tta_std.max() > 1e-3
    assert pred.tta_mean is None  # kept only when asked: one more (K, *shape) array
    mean = predict_volume(model, image, tta=FLIPS, batch_size=4, tta_mean=True).tta_mean
    np.testing.assert_allclose(mean, np.mean(probs, axis=0), atol=1e-5)
    assert np.abs(mean - pred.probabilities).max() > 1e-3  # not p itself


def test_std_with_affine_maps_equals_a_computation_by_hand():
    image, _ = make_toy_volume(SHAPE)
    model = _model()
    transforms = tta_transforms(4, seed=1)
    pred = predict_volume(model, image, tta_samples=4, seed=1)
    config = model.config
    normalise = Normaliser.from_config(config)
    slices = np.moveaxis(normalise.apply(image, normalise.statistics(image)), 2, 0)
    model.method.train(False)
    probs = []
    for t in transforms:  # scipy warps and numpy flips of each normalised slice, then back
        moved = np.stack([_by_hand(t, s.astype(np.float64), False) for s in slices])
        with torch.no_grad():
            logits = model.method.logits(torch.from_numpy(moved[:, None]).float())
        p = torch.sigmoid(logits).numpy().astype(np.float64)
        probs.append(np.stack([[_by_hand(t, pc, True) for pc in ps] for ps in p]))
    expected = torch.std(torch.from_numpy(np.stack(probs)), dim=0, unbiased=False).numpy()
    expected = np.moveaxis(expected, 0, -1)  # (n, K, H, W) -> (K, H, W, n), the input's grid
    np.testing.assert_allclose(pred.tta_std, expected, atol=2e-4)
    assert pred.tta_std.max() > 1e-3


def test_tta_is_there_for_every_method_and_the_command_line_default_is_the_methods_own():
    assert resolve_kind("segpl", TTA) == TTA and resolve_kind("ensemble", TTA) == TTA
    assert kinds_for("segpl-vi") == [ENTROPY, MC] and TTA not in kinds_for("segpl")
    assert layer_name(TTA) == "uncertainty: TTA std of p"
    assert KINDS[TTA].description.startswith("TTA std of p over M small affine maps")
    pred = predict_volume(_model("segpl-vi"), make_toy_volume(SHAPE)[0], mc_samples=2,
                          tta_samples=2)  # fmt: skip
    assert kinds_in(pred) == [ENTROPY, MC, TTA] and uncertainty_maps(pred, TTA) is pred.tta_std
    with pytest.raises(ValueError, match="at least 2"):
        predict_volume(_model(), make_toy_volume(SHAPE)[0], tta_samples=1)


# --- the command line, the dock and the benchmark ---------------------------------------------


@pytest.mark.parametrize("classes", [1, 2])
def test_cli_writes_the_tta_std(tmp_path, capsys, classes):
    image, _ = make_toy_volume(SHAPE, classes=classes)
    img = write_nifti(image, Volume(image, np.eye(4)), tmp_path / "image.nii.gz")
    model = _model(classes=classes)
    path = model.save(tmp_path / "m.pt")
    out = tmp_path / "u.nii.gz"
    args = ["predict", str(path), str(img), "--mask", str(tmp_path / "mask.nii.gz"),
            "--uncertainty", str(out), "--uncertainty-kind", "tta"]  # fmt: skip
    assert cli.main([*args, "--tta-samples", "1"]) == 2
    assert "--tta-samples must be at least 2" in capsys.readouterr().err and not out.exists()
    assert cli.main([*args, "--tta-samples", "3"]) == 0
    assert "TTA std of p over M small affine maps" in capsys.readouterr().out
    written = np.asarray(nib.load(out).dataobj)  # 4D for 2 classes
    assert written.shape == (SHAPE if classes == 1 else (*SHAPE, 2))
    expected = predict_volume(TrainedModel.load(path), image, tta_samples=3).tta_std
    expected = expected[0] if classes == 1 else np.moveaxis(expected, 0, -1)
    np.testing.assert_allclose(written, expected, atol=1e-6)
    assert 0 <= written.min() and written.max() <= 0.5 and written.max() > 1e-3


@pytest.mark.gui
def test_the_dock_predicts_tta_when_asked_and_lists_it(make_napari_viewer, qtbot, monkeypatch):
    """Predict with the TTA box at 3: the dock's own worker computes the TTA std (equal to the
    engine's on the same model), the combo lists it and shows it first; at 0 (off) there is
    none. The box starts at TTA_SAMPLES: TTA is the dock's default ((x) rule 4)."""
    from conftest import add_toy_layers

    from napari_segpl.gui import SegPLDock, notify

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer()
    add_toy_layers(viewer, (48, 40, 20), [3, 10])
    image = viewer.layers["toy"].data
    dock = SegPLDock(viewer)
    combo, shown, model = dock.results.kind_combo, [], _model()
    try:
        dock.state.set_model(model)
        dock.state.predicted.connect(shown.append)
        assert dock.results.tta_spin.value() == TTA_SAMPLES  # on by default
        dock.results.tta_spin.setValue(0)
        assert dock.start_prediction()
        qtbot.waitUntil(lambda: not dock.state.busy and len(shown) == 1, timeout=60_000)
        assert shown[0].tta_std is None
        assert [combo.itemData(i) for i in range(combo.count())] == [ENTROPY]
        dock.results.tta_spin.setValue(3)
        assert dock.start_prediction()
        qtbot.waitUntil(lambda: not dock.state.busy and len(shown) == 2, timeout=60_000)
        expected = predict_volume(model, np.asarray(image), axis=2, tta_samples=3).tta_std
        np.testing.assert_allclose(shown[1].tta_std, expected, atol=1e-6)
        assert [combo.itemData(i) for i in range(combo.count())] == [ENTROPY, TTA]
        assert combo.itemText(1) == "TTA std of p" and combo.currentData() == TTA
        layer = viewer.layers[layer_name(TTA)]
        np.testing.assert_array_equal(layer.data, shown[1].tta_std.max(axis=0))
        assert combo.toolTip() == KINDS[TTA].description
    finally:
        dock.shutdown()
    assert not errors


def test_the_auroc_benchmark_measures_tta_beside_the_others():
    from benchmarks.uncertainty_auroc import evaluate, saved_arrays, table

    image, truth = make_toy_volume(SHAPE, classes=1)
    pred = predict_volume(_model(classes=1), image, tta_samples=3)
    arrays = saved_arrays(pred)
    assert set(arrays) == {"probabilities", "tta_std"}
    wrong = pred.labels != truth
    perfect = np.where(wrong, 0.4, 0.01)[None].astype(np.float16)  # marks exactly the errors
    row = {"dataset": "toy", "k": 1, "seed": 0, "method": "segpl", "axis": 2}
    case = SimpleNamespace(chosen=[2], truth=truth)
    record = evaluate(row, pred.labels, {**arrays, "tta_std": perfect}, case)
    assert record["auroc_tta"] == pytest.approx(1.0) and record["confident_tta"] == 0
    assert 0 <= record["auroc_entropy"] <= 1 and "auroc_mc" not in record
    text = table([record])
    assert "AUROC TTA std" in text.splitlines()[0] and "| 1.000 |" in text.splitlines()[2]
    flipless = evaluate(row, pred.labels, {**arrays, "tta_noflip_std": 0.4 - perfect}, case)
    assert flipless["auroc_tta-noflip"] == pytest.approx(0.0)  # exactly the wrong way round
    assert "AUROC TTA no flip" in table([flipless]).splitlines()[0]
    with_mean = saved_arrays(predict_volume(_model(classes=1), image, tta_samples=3, tta_mean=True))
    assert with_mean["tta_mean"].dtype == np.float32


def test_std_pooled_over_two_models_equals_torch_std_of_all_their_maps():
    """(I2), (M2): two groups of 8 maps each, pooled from their means and stds, against
    torch.std over the 16 maps themselves."""
    from napari_segpl.engine.uncertainty import pooled_std

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(8, 2, 5, 6, 7, generator=gen)
    b = torch.rand(8, 2, 5, 6, 7, generator=gen) * 0.3 + 0.6  # another model: other means
    moments = [(g.mean(0).numpy(), g.std(0, unbiased=False).numpy()) for g in (a, b)]
    pooled = pooled_std([m for m, _ in moments], [s for _, s in moments])
    expected = torch.cat([a, b]).std(0, unbiased=False).numpy()
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    within = (moments[0][1] ** 2 + moments[1][1] ** 2) / 2
    assert pooled.dtype == np.float32 and (pooled**2 - within).max() > 0.01  # the means count


def test_the_auroc_benchmark_scores_the_twin_pooled_std_where_both_saved_it():
    from benchmarks.uncertainty_auroc import evaluate, table

    image, truth = make_toy_volume(SHAPE, classes=1)
    pred = predict_volume(_model(classes=1), image, tta_samples=3, tta_mean=True)
    wrong = pred.labels != truth
    row = {"dataset": "toy", "k": 1, "seed": 0, "method": "segpl", "axis": 2}
    case = SimpleNamespace(chosen=[2], truth=truth)
    zero = np.zeros_like(pred.tta_std)[None] if pred.tta_std.ndim == 3 else 0 * pred.tta_std
    own = {"probabilities": pred.probabilities, "tta_std": zero, "tta_mean": pred.probabilities}
    # a twin whose mean p differs by 0.6 exactly on the wrong voxels: the pooled std marks them
    twin_mean = np.where(wrong[None], pred.probabilities + 0.6, pred.probabilities)
    twin = {"tta_std": zero, "tta_mean": twin_mean.astype(np.float32)}
    record = evaluate(row, pred.labels, own, case, twin)
    assert record["auroc_tta-twin"] == pytest.approx(1.0)
    assert "AUROC TTA std with twin" in table([record]).splitlines()[0]
    assert "auroc_tta-twin" not in evaluate(row, pred.labels, own, case)  # no twin, no column
    no_mean = {k: v for k, v in twin.items() if k != "tta_mean"}
    assert "auroc_tta-twin" not in evaluate(row, pred.labels, own, case, no_mean)


def test_every_uncertainty_kind_is_scored_on_the_same_voxels(monkeypatch):
    """Above SAMPLE band voxels the AUROC subsamples: one draw for every kind, so two kinds
    holding the same map score the same (each kind drew its own before)."""
    import benchmarks.uncertainty_auroc as bench

    image, truth = make_toy_volume(SHAPE, classes=1)
    pred = predict_volume(_model(classes=1), image, tta_samples=3)
    arrays = bench.saved_arrays(pred)
    row = {"dataset": "toy", "k": 1, "seed": 0, "method": "segpl", "axis": 2}
    case = SimpleNamespace(chosen=[2], truth=truth)
    monkeypatch.setattr(bench, "SAMPLE", 200)
    same = {**arrays, "tta_noflip_std": arrays["tta_std"]}
    record = bench.evaluate(row, pred.labels, same, case)
    assert record["band_voxels"] > 200
    assert record["auroc_tta"] == record["auroc_tta-noflip"]
