"""A trained model: the method's networks plus the configuration that made them.

Checkpoints are a plain dictionary of tensors and built-in types, so they load with
``torch.load(weights_only=True)``: opening a model file never runs code from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .methods import Method, get_method

FORMAT = "napari-segpl/1"


class CheckpointError(ValueError):
    """A model file that is missing, damaged or not made by this program."""


@dataclass
class TrainedModel:
    """What prediction and saving need: the method (with weights) and its configuration."""

    method: Method
    config: TrainConfig
    num_classes: int
    steps_done: int = 0

    @classmethod
    def new(cls, config: TrainConfig, num_classes: int) -> TrainedModel:
        return cls(get_method(config.method)(config, num_classes), config, num_classes)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            k: {n: t.detach().cpu() for n, t in sd.items()}
            for k, sd in self.method.state_dict().items()
        }
        payload = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "steps_done": self.steps_done,
            "state": state,
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written model where a good one was
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: model file not found")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a damaged file
            raise CheckpointError(f"{path}: not a readable model file ({exc})") from exc
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a napari-segpl model (format {FORMAT} expected)")
        try:
            config = TrainConfig.from_dict(payload["config"])
            model = cls.new(config, int(payload["num_classes"]))
            model.method.load_state_dict(payload["state"])
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(
                f"{path}: model file does not match this program ({exc})"
            ) from exc
        model.steps_done = int(payload.get("steps_done", 0))
        return model
