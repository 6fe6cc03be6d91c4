"""A mask alone after the safeguard: the check's labels of the kept model are written instead of
predicting the whole volume again, and they are the voxels a fresh prediction gives."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_toy_volume, threshold_rule
from test_cli import CT, CT_SPARSE, FAST, lose_class_2

import napari_segpl._cli_support as support
import napari_segpl.cli as cli
import napari_segpl.engine as engine
from napari_segpl.engine import (
    TrainConfig,
    TrainedModel,
    labelled_slices,
    painted_slices,
    predict_volume,
    prepare_data,
    train,
)
from napari_segpl.engine import safeguard as safeguard_module
from napari_segpl.engine.safeguard import GuardedTrainer
from napari_segpl.volume import read_volume

SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "ratio": 2, "steps": 3, "preview_every": 0}


@pytest.mark.parametrize("dims", [2, 3])
def test_labels_do_not_depend_on_batch_size_or_probabilities(dims, monkeypatch):
    """The claim the reuse rests on: the check predicts with the default batch and no
    probabilities, a user may ask --batch-slices N; the labels are the same voxels."""
    threshold_rule(monkeypatch)  # a 3-step model's fitted decision: all background
    image, labels = make_toy_volume((40, 36, 19))
    cfg = TrainConfig(method="segpl", dims=dims, **SMALL)
    model = train(cfg, prepare_data(image, labels, cfg, [4, 9, 14]))
    ref = predict_volume(model, image, device="cpu").labels
    assert 0 < (ref > 0).mean() < 1  # not a constant mask, which any batch would reproduce
    for batch in (1, 3, 8, 19, 32):
        for prob in (True, False):
            got = predict_volume(model, image, batch_size=batch, device="cpu", probabilities=prob)
            np.testing.assert_array_equal(got.labels, ref, strict=True)


def _count_predictions(monkeypatch) -> list[int]:
    """Every whole-volume prediction (the check's and the CLI's), counted."""
    calls: list[int] = []

    def counted(*args, **kwargs):
        calls.append(1)
        return predict_volume(*args, **kwargs)

    monkeypatch.setattr(safeguard_module, "predict_volume", counted)
    monkeypatch.setattr(engine, "predict_volume", counted)  # what write_outputs imports
    return calls


def _paint() -> dict[int, np.ndarray]:
    """The sample's painted slices along axis 2, as the CLI keeps the parts touching them."""
    sparse = read_volume(CT_SPARSE).array
    return painted_slices(sparse, labelled_slices(sparse, 2), 2)


def _train(
    tmp_path, name: str, *extra: str, retry: bool = False
) -> tuple[np.ndarray, TrainedModel, str]:
    """A CLI run writing a mask; without the retry unless asked (a 4-step model's mask
    contradicts the paint, and the retry would train it twice)."""
    model_path, mask = tmp_path / f"{name}.pt", tmp_path / f"{name}.nii.gz"
    args = ["train", str(CT), str(CT_SPARSE), "--model", str(model_path), "--mask", str(mask)]
    args += [*FAST, "--normalisation", "ct", "--dims", "2", "--retry" if retry else "--no-retry"]
    assert cli.main([*args, *extra]) == 0
    return read_volume(mask).array, TrainedModel.load(model_path), name


def test_default_mask_path_predicts_once_less_and_writes_the_same_voxels(
    tmp_path, monkeypatch, capsys
):
    threshold_rule(monkeypatch)  # a 4-step model's fitted decision: all background
    calls = _count_predictions(monkeypatch)
    mask, model, _ = _train(tmp_path, "reused")
    reused_calls = len(calls)
    assert "(reused)" in capsys.readouterr().out
    # the same run without the reuse (as before): the check's two, then the mask's own
    monkeypatch.setattr(support, "mask_only", lambda args: False)
    monkeypatch.setattr(cli, "mask_only", lambda args: False)
    calls.clear()
    again, _, _ = _train(tmp_path, "predicted")
    assert "(reused)" not in capsys.readouterr().out
    assert (reused_calls, len(calls)) == (2, 3)
    np.testing.assert_array_equal(mask, again)
    fresh = predict_volume(model, read_volume(CT).array, paint=_paint()).labels
    np.testing.assert_array_equal(mask, fresh)
    assert 0 < (fresh > 0).mean() < 1


def test_without_painted_parts_the_mask_keeps_every_part(tmp_path, monkeypatch, capsys):
    """--no-painted-parts: the check and the mask both keep the raw labels (still reused)."""
    calls = _count_predictions(monkeypatch)
    mask, model, _ = _train(tmp_path, "raw", "--no-painted-parts")
    out = capsys.readouterr().out
    assert "(reused)" in out and "touch" not in out and len(calls) == 2
    np.testing.assert_array_equal(mask, predict_volume(model, read_volume(CT).array).labels)


