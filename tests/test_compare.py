"""segpl compare: the table, calibration, the robustness curves, held-out slices, the files."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import make_toy_volume

from napari_segpl import compare_cli
from napari_segpl.engine import TrainConfig, TrainedModel, robustness
from napari_segpl.engine import compare as compare_module
from napari_segpl.engine.inference import Prediction
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.metrics import calibration_bins, expected_calibration_error

SHAPE = (32, 28, 12)
PAINTED = [1, 3, 5, 8, 10]
HOLDOUT = [3, 8]


def _config(**values) -> TrainConfig:
    base = {"dims": 2, "steps": 8, "base_channels": 4, "depth": 2, "device": "cpu"}
    return TrainConfig.from_preset("ct", normalisation="zscore", **{**base, **values})


@pytest.fixture(scope="module")
def toy():
    return make_toy_volume(SHAPE)


@pytest.fixture(scope="module")
def result(toy):
    """One compare shared by the tests below: supervised and SegPL, 8 steps each."""
    image, labels = toy
    seen = []
    real = compare_module.Trainer

    class Spy(real):  # records the data every run trains on
        def __init__(self, config, data):
            seen.append((config.method, data))
            super().__init__(config, data)

    compare_module.Trainer = Spy
    calls = []
    try:
        # parts off: the robustness curves start from the network's own masks
        out = compare_module.compare(
            image, labels, _config(), ["supervised", "segpl"], HOLDOUT, labelled=PAINTED,
            spacing=(0.8, 0.8, 2.0), progress=lambda *a: calls.append(a), parts=False,
        )  # fmt: skip
    finally:
        compare_module.Trainer = real
    return out, seen, calls


def test_table_has_a_row_per_method_with_finite_numbers(result):
    out, _, calls = result
    rows = out.summary()
    assert [r["method"] for r in rows] == ["supervised", "segpl"]
    for r in rows:
        numbers = [*r["iou"], *r["dice"], *r["hd95"], r["brier"], r["ece"]]
        numbers += [r["seconds_per_step"], r["cost_ratio"], *r["ood"], *r["adversarial"]]
        assert all(math.isfinite(v) for v in numbers), r
        assert 0 <= r["ece"] <= 1 and 0 <= r["brier"] <= 1 and r["params"] > 0
    assert rows[0]["cost_ratio"] == pytest.approx(1.0)  # supervised is its own reference
    assert {(m, s) for m, s, _, _ in calls} == {("supervised", 0), ("segpl", 0)}
    assert all(total == 8 for *_, total in calls)
    json.dumps(out.to_json(), allow_nan=False)  # plain, NaN-free JSON


def test_heldout_slices_are_never_trained_on(result, toy):
    _, seen, _ = result
    assert [m for m, _ in seen] == ["supervised", "segpl"]
    for _, data in seen:  # axis 2 is moved first in TrainingData
        assert data.labelled == [1, 5, 10]
        assert not data.labels[HOLDOUT].any()  # their labels zeroed before preparation
    # and the scores are of the held-out slices: the truth there is not empty
    assert toy[1][..., HOLDOUT].any()


def test_ood_at_gamma_zero_and_fgsm_at_zero_equal_the_clean_score(result):
    out, _, _ = result
    assert out.gammas[0] == 0.0 and out.epsilons[0] == 0.0
    for run in out.runs:  # the table's IoU comes from predict_volume, the curves their own way
        assert run.ood[0] == pytest.approx(run.mean_iou, abs=1e-12)
        assert run.adversarial[0] == pytest.approx(run.mean_iou, abs=1e-12)


def test_ece_and_calibration_bins_by_hand():
    # bins of 0.25: p = 0.1, 0.2 | 0.3 | (none) | 0.8, 0.9, 1.0 (1.0 in the last bin)
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 1.0])
    y = np.array([0, 1, 0, 1, 1, 0])
    count, mean_p, freq = calibration_bins(p, y, bins=4)
    np.testing.assert_array_equal(count, [2, 1, 0, 3])
    np.testing.assert_allclose(mean_p[[0, 1, 3]], [0.15, 0.3, 0.9])
    np.testing.assert_allclose(freq[[0, 1, 3]], [0.5, 0.0, 2 / 3])
    assert math.isnan(mean_p[2])
    # (2 |0.5 - 0.15| + 1 |0 - 0.3| + 3 |2/3 - 0.9|) / 6
    expected = (2 * 0.35 + 0.3 + 3 * (0.9 - 2 / 3)) / 6
    assert expected_calibration_error(p, y, bins=4) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0, 1])) == 0.0


def _trained(toy, dims=2):
    from napari_segpl.engine import prepare_data, train

    image, labels = toy
    config = _config(steps=4, dims=dims)
    return train(config, prepare_data(image, labels, config, PAINTED))


@pytest.mark.parametrize("dims", [2, 3])
def test_fgsm_moves_the_image_by_epsilon_and_raises_the_loss(toy, dims):
    toy = toy[0][:30, :26], toy[1][:30, :26]  # padded to 32 x 28 for the network
    model = _trained(toy, dims)
    volume = robustness.normalised_volume(model, toy[0])
    x = torch.from_numpy(robustness.network_input(volume, HOLDOUT, model))
    truth = np.moveaxis(toy[1][..., HOLDOUT], 2, 0)
    target, loss_mask, valid = robustness._target_and_masks(model, truth, x.shape)
    eps = 0.05
    params = list(model.method.parameters())
    weights = [p.detach().clone() for p in params]
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    x_adv, clean, adv = robustness.fgsm(model, x, target, loss_mask, valid, eps)
    delta = (x_adv - x).abs()
    assert float(delta.max()) == pytest.approx(eps, rel=1e-5)  # float32 rounding
    padding = valid.expand_as(delta) == 0
    assert padding.any() and float(delta[padding].abs().sum()) == 0.0  # padding not moved
    assert adv > clean
    for p, w, g in zip(params, weights, grads, strict=True):  # the weights get no gradient
        assert torch.equal(p, w)
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)

    # the step's direction: where the loss is steepest, a central difference of the loss
    # itself (no autograd) agrees in sign with the move FGSM made
    def loss_at(v: torch.Tensor) -> float:
        with torch.no_grad():
            logits = model.method.logits(v)
            return float(segmentation_loss(logits, target, model.config.loss, loss_mask))

    step = (x_adv - x).flatten()
    assert loss_at(x) == pytest.approx(clean, rel=1e-6)
    x_req = x.detach().clone().requires_grad_(True)
    slope = torch.autograd.grad(
        segmentation_loss(model.method.logits(x_req), target, model.config.loss, loss_mask), x_req
    )[0].flatten()
    agree = 0
    for i in torch.topk(slope.abs(), 20).indices.tolist():
        h = torch.zeros_like(x).flatten()
        h[i] = 0.05
        h = h.view_as(x)
        finite = loss_at(x + h) - loss_at(x - h)
        agree += (finite > 0) == (float(step[i]) > 0)
    assert agree >= 19  # a float32 difference of one voxel may tie once; chance: 2e-5


def test_score_reads_calibration_on_the_held_out_slices_along_the_axis(toy):
    """A prediction made by hand (p = (s + 1) / 13 on slice s, class c scaled by c / K):
    Brier and ECE recomputed slice by slice with numpy equal what ``score`` reports."""
    image, truth = toy
    model = _trained(toy)
    k, axis = model.num_classes, model.config.axis
    assert axis == 2 and not model.config.nested and k == int(truth.max())
    prob = np.zeros((k, *truth.shape), np.float32)
    for c in range(k):
        for s in range(truth.shape[2]):
            prob[c, :, :, s] = (s + 1) / 13 * (c + 1) / k
    pred = Prediction((prob > 0.5).argmax(0).astype(np.uint8), prob)
    got = compare_module.score(
        model, image, truth, HOLDOUT, gammas=(0.0,), epsilons=(0.0,), surface=False,
        prediction=pred,
    )  # fmt: skip
    p = np.stack([prob[c, :, :, s] for s in HOLDOUT for c in range(k)])
    y = np.stack([(truth[:, :, s] == c + 1) for s in HOLDOUT for c in range(k)])
    assert got["brier"] == pytest.approx(float(np.mean((p - y) ** 2)), rel=1e-6)
    assert got["ece"] == pytest.approx(expected_calibration_error(p, y), rel=1e-6)
    # a slice off along the axis would read other probabilities and other truth
    off = np.stack([prob[c, :, :, s + 1] for s in HOLDOUT for c in range(k)])
    assert got["brier"] != pytest.approx(float(np.mean((off - y) ** 2)), rel=1e-3)


def test_ood_x_prime_is_a_per_slice_contrast_change_plus_noise():
    volume = np.random.default_rng(2).normal(size=(3, 40, 50)).astype(np.float32) * 3 + 1
    m = volume.mean(axis=(1, 2), keepdims=True)
    scaled = robustness.ood_volume(volume, 1.0, seed=4, noise=0.0)  # contrast alone
    ratio = (scaled - m) / (volume - m)
    for s in range(3):  # one factor per slice, around the slice's own mean
        assert np.ptp(ratio[s]) < 1e-3 and 0.5 <= ratio[s].mean() <= 1.5
    assert np.ptp(ratio.mean(axis=(1, 2))) > 1e-3  # drawn per slice
    noisy = robustness.ood_volume(volume, 1.0, seed=4, contrast=(1.0, 1.0))  # noise alone
    delta = noisy - volume
    assert abs(delta.mean()) < 0.05 and delta.std() == pytest.approx(robustness.NOISE, rel=0.05)


def test_ood_mix_is_x_at_zero_and_x_prime_at_one():
    volume = np.random.default_rng(1).normal(size=(4, 6, 5)).astype(np.float32)
    np.testing.assert_array_equal(robustness.ood_volume(volume, 0.0), volume)
    one, half = robustness.ood_volume(volume, 1.0), robustness.ood_volume(volume, 0.5)
    np.testing.assert_allclose(half, 0.5 * one + 0.5 * volume, atol=1e-6)
    assert not np.allclose(one, volume)


def test_hd95_is_monai_with_the_spacing():
    truth = np.zeros((2, 20, 20), np.uint8)
    truth[:, 5:10, 5:10] = 1
    pred = np.zeros_like(truth)
    pred[0, 6:12, 5:10] = 1  # two rows further, rows 2 mm apart: 4 mm
    diagonal = np.hypot(20 * 2.0, 20 * 1.0)  # a 20 x 20 slice, rows 2 mm and columns 1 mm apart
    means, counts = compare_module.hd95(pred, truth, 1, (2.0, 1.0))
    assert counts == [2] and means[0] == pytest.approx((4.0 + diagonal) / 2)  # slice 1 missed
    pred[1, 5:10, 5:10] = 1  # slice 1 now exact (0 mm): the mean over both slices is 2 mm
    means, counts = compare_module.hd95(pred, truth, 1, (2.0, 1.0))
    assert counts == [1 + 1] and means[0] == pytest.approx(2.0)
    # a structure invented on a slice without it costs the diagonal too
    truth3, pred3 = np.concatenate([truth, truth[:1] * 0]), np.concatenate([pred, pred[:1]])
    means, counts = compare_module.hd95(pred3, truth3, 1, (2.0, 1.0))
    assert counts == [3] and means[0] == pytest.approx((4.0 + 0.0 + diagonal) / 3)
    assert compare_module.hd95(pred3 * 0, truth3 * 0, 1, (2.0, 1.0)) == (
        [pytest.approx(np.nan, nan_ok=True)],
        [0],
    )


def _nifti(path, array):
    nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))
    return str(path)


def test_command_writes_its_files_whole_and_refuses_bad_requests(tmp_path, toy, capsys):
    image, labels = toy
    sparse = np.zeros_like(labels)
    sparse[..., PAINTED] = labels[..., PAINTED]
    img = _nifti(tmp_path / "img.nii.gz", image.astype(np.float32))
    lab = _nifti(tmp_path / "lab.nii.gz", sparse)
    out = tmp_path / "out"
    common = [img, lab, "--steps", "4", "--channels", "4", "--depth", "2", "--dims", "2",
              "--device", "cpu", "--preset", "ct", "--set", "normalisation=zscore",
              "--quiet"]  # fmt: skip
    assert compare_cli.run([*common, "--methods", "supervised,mean-teacher",
                            "--holdout-slices", "3,8", "--out", str(out)]) == 0  # fmt: skip
    names = {"table.md", "table.csv", "results.json", "ood.png", "adversarial.png",
             "reliability.png"}  # fmt: skip
    assert {p.name for p in out.iterdir()} == names | {"runs"}  # nothing half-written left
    assert {p.name for p in (out / "runs").iterdir()} == {"supervised-s0.json",
                                                          "mean-teacher-s0.json"}  # fmt: skip
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| supervised |" in table and "| mean-teacher |" in table
    assert "HD95 1 (mm)" in table  # a file has a spacing: mm (a dock layer may not)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in results["summary"]] == ["supervised", "mean-teacher"]
    assert results["hd95_unit"] == "mm"
    for png in ("ood.png", "adversarial.png", "reliability.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    err = capsys.readouterr().err
    assert "training supervised (seed 0)" in err and "training mean-teacher (seed 0)" in err

    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for args, message in [
        (["--methods", "supervised,nope", "--holdout-slices", "3"], "unknown method nope"),
        (["--methods", "supervised", "--holdout-slices", ""], "lists no slice"),
        (["--methods", "supervised", "--holdout-slices", "4"], "not labelled slices"),
    ]:
        assert compare_cli.run([*common, *args, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    target.write_text("old")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(compare_cli.os, "replace", fail)
    with pytest.raises(OSError):
        compare_cli.write_atomic(target, b"new")
    assert target.read_text(encoding="utf-8") == "old" and [p.name for p in tmp_path.iterdir()] == [
        "table.md"
    ]


def test_parameter_count_is_every_trained_network(toy):
    model = _trained(toy)
    cps = TrainedModel.new(_config(method="cps"), 2)
    assert sum(p.numel() for p in cps.method.parameters()) == 2 * sum(
        p.numel() for p in model.method.parameters()
    )


def test_segpl_compare_is_a_subcommand_of_segpl(tmp_path, capsys):
    from napari_segpl.cli import main

    args = ["compare", "i.nii", "l.nii", "--methods", "segpl", "--holdout-slices", "3"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "segpl compare: error" in capsys.readouterr().err


def _quick(toy, methods, **hooks):
    image, labels = toy
    return compare_module.compare(
        image, labels, _config(steps=4), methods, HOLDOUT, labelled=PAINTED, gammas=(0.0,),
        epsilons=(0.0,), surface=False, **hooks,
    )  # fmt: skip


def test_stop_after_the_first_run_keeps_it_and_its_files_are_whole(toy, tmp_path):
    """``on_run`` after every scored run, ``should_stop`` between steps: the run under way is
    dropped, the finished one is the result, and the CLI's files of it are whole."""
    done, steps = [], []

    def progress(method, seed, step, total):
        steps.append((method, step))

    out = _quick(toy, ["supervised", "segpl", "cps"], progress=progress, on_run=done.append,
                 should_stop=lambda: bool(done) and steps[-1][0] == "segpl")  # fmt: skip
    assert steps == [*(("supervised", s) for s in range(1, 5)), ("segpl", 1)]
    assert out.stopped and out.methods == ["supervised"] and len(out.runs) == 1
    assert out.runs[0].cost_ratio == pytest.approx(1.0) and not out.reference_trained
    (first,) = done
    assert (first.method, first.seed, first.run, first.runs) == ("supervised", 0, 1, 3)
    assert first.labels.shape == toy[0].shape and first.result.runs[0].dice == out.runs[0].dice
    assert first.model.steps_done == 4
    for name, data in compare_cli.result_files(out, "test").items():
        compare_cli.write_atomic(tmp_path / name, data)
    data = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert data["stopped"] is True and [r["method"] for r in data["summary"]] == ["supervised"]
    assert "Stopped before every run finished" in (tmp_path / "table.md").read_text(
        encoding="utf-8"
    )
    assert (tmp_path / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    # a whole compare says nothing of stopping
    assert "stopped" not in _quick(toy, ["supervised"]).to_json()


def test_stop_during_a_runs_prediction_drops_it_between_batches(toy, monkeypatch):
    """The whole-volume prediction of a finished run takes minutes on a big scan: a Stop then
    ends it at the next batch and the run is dropped, as one stopped while training."""
    real, batches, predicting = compare_module.predict_volume, [], []

    def watched(*args, progress=None, **kwargs):
        predicting.append(True)

        def hook(done: int, total: int) -> None:
            batches.append(done)
            progress(done, total)

        return real(*args, progress=hook, **kwargs, batch_size=4)

    monkeypatch.setattr(compare_module, "predict_volume", watched)
    done = []
    out = _quick(toy, ["supervised", "segpl"], on_run=done.append,
                 should_stop=lambda: bool(predicting))  # fmt: skip
    assert len(batches) == 1  # 12 slices in batches of 4: ended after the first
    assert out.stopped and out.runs == [] and done == []


def test_stop_while_timing_supervised_leaves_the_ratio_out(toy):
    seen = []
    out = _quick(toy, ["segpl"], progress=lambda m, *a: seen.append(m),
                 should_stop=lambda: seen[-1:] == ["supervised"])  # fmt: skip
    assert seen.count("supervised") == 1 and [r.method for r in out.runs] == ["segpl"]
    assert (
        out.stopped and out.runs[0].cost_ratio is None and out.supervised_seconds_per_step is None
    )
    assert not out.reference_trained
