"""``segpl evaluate`` and ``segpl suggest`` as a user meets them: a slice given twice, no
slice, nothing to score, and every slice painted. Each failed on the code before."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from conftest import make_toy_volume

import napari_segpl.engine
from napari_segpl.cli import main
from napari_segpl.engine import TrainConfig, TrainedModel


def _save(path: Path, array: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return path


def test_evaluate_counts_a_slice_given_twice_once(tmp_path, capsys):
    """``--slices 3,3`` counted slice 3 twice: twice its voxels, and its weight in the score."""
    _, truth = make_toy_volume((32, 32, 6))
    pred = np.roll(truth, 2, axis=0)
    p, t = _save(tmp_path / "p.nii.gz", pred), _save(tmp_path / "t.nii.gz", truth)
    scores = []
    for slices in ("3,3,1", "1,3"):
        assert main(["evaluate", str(p), str(t), "--slices", slices, "--json"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0] == scores[1]
    assert scores[1]["1"]["true_voxels"] == np.sum(truth[..., [1, 3]] == 1)


def test_evaluate_says_when_there_is_nothing_to_score(tmp_path, capsys):
    """Two empty volumes printed a bare table header; JSON stays an empty object."""
    empty = _save(tmp_path / "e.nii.gz", np.zeros((8, 8, 3), np.uint8))
    assert main(["evaluate", str(empty), str(empty)]) == 0
    assert "nothing to score" in capsys.readouterr().out
    assert main(["evaluate", str(empty), str(empty), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {}


def test_evaluate_refuses_slices_naming_no_slice(tmp_path, capsys):
    """``--slices ""`` scored zero slices and printed a bare header, status 0."""
    _, truth = make_toy_volume((16, 16, 3))
    t = _save(tmp_path / "t.nii.gz", truth)
    assert main(["evaluate", str(t), str(t), "--slices", ""]) == 2
    assert "--slices names no slice" in capsys.readouterr().err


def test_suggest_with_every_slice_painted_stops_before_predicting(tmp_path, capsys, monkeypatch):
    """It predicted the whole volume (TTA: 8 passes) before saying no slice was left."""
    torch.manual_seed(0)
    model = tmp_path / "m.pt"
    TrainedModel.new(TrainConfig(dims=2, axis=2, method="segpl", base_channels=4), 2).save(model)
    image = _save(tmp_path / "i.nii.gz", make_toy_volume((32, 32, 4))[0])

    def refuse(*args, **kwargs):
        raise AssertionError("predicted")

    monkeypatch.setattr(napari_segpl.engine, "predict_volume", refuse)
    args = ["suggest", str(model), str(image), "--labelled-slices", "3,2,1,0,1", "--quiet"]
    assert main(args) == 2
    assert "every slice is labelled (axis 2)" in capsys.readouterr().err


def test_evaluate_names_both_files_when_the_shapes_differ(tmp_path, capsys):
    """It said 'prediction shape (8, 8, 3) differs from truth shape (8, 8, 4)', no file."""
    p = _save(tmp_path / "p.nii.gz", np.zeros((8, 8, 3), np.uint8))
    t = _save(tmp_path / "t.nii.gz", np.zeros((8, 8, 4), np.uint8))
    assert main(["evaluate", str(p), str(t)]) == 2
    err = capsys.readouterr().err
    assert f"{p}: shape (8, 8, 3) differs from the truth's, (8, 8, 4) ({t})" in err
    assert len(err.strip().splitlines()) == 1
