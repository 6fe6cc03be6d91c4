"""The `segpl` command end to end on the CT sample shipped in resources/, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import set_model_labels, threshold_rule

from napari_segpl.cli import main
from napari_segpl.engine import (
    TrainConfig,
    keep_painted_parts,
    labelled_slices,
    painted_slices,
)
from napari_segpl.engine.config import PRESETS

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
CT = RESOURCES / "lungs_ct_image.nii.gz"
CT_SPARSE = RESOURCES / "lungs_ct_label_sparse.nii.gz"
CT_FULL = RESOURCES / "lungs_ct_label_full.nii.gz"
FAST = ["--steps", "4", "--patch", "64", "--channels", "4", "--ratio", "1", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-step model without a fitted decision (``threshold_rule``), so its mask holds both
    classes for the tests of warnings and parts."""
    out = tmp_path_factory.mktemp("cli")
    args = ["train", str(CT), str(CT_SPARSE), "--method", "segpl-vi", "--model"]
    args += [str(out / "m.pt"), "--mask", str(out / "mask.nii.gz")]
    args += ["--prob", str(out / "prob.nii.gz"), "--uncertainty", str(out / "unc.nii.gz")]
    args += ["--mc-samples", "3", "--normalisation", "ct", "--ct-window", "-600", "1500", *FAST]
    with pytest.MonkeyPatch.context() as patch:
        threshold_rule(patch)
        assert main(args) == 0
    return out


def test_train_writes_model_and_masks_on_the_source_grid(trained):
    source = nib.load(CT)
    for name in ("mask", "prob", "unc"):
        img = nib.load(trained / f"{name}.nii.gz")
        assert img.shape[:3] == source.shape
        np.testing.assert_allclose(img.affine, source.affine)
        assert int(img.header["sform_code"]) == int(source.header["sform_code"])
        assert int(img.header["qform_code"]) == int(source.header["qform_code"])
    assert nib.load(trained / "prob.nii.gz").shape == (*source.shape, 2)  # lungs: 2 classes
    mask = np.asarray(nib.load(trained / "mask.nii.gz").dataobj)
    assert set(np.unique(mask)) <= {0, 1, 2}


def test_predict_and_evaluate(trained, capsys):
    mask = trained / "again.nii.gz"
    assert main(["predict", str(trained / "m.pt"), str(CT), "--mask", str(mask)]) == 0
    first = np.asarray(nib.load(trained / "mask.nii.gz").dataobj)
    # predict knows no paint: every part; train's mask keeps those touching the paint
    again = np.asarray(nib.load(mask).dataobj).copy()
    sparse = np.asarray(nib.load(CT_SPARSE).dataobj)
    keep_painted_parts(again, painted_slices(sparse, labelled_slices(sparse, 2), 2), axis=2)
    np.testing.assert_array_equal(again, first)
    capsys.readouterr()
    assert main(["evaluate", str(mask), str(CT_FULL), "--json", "--slices", "5,20"]) == 0
    scores = json.loads(capsys.readouterr().out)
    # the IoU of slices 5 and 20 along axis 2, from the files as written, with numpy
    pred = np.asarray(nib.load(mask).dataobj)[..., [5, 20]]
    truth = np.asarray(nib.load(CT_FULL).dataobj)[..., [5, 20]]
    present = sorted(int(c) for c in np.union1d(np.unique(pred), np.unique(truth)) if c)
    assert sorted(int(c) for c in scores) == present
    for c in present:
        inter = np.sum((pred == c) & (truth == c))
        union = np.sum((pred == c) | (truth == c))
        assert scores[str(c)]["iou"] == pytest.approx(inter / union)
        assert scores[str(c)]["true_voxels"] == np.sum(truth == c)
    assert main(["evaluate", str(mask), str(CT_FULL)]) == 0
    assert "IoU" in capsys.readouterr().out
    for outside in ("34", "-1", "5,40"):  # the CT sample has 34 slices along axis 2
        assert main(["evaluate", str(mask), str(CT_FULL), "--slices", outside]) == 2
        err = capsys.readouterr().err
        assert "outside 0..33 along axis 2" in err and "Traceback" not in err


def test_predict_with_the_paint_writes_train_s_mask(trained, tmp_path, capsys):
    """--paint LABELS: the parts touching the paint, the very mask segpl train wrote."""
    mask = tmp_path / "painted.nii.gz"
    model = str(trained / "m.pt")
    assert main(["predict", model, str(CT), "--mask", str(mask), "--paint", str(CT_SPARSE)]) == 0
    assert "parts not touching the paint removed" in capsys.readouterr().out
    first = np.asarray(nib.load(trained / "mask.nii.gz").dataobj)
    np.testing.assert_array_equal(np.asarray(nib.load(mask).dataobj), first)
    empty = tmp_path / "empty.nii.gz"
    src = nib.load(CT_SPARSE)
    nib.save(nib.Nifti1Image(np.zeros(src.shape, np.uint8), src.affine), str(empty))
    other = tmp_path / "other.nii.gz"
    assert main(["predict", model, str(CT), "--mask", str(other), "--paint", str(empty)]) == 2
    assert "no painted voxel along axis 2" in capsys.readouterr().err and not other.exists()
    cohort = ["predict", model, str(CT), "--out", str(tmp_path / "c"), "--paint", str(CT_SPARSE)]
    assert main(cohort) == 2
    assert "--paint is for one image" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def lose_class_2(monkeypatch) -> None:
    """Every prediction's labels lose class 2, whatever the network says."""
    set_model_labels(monkeypatch, lambda p, labels: np.where(labels == 2, 0, labels))


def test_predict_warns_when_a_painted_class_is_nowhere_in_the_mask(
    trained, tmp_path, monkeypatch, capsys
):
    """A whole painted class missing from the mask gets a warning line; the mask is still
    written, as predicted (the network's labels here made to lose class 2)."""
    lose_class_2(monkeypatch)
    mask = tmp_path / "lost.nii.gz"
    model = str(trained / "m.pt")
    assert main(["predict", model, str(CT), "--mask", str(mask), "--paint", str(CT_SPARSE)]) == 0
    err = capsys.readouterr().err
    assert "warning: class 2 painted but nowhere in the mask" in err
    assert "class 1 painted" not in err and "classes 1" not in err  # class 1 is there
    written = np.asarray(nib.load(mask).dataobj)
    assert not (written == 2).any()


def test_predict_without_painted_parts_keeps_every_part_and_still_warns(
    trained, tmp_path, monkeypatch, capsys
):
    """--paint with --no-painted-parts: the mask is every predicted part (as without paint),
    and a painted class missing from it is still named; without --paint the flag is refused."""
    model, raw, kept = str(trained / "m.pt"), tmp_path / "raw.nii.gz", tmp_path / "all.nii.gz"
    assert main(["predict", model, str(CT), "--mask", str(raw)]) == 0
    lose_class_2(monkeypatch)
    args = ["predict", model, str(CT), "--mask", str(kept), "--paint", str(CT_SPARSE)]
    assert main([*args, "--no-painted-parts"]) == 0
    captured = capsys.readouterr()
    assert "touch" not in captured.out  # nothing removed
    assert "warning: class 2 painted but nowhere in the mask" in captured.err
    expected = np.asarray(nib.load(raw).dataobj).copy()
    assert (expected == 2).any()  # the network did predict class 2
    expected[expected == 2] = 0  # the patch's doing, nothing else
    np.testing.assert_array_equal(np.asarray(nib.load(kept).dataobj), expected)
    other = tmp_path / "other.nii.gz"
    assert main(["predict", model, str(CT), "--mask", str(other), "--no-painted-parts"]) == 2
    assert "--no-painted-parts goes with --paint" in capsys.readouterr().err
    assert not other.exists()


def _error(args, capsys) -> str:
    assert main(args) == 2
    return capsys.readouterr().err


def test_clear_errors_and_exit_status(tmp_path, capsys):
    model = str(tmp_path / "m.pt")
    err = _error(["train", str(tmp_path / "nope.nii.gz"), str(CT_SPARSE), "--model", model], capsys)
    assert "nope.nii.gz" in err and "not found" in err.lower()
    small = tmp_path / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), small)
    err = _error(["train", str(CT), str(small), "--model", model], capsys)
    assert "shape" in err
    empty = tmp_path / "empty.nii.gz"
    src = nib.load(CT_SPARSE)
    nib.save(nib.Nifti1Image(np.zeros(src.shape, np.uint8), src.affine, src.header), empty)
    assert "no labelled slice" in _error(["train", str(CT), str(empty), "--model", model], capsys)
    args = ["train", str(CT), str(CT_SPARSE), "--model", model, "--device", "cuda:7", *FAST]
    assert "cuda:7" in _error(args, capsys)
    args = ["train", str(CT), str(CT_SPARSE), "--model", model, "--lr", "-1", *FAST]
    assert "lr" in _error(args, capsys)
    args = ["train", str(CT), str(CT_SPARSE), "--model", model, "--uncertainty", "u.nii.gz"]
    args += ["--uncertainty-kind", "mc"]
    assert "segpl-vi" in _error([*args, "--method", "segpl", *FAST], capsys)
    assert "model file" in _error(["predict", model + "x", str(CT), "--mask", "m.nii.gz"], capsys)
    assert not Path(model).exists()  # every command above failed: nothing written


def test_help_explains_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "predict" in out and "evaluate" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "--labelled-slices" in out and "segpl-vi" in out


def test_lever_flags_override_the_preset_and_their_absence_keeps_it():
    """Each lever flag wins over the preset it is given with; without it, the preset's own
    value (TrainConfig's default where the preset sets none) stays."""
    from napari_segpl.cli import _config, build_parser

    base = ["train", "a.nii", "b.nii", "--model", "m.pt"]
    given = {"warp": 0.3, "affine": 0.1, "near": 4.0}
    for name, value in given.items():
        assert all(PRESETS[p].get(name, getattr(TrainConfig(), name)) != value for p in PRESETS)
    flags = [str(v) for name, value in given.items() for v in (f"--{name}", value)]
    for preset in ("mri", "ct", "paper"):
        cfg = _config(build_parser().parse_args([*base, *flags]), preset)
        assert {n: getattr(cfg, n) for n in given} == given
        plain = _config(build_parser().parse_args(base), preset)
        for name in given:
            assert getattr(plain, name) == PRESETS[preset].get(name, getattr(TrainConfig(), name))
