"""Model files: a crafted configuration is refused before any network is built, a file that
is not ours is refused in one line without running its code, and saving never leaves a
broken model where a good one was."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from napari_segpl.cli import main
from napari_segpl.engine import model as model_module
from napari_segpl.engine.config import TrainConfig
from napari_segpl.engine.model import FORMAT, CheckpointError, TrainedModel

SMALL = TrainConfig(dims=2, base_channels=4, depth=2, patch=32, ema=0.0)


def crafted(path: Path, num_classes: object = 1, **config: object) -> Path:
    """A plain dictionary in our format whose configuration asks for ``config``."""
    payload = {
        "format": FORMAT,
        "config": {**SMALL.to_dict(), **config},
        "num_classes": num_classes,
        "steps_done": 0,
        "state": {},
    }
    torch.save(payload, path)
    return path


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test if a method (and so a network) is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network was built from an unchecked configuration")

    monkeypatch.setattr(model_module, "get_method", refuse)


@pytest.mark.parametrize(
    ("field", "config", "num_classes"),
    [
        ("base_channels", {"base_channels": 100000}, 1),
        ("depth", {"depth": 40}, 1),
        ("patch", {"patch": 10**6}, 1),
        ("dims", {"dims": 7}, 1),
        ("num_classes", {}, 100000),
        ("num_classes", {}, 0),
        ("base_channels", {"base_channels": "16"}, 1),
        ("depth", {"depth": True}, 1),
        ("lr", {"lr": float("nan")}, 1),
        # each within its own bound, together a 128 * 2**6 = 8192-wide bottleneck
        ("base_channels * 2**depth", {"base_channels": 128, "depth": 6}, 1),
    ],
)
def test_crafted_configuration_is_refused_before_building(
    tmp_path, no_network, field, config, num_classes
):
    path = crafted(tmp_path / "big.pt", num_classes, **config)
    with pytest.raises(CheckpointError) as info:
        TrainedModel.load(path)
    message = str(info.value)
    assert field in message and "not loaded" in message
    assert "\n" not in message


def test_out_of_range_value_fails_validate(tmp_path, no_network):
    # within the network limits but a value no run can use: config.validate() is called
    path = crafted(tmp_path / "lr.pt", lr=-1.0)
    with pytest.raises(CheckpointError, match="lr must be positive"):
        TrainedModel.load(path)


def test_own_model_still_round_trips(tmp_path):
    model = TrainedModel.new(SMALL, 2)
    model.steps_done = 7
    loaded = TrainedModel.load(model.save(tmp_path / "m.pt"))
    assert loaded.config == SMALL and loaded.num_classes == 2 and loaded.steps_done == 7
    for a, b in zip(model.method.parameters(), loaded.method.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_refuses_a_network_it_could_not_load_again():
    from napari_segpl.engine.config import ConfigError

    with pytest.raises(ConfigError, match="base_channels"):
        TrainedModel.new(TrainConfig(dims=2, base_channels=129), 1)


class Trap:
    """Unpickling it calls os.mkdir(marker): the side effect shows whether its code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def assert_refused_in_one_line(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        TrainedModel.load(path)
    message = str(info.value)
    assert "not a napari-segpl model" in message and "not loaded" in message
    assert "weights_only" not in message and "\n" not in message
    return message


def test_the_trap_works_when_unpickled_unsafely(tmp_path):
    # the control: the same kind of payload does run when loaded without protection
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Trap(marker)))
    assert marker.is_dir()


@pytest.mark.parametrize("how", ["torch.save", "pickle", "inside our format"])
def test_pickle_carrying_code_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(Trap(marker), path)
    elif how == "pickle":
        path.write_bytes(pickle.dumps(Trap(marker)))
    else:
        torch.save({"format": FORMAT, "config": Trap(marker), "state": {}}, path)
    assert_refused_in_one_line(path)
    assert not marker.exists()


def test_text_file_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "notes.pt"
    path.write_text("this is not a model\n")
    assert_refused_in_one_line(path)
    out = tmp_path / "mask.nii.gz"
    assert main(["predict", str(path), str(tmp_path / "image.nii.gz"), "--mask", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights_only" not in err and "notes.pt" in err


def test_damaged_model_is_refused_in_one_line(tmp_path):
    path = TrainedModel.new(SMALL, 1).save(tmp_path / "m.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "damaged" in assert_refused_in_one_line(path)


def test_model_with_damaged_weights_is_refused(tmp_path):
    """Bytes changed inside a weight tensor leave a valid archive that torch.load reads without
    complaint; the archive's CRC catches them."""
    path = TrainedModel.new(SMALL, 1).save(tmp_path / "m.pt")
    with zipfile.ZipFile(path) as archive:
        entry = max(archive.infolist(), key=lambda info: info.file_size)
        assert entry.compress_type == zipfile.ZIP_STORED  # torch stores tensors uncompressed
        start = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra)
    raw = bytearray(path.read_bytes())
    raw[start + entry.file_size // 2 : start + entry.file_size // 2 + 8] = bytes(8)
    path.write_bytes(bytes(raw))
    assert zipfile.is_zipfile(path)
    torch.load(path, map_location="cpu", weights_only=True)  # torch itself reads it fine
    assert "damaged" in assert_refused_in_one_line(path)


def test_failed_save_keeps_the_old_model_and_no_temporary_file(tmp_path, monkeypatch):
    path = TrainedModel.new(SMALL, 1).save(tmp_path / "m.pt")
    before = path.read_bytes()

    def broken_save(obj, target):
        Path(target).write_bytes(b"half a mod")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        TrainedModel.new(SMALL, 1).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_torch_writer_error_becomes_a_one_line_oserror(tmp_path, monkeypatch):
    # torch.save's C++ writer raises RuntimeError (no access, a full disk), not OSError
    def failing_save(obj, target):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="cannot write the model file .*file write failed"):
        TrainedModel.new(SMALL, 1).save(tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []
