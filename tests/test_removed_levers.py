"""Levers removed in issues 22, 23, 25 and 26 (they did nothing or did harm, benchmarks/RESULTS.md):
model files saved before still load when the lever was off, and are refused with its name when
it was on."""

from __future__ import annotations

import pytest
import torch

from napari_segpl.engine import CheckpointError, TrainConfig, TrainedModel
from napari_segpl.engine.config import ConfigError

#: each removed lever with the value that meant "off" and one that switched it on
OFF_AND_ON = {
    "skip_empty": (False, True),
    "augment": (False, True),
    "lr_schedule": ("constant", "poly"),
    "unsup_loss": ("", "bce"),
    "span": (1.0, 0.0),
    "threshold_weight": (1.0, 10.0),
    "threshold_fit": ("dice", "likelihood"),
    "settle": (0.0, 0.02),
    "parts_every": (0, 30),
    "flat": (False, True),
    "compete": (0.0, 0.1),
    "rescue": (0.0, 1.0),
    "cap": (0.0, 1.5),
}


def test_an_old_configuration_with_the_levers_off_loads():
    old = {**TrainConfig(steps=7).to_dict(), **{k: off for k, (off, _) in OFF_AND_ON.items()}}
    assert TrainConfig.from_dict(old) == TrainConfig(steps=7)


@pytest.mark.parametrize("key", sorted(OFF_AND_ON))
def test_a_removed_lever_that_was_on_is_refused_by_name(key):
    old = {**TrainConfig().to_dict(), key: OFF_AND_ON[key][1]}
    with pytest.raises(ConfigError, match=f"^{key} = "):
        TrainConfig.from_dict(old)
    with pytest.raises(TypeError):  # and no configuration can ask for it any more
        TrainConfig(**{key: OFF_AND_ON[key][0]})


def test_unknown_keys_are_still_an_error():
    with pytest.raises(ConfigError, match="unknown configuration keys"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "flips": False})


def test_old_model_files(tmp_path):
    model = TrainedModel.new(TrainConfig(base_channels=4, depth=2), 1)
    path = model.save(tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"].update(skip_empty=False, span=1, lr_schedule="constant")  # as saved then
    torch.save(payload, path)
    loaded = TrainedModel.load(path)
    assert loaded.config == model.config
    payload["config"]["skip_empty"] = True
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="skip_empty = True"):
        TrainedModel.load(path)
