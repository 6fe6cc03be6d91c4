"""`segpl train` says what the safeguard kept, scores held-out slices, and stays consistent."""

from __future__ import annotations

import pytest
import torch
from test_cli import CT, CT_SPARSE, FAST

from napari_segpl.cli import main
from napari_segpl.engine import TrainedModel
from napari_segpl.engine import safeguard as safeguard_module


def _train(tmp_path, *extra):
    args = ["train", str(CT), str(CT_SPARSE), "--model", str(tmp_path / "m.pt"), *FAST]
    return main([*args, "--normalisation", "ct", "--dims", "2", *extra])


def test_train_prints_what_the_safeguard_kept_and_held_out_dice(tmp_path, capsys):
    assert _train(tmp_path, "--holdout-slices", "20") == 0
    out = capsys.readouterr().out
    assert "labelled slices [13, 26]" in out  # the held-out slice did not train
    assert "safeguard kept " in out
    assert "held-out Dice, segpl: " in out and "held-out Dice, supervised: " in out
    kept = out.split("safeguard kept ")[1].split(":")[0]
    assert TrainedModel.load(tmp_path / "m.pt").config.method == kept


def test_the_safeguard_runs_by_default(tmp_path, capsys):
    assert _train(tmp_path) == 0
    out = capsys.readouterr().out
    assert "safeguard kept " in out and ("none below 1/2" in out or "class lost" in out)
    assert TrainedModel.load(tmp_path / "m.pt").config.method in ("segpl", "supervised")
    assert _train(tmp_path, "--method", "supervised") == 0  # nothing to check
    assert "safeguard kept" not in capsys.readouterr().out


def test_without_it_no_twin_trains_and_held_out_slices_are_still_scored(tmp_path, capsys):
    assert _train(tmp_path, "--no-safeguard", "--holdout-slices", "26") == 0
    out = capsys.readouterr().out
    assert "safeguard kept" not in out and "labelled slices [13, 20]" in out
    assert "held-out Dice at step 4 (training): " in out
    assert TrainedModel.load(tmp_path / "m.pt").config.method == "segpl"


def test_a_kept_supervised_model_is_saved_with_the_pooled_uncertainty(
    tmp_path, capsys, monkeypatch
):
    """When the check keeps the twin, the saved model and the mask are the twin's; the default
    uncertainty is still the TTA std with twin (the other model is SegPL-VI: RESULTS.md (M2)),
    an explicit tta is the twin's own TTA std (a note line says so), and an explicit kind the
    twin lacks (SegPL-VI's MC std) is not written beside its mask."""
    monkeypatch.setattr(safeguard_module, "decide", lambda method, *a, **k: ("supervised", "x"))
    mask, unc = tmp_path / "mask.nii.gz", tmp_path / "unc.nii.gz"
    outputs = ["--method", "segpl-vi", "--mask", str(mask), "--uncertainty", str(unc)]
    assert _train(tmp_path, "--safeguard", *outputs) == 0
    captured = capsys.readouterr()
    assert "safeguard kept supervised: x" in captured.out
    assert "pooled over a safeguarded run's two models" in captured.out
    assert "the safeguard kept supervised:" not in captured.err
    model = TrainedModel.load(tmp_path / "m.pt")
    assert model.config.method == "supervised" and mask.exists() and unc.exists()
    assert all(torch.isfinite(p).all() for p in model.method.model.parameters())
    unc.unlink()
    assert _train(tmp_path, "--safeguard", *outputs, "--uncertainty-kind", "tta") == 0
    captured = capsys.readouterr()
    assert "the safeguard kept supervised: --uncertainty holds its TTA std" in captured.err
    assert unc.exists()
    unc.unlink()
    assert _train(tmp_path, "--safeguard", *outputs, "--uncertainty-kind", "mc") == 0
    assert "--uncertainty not written" in capsys.readouterr().err and not unc.exists()


def test_train_writes_the_tta_std_with_twin_by_default(tmp_path, capsys, monkeypatch):
    """(I2): with the safeguard keeping SegPL, --uncertainty holds the std over both models'
    TTA maps (as the engine's predict_with_twin gives it for the two models the run trained);
    without it, or for segpl predict, tta-twin is refused before any work, with the reason."""
    import nibabel as nib
    import numpy as np

    from napari_segpl._cli_support import channels_last
    from napari_segpl.engine import uncertainty

    models = []
    real = uncertainty.predict_with_twin

    def spy(model, twin, image, **kwargs):
        models.append((model, twin))
        return real(model, twin, image, **kwargs)

    monkeypatch.setattr("napari_segpl._cli_support.predict_with_twin", spy)
    monkeypatch.setattr(safeguard_module, "decide", lambda method, *a, **k: (method, "x"))
    unc = tmp_path / "unc.nii.gz"
    assert _train(tmp_path, "--uncertainty", str(unc), "--tta-samples", "3") == 0
    out = capsys.readouterr().out
    assert "pooled over a safeguarded run's two models" in out and unc.exists()
    ((model, twin),) = models
    assert (model.config.method, twin.config.method) == ("segpl", "supervised")
    from napari_segpl.volume import read_volume

    image = read_volume(CT).array
    expected = real(model, twin, image, tta_samples=3).tta_twin_std
    written = np.asarray(nib.load(unc).dataobj)
    np.testing.assert_allclose(written, channels_last(expected), atol=1e-5)
    args = ["--no-safeguard", "--uncertainty", str(unc), "--uncertainty-kind", "tta-twin"]
    assert _train(tmp_path, *args) == 2
    assert "needs the safeguard's two models" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # not a choice of segpl predict: no twin in a model file
        main(["predict", str(tmp_path / "m.pt"), str(CT), "--uncertainty", str(unc),
              "--uncertainty-kind", "tta-twin"])  # fmt: skip
    assert "invalid choice: 'tta-twin'" in capsys.readouterr().err
