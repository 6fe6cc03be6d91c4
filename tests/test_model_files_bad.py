"""Model files that are valid archives with bad contents: weights that are not finite (a run
that diverged), weights that do not fit the stored configuration, and a folder given as the
model. Each is refused in one line naming the file and what is wrong; a cohort's failure line
names its input once, as the user named it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_segpl.cli import main
from napari_segpl.cohort import Settings, run_cohort
from napari_segpl.engine.config import TrainConfig
from napari_segpl.engine.model import CheckpointError, TrainedModel, UnsavableModel
from napari_segpl.run_guard import TrainingFailed, saving_on_failure

SMALL = TrainConfig(dims=2, base_channels=4, depth=2, patch=32)
NAME = "down.0.0.weight"  # the network's first tensor, as stored under "model"
FIRST = f"model.{NAME}"  # as messages name it


def _saved(tmp_path: Path, name: str = "model.pt", num_classes: int = 1) -> Path:
    return TrainedModel.new(SMALL, num_classes).save(tmp_path / name)


def _altered(path: Path, edit: Any) -> Path:
    """The saved payload changed by ``edit(payload)``, written back as a plain dictionary."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        TrainedModel.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_that_are_not_finite_are_refused_on_load(tmp_path, value):
    def spoil(payload: dict[str, Any]) -> None:
        payload["state"]["model"]["down.0.1.bias"][0] = value

    message = _refusal(_altered(_saved(tmp_path), spoil))
    assert "not finite" in message and "model.down.0.1.bias" in message


def test_save_refuses_weights_that_are_not_finite_and_keeps_the_old_file(tmp_path):
    path = _saved(tmp_path)
    before = path.read_bytes()
    model = TrainedModel.new(SMALL, 1)
    with torch.no_grad():
        next(model.method.parameters()).fill_(float("nan"))
    with pytest.raises(UnsavableModel) as info:
        model.save(path)
    assert isinstance(info.value, OSError)  # what the CLI and the dock catch around save
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "not finite" in message and FIRST in message
    assert path.read_bytes() == before and sorted(tmp_path.iterdir()) == [path]


def test_a_failed_run_with_bad_weights_says_so_in_its_one_line(tmp_path):
    """The save after a training error: the refusal joins the TrainingFailed line."""
    model = TrainedModel.new(SMALL, 1)
    model.steps_done = 3
    with torch.no_grad():
        next(model.method.parameters()).fill_(float("inf"))

    class Diverged:
        def __init__(self) -> None:
            self.model = model

        def run(self) -> Any:
            yield None
            raise RuntimeError("out of memory")

    with pytest.raises(TrainingFailed) as info:
        list(saving_on_failure(Diverged(), tmp_path / "m.pt"))
    message = str(info.value)
    assert "out of memory" in message and "could not be saved" in message
    assert "not finite" in message and not (tmp_path / "m.pt").exists()


def test_predict_with_a_model_of_bad_weights_fails_in_one_line(tmp_path, capsys):
    def spoil(payload: dict[str, Any]) -> None:
        payload["state"]["model"]["head.weight"].fill_(float("nan"))

    model = _altered(_saved(tmp_path), spoil)
    image = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), image)
    mask = tmp_path / "mask.nii.gz"
    assert main(["predict", str(model), str(image), "--mask", str(mask), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not finite" in err and "model.head.weight" in err
    assert not mask.exists()


def _config(**changes: Any) -> Any:
    def edit(payload: dict[str, Any]) -> None:
        payload["config"].update(changes)

    return edit


def _drop(payload: dict[str, Any]) -> None:
    del payload["state"]["model"][NAME]


def _extra(payload: dict[str, Any]) -> None:
    payload["state"]["model"]["spare.weight"] = torch.zeros(2)


def _classes(payload: dict[str, Any]) -> None:
    payload["num_classes"] = 3


def _not_a_tensor(payload: dict[str, Any]) -> None:
    payload["state"]["model"][NAME] = [1.0, 2.0]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_config(base_channels=8), f"45 of 46 tensors of another shape, the first {FIRST}: "),
        (_classes, "model.head.weight: 1x4x1x1 in the file, 3x4x1x1 in the network"),
        (_drop, f"1 of 46 tensors missing, the first {FIRST}"),
        (_extra, "1 not in the network, the first model.spare.weight"),
        (_not_a_tensor, f"{FIRST}: not a tensor in the file"),
    ],
    ids=["channels", "num_classes", "missing", "unexpected", "not_a_tensor"],
)
def test_weights_that_do_not_fit_the_configuration_say_what_differs(tmp_path, edit, expected):
    message = _refusal(_altered(_saved(tmp_path), edit))
    assert "do not fit the stored configuration" in message and expected in message
    assert "Error(s) in loading" not in message


def test_a_folder_is_not_a_model_file(tmp_path):
    folder = tmp_path / "model.pt"
    folder.mkdir()
    message = _refusal(folder)
    assert "is a folder, not a model file" in message and "not found" not in message


def test_a_cohort_failure_names_its_input_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _saved(tmp_path)
    Path("scans").mkdir()
    Path("scans", "broken.nii.gz").write_bytes(b"not a nifti file")
    lines: list[str] = []
    settings = Settings(workers=1, threads=1, device="cpu", progress=False)
    report = run_cohort(model, ["scans/broken.nii.gz"], "masks", settings, echo=lines.append)
    assert report.count("failed") == 1
    assert len(lines) == 1 and lines[0].startswith("failed: scans/broken.nii.gz: cannot read")
    assert str(tmp_path) not in lines[0]  # the reader's own mention of it is as typed too