def test_a_kept_supervised_twin_writes_its_own_labels(tmp_path, monkeypatch, capsys):
    """The labels kept are the kept model's, not the semi-supervised run's (the other's are
    dropped); 3D, SegPL-VI."""
    monkeypatch.setattr(safeguard_module, "decide", lambda method, *a, **k: ("supervised", "x"))
    calls = _count_predictions(monkeypatch)
    mask, model, _ = _train(tmp_path, "twin", "--method", "segpl-vi", "--dims", "3")
    assert "(reused)" in capsys.readouterr().out and len(calls) == 2
    assert model.config.method == "supervised" and model.config.dims == 3
    fresh = predict_volume(model, read_volume(CT).array, paint=_paint()).labels
    np.testing.assert_array_equal(mask, fresh)


def test_other_outputs_still_predict(tmp_path, monkeypatch, capsys):
    """--prob needs probabilities the check never kept: the volume is predicted again."""
    calls = _count_predictions(monkeypatch)
    _train(tmp_path, "prob", "--prob", str(tmp_path / "p.nii.gz"))
    assert "(reused)" not in capsys.readouterr().out and len(calls) == 3


def test_labels_are_kept_only_when_asked_and_only_for_their_prediction():
    image, labels = make_toy_volume((40, 36, 19))
    cfg = TrainConfig(method="segpl", dims=2, **SMALL)
    data = prepare_data(image, labels, cfg, [4, 9, 14])
    quiet = GuardedTrainer(cfg, data, image)  # the dock's: nothing whole outlives the check
    list(quiet.run())
    assert quiet.verdict is not None and quiet.kept_labels is None
    guarded = GuardedTrainer(cfg, data, image, keep_labels=True)
    list(guarded.run())
    kept = guarded.kept_labels
    assert kept is not None and kept.model is guarded.model and kept.labels.dtype == np.uint8
    fresh = predict_volume(guarded.model, image, paint=data.paint())
    np.testing.assert_array_equal(kept.labels, fresh.labels)
    assert kept.removed == fresh.removed is not None
    assert kept.fits(guarded.model, None, "cpu", True) and kept.fits(guarded.model, 2, "auto", True)
    assert not kept.fits(guarded.model, None, "cpu", False)  # the parts not touching kept
    assert not kept.fits(guarded.model, 0, "cpu", True)  # another axis
    assert not kept.fits(quiet.model, None, "cpu", True)  # another model


def test_the_reused_labels_carry_the_missing_class_warning(tmp_path, monkeypatch, capsys):
    """The safeguard's labels, written without a second prediction, still say when a painted
    class is nowhere in them (the network's labels here made to lose class 2)."""
    threshold_rule(monkeypatch)  # so that class 1 is there
    lose_class_2(monkeypatch)
    mask, _, _ = _train(tmp_path, "lost")
    captured = capsys.readouterr()
    assert "(reused)" in captured.out and not (mask == 2).any()
    assert "warning: class 2 painted but nowhere in the mask" in captured.err


@pytest.mark.parametrize("reuse", [True, False])
def test_without_painted_parts_a_missing_class_is_still_named(tmp_path, monkeypatch, capsys, reuse):
    """--no-painted-parts keeps every part, but a painted class missing from the mask is
    missing all the same: the warning comes, from the reused labels or from a new prediction
    (--prob asks for one)."""
    lose_class_2(monkeypatch)
    extra = [] if reuse else ["--prob", str(tmp_path / "p.nii.gz")]
    mask, _, _ = _train(tmp_path, "lost", "--no-painted-parts", *extra)
    captured = capsys.readouterr()
    assert ("(reused)" in captured.out) is reuse and not (mask == 2).any()
    assert "touch" not in captured.out  # no part was removed
    assert "warning: class 2 painted but nowhere in the mask" in captured.err


def test_a_retried_run_writes_the_kept_run_s_checked_labels(tmp_path, monkeypatch, capsys):
    """With the retry (class 2 lost by every network here, so both runs contradict the paint
    and the first is kept): each run's check predicts twice, the mask none more."""
    threshold_rule(monkeypatch)
    lose_class_2(monkeypatch)
    calls = _count_predictions(monkeypatch)
    mask, model, _ = _train(tmp_path, "retried", retry=True)
    captured = capsys.readouterr()
    assert "Training once more at seed 1" in captured.out  # --quiet: the warning on stdout
    assert "retry: kept the run at seed 0" in captured.out
    assert "(reused)" in captured.out and len(calls) == 4 and model.config.seed == 0
    fresh = predict_volume(model, read_volume(CT).array, paint=_paint()).labels
    np.testing.assert_array_equal(mask, fresh)
