"""A trained model: the method's networks plus the configuration that made them.

Checkpoints are a plain dictionary of tensors and built-in types, so they load with
``torch.load(weights_only=True)``: opening a model file never runs code from it. The stored
configuration is checked (types and ranges, ``LIMITS``) before any network is built, so a
crafted file cannot ask for an enormous one.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import write_atomically
from .config import MAX_CLASSES, ConfigError, TrainConfig
from .decision import Decision, label_dtype, labels_from_probabilities
from .methods import METHODS, Method, get_method

FORMAT = "napari-segpl/1"

#: Upper bounds on what a network may be asked to be, checked before one is built (when
#: training and when loading). Headroom over the presets (16 or 8 channels, depth 4, patch
#: 176, a few classes) and over the dock's fields (channels up to 128, patch up to 1024).
LIMITS = {"base_channels": 128, "depth": 6, "patch": 1024, "num_classes": MAX_CLASSES}
#: The deepest encoder's width, base_channels * 2**depth (the presets: 256 at most).
MAX_WIDTH = 2048


class CheckpointError(ValueError):
    """A model file that is missing, damaged or not made by this program."""


class UnsavableModel(CheckpointError, OSError):
    """A model :meth:`TrainedModel.save` refuses to write (weights that are not finite, from a
    run that diverged). An OSError too: every caller already reports a failed save in one line
    (the CLI, the dock), and a file no command could load is not written."""


State = dict[str, dict[str, torch.Tensor]]


def non_finite(state: State) -> str | None:
    """Which tensors hold NaN or inf, the first named (None if all are finite): such weights
    predict nothing (an empty mask) without any error, so they are refused, not used."""
    bad = [
        f"{module}.{name}"
        for module, tensors in state.items()
        for name, t in tensors.items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if not bad:
        return None
    total = sum(len(tensors) for tensors in state.values())
    return f"NaN or inf in {bad[0]}" + (f", and {len(bad) - 1} more of {total}" if bad[1:] else "")


def _shape(value: Any) -> str:
    """A tensor's shape as ``4x1x3x3`` (one line, no commas), or what it is instead."""
    if not isinstance(value, torch.Tensor):
        return "not a tensor"
    return "x".join(map(str, value.shape)) or "a scalar"


def state_mismatch(expected: State, stored: Any) -> str | None:
    """What in the stored weights does not fit the network the stored configuration builds:
    counts and the first of each kind (torch's first line says only 'Error(s) in loading').
    None where the modules themselves do not match: Method.load_state_dict says so."""
    if not isinstance(stored, dict):
        return None
    missing: list[str] = []
    unexpected: list[str] = []
    sizes: list[str] = []
    for module, tensors in expected.items():
        got = stored.get(module)
        if not isinstance(got, dict):
            return None
        missing += [f"{module}.{n}" for n in tensors if n not in got]
        unexpected += [f"{module}.{n}" for n in got if n not in tensors]
        sizes += [
            f"{module}.{n}: {_shape(got[n])} in the file, {_shape(t)} in the network"
            for n, t in tensors.items()
            if n in got and _shape(got[n]) != _shape(t)
        ]
    total = sum(len(tensors) for tensors in expected.values())
    parts = [
        f"{len(found)} of {total} tensors {what}, the first {found[0]}"
        for found, what in ((sizes, "of another shape"), (missing, "missing"))
        if found
    ]
    if unexpected:
        parts.append(f"{len(unexpected)} not in the network, the first {unexpected[0]}")
    return "; ".join(parts) or None


def check_limits(config: TrainConfig, num_classes: int) -> None:
    """Raise ConfigError naming the first field outside ``LIMITS`` (or a dims not 2 or 3):
    a network that large is a mistake, or a crafted file."""
    if config.dims not in (2, 3):
        raise ConfigError(f"dims must be 2 or 3 for a network, got {config.dims}")
    values = {k: getattr(config, k) for k in LIMITS if k != "num_classes"}
    values["num_classes"] = num_classes
    for name, limit in LIMITS.items():
        if not 0 <= values[name] <= limit:
            raise ConfigError(f"{name} must be between 0 and {limit}, got {values[name]}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    width = config.channels * 2**config.depth
    if width > MAX_WIDTH:
        raise ConfigError(
            f"base_channels * 2**depth must be at most {MAX_WIDTH}, got {width} "
            f"(base_channels {config.channels}, depth {config.depth})"
        )


def _field_ok(value: Any, default: Any) -> bool:
    """Whether a stored value has the type of the field's default (bool is not an int here)."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if isinstance(default, str):
        return isinstance(value, str) and len(value) <= 256
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            return False
        return all(_field_ok(v, d) for v, d in zip(value, default, strict=True))
    return isinstance(value, dict)


def _stored_config(stored: Any, num_classes: Any) -> tuple[TrainConfig, int]:
    """The checkpoint's configuration, each field's type and range checked (ConfigError)."""
    if not isinstance(stored, dict):
        raise ConfigError("the configuration is not a dictionary")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in stored and not _field_ok(stored[f.name], getattr(defaults, f.name)):
            raise ConfigError(f"configuration field {f.name} has a bad value {stored[f.name]!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise ConfigError(f"num_classes has a bad value {num_classes!r}")
    config = TrainConfig.from_dict(stored)
    if config.method not in METHODS:
        raise ConfigError(f"method {config.method!r} is unknown to this program")
    check_limits(config, num_classes)
    return config.validate(), num_classes


def _stored_decision(stored: Any, num_classes: int) -> Decision | None:
    """The checkpoint's label decision (None when it has none), shapes and values checked."""
    if stored is None:
        return None
    shapes = {"weight": (num_classes + 1, num_classes), "bias": (num_classes + 1,)}
    if not isinstance(stored, dict) or set(stored) != set(shapes):
        raise ValueError("the label decision is not a weight and a bias")
    for name, shape in shapes.items():
        t = stored[name]
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or not t.is_floating_point():
            raise ValueError(f"the label decision's {name} is not a {shape} float tensor")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"the label decision's {name} is not finite")
    weight, bias = (stored[n].double().numpy() for n in ("weight", "bias"))
    return Decision(weight, bias)


@dataclass
class TrainedModel:
    """What prediction and saving need: the method (with weights) and its configuration."""

    method: Method
    config: TrainConfig
    num_classes: int
    steps_done: int = 0
    #: the label decision fitted to the paint after training (None: the threshold rule)
    decision: Decision | None = None

    def labels(self, prob: np.ndarray) -> np.ndarray:
        """(K, ...) probabilities -> labels, as every prediction of this model cuts them: the
        decision fitted to the paint where there is one, else p > the threshold."""
        if self.decision is not None:
            return self.decision.labels(prob).astype(label_dtype(self.num_classes))
        return labels_from_probabilities(prob, self.config.threshold, self.config.nested)

    @classmethod
    def new(cls, config: TrainConfig, num_classes: int) -> TrainedModel:
        check_limits(config, num_classes)  # one that could not be loaded again is refused
        return cls(get_method(config.method)(config, num_classes), config, num_classes)

    def save(self, path: str | Path) -> Path:
        """Write to a temporary file beside ``path``, then rename it over ``path``: a failure
        never leaves a half-written model where a good one was, nor a temporary file. Weights
        that are not finite are refused (UnsavableModel): no command could use the file."""
        path = Path(path)
        state = {
            k: {n: t.detach().cpu() for n, t in sd.items()}
            for k, sd in self.method.state_dict().items()
        }
        if bad := non_finite(state):  # TrainedModel.load would refuse the file
            raise UnsavableModel(
                f"{path}: model not saved, its weights are not finite ({bad}): the training "
                "diverged (a lower learning rate may help)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": FORMAT,
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "steps_done": self.steps_done,
            "state": state,
        }
        if self.decision is not None:
            payload["decision"] = {
                "weight": torch.from_numpy(self.decision.weight.copy()),
                "bias": torch.from_numpy(self.decision.bias.copy()),
            }

        def write(tmp: Path) -> None:
            try:
                torch.save(payload, tmp)
            except RuntimeError as exc:  # torch's C++ writer: no such folder, no space, no access
                raise OSError(f"{path}: cannot write the model file ({exc})") from None

        return write_atomically(path, write)

    @classmethod
    def load(cls, path: str | Path) -> TrainedModel:
        """Open a model saved by :meth:`save`; anything else is refused in one line."""
        path = Path(path)
        if path.is_dir():
            raise CheckpointError(f"{path}: is a folder, not a model file")
        if not path.is_file():
            raise CheckpointError(f"{path}: model file not found")
        # torch's own message for a refused file suggests weights_only=False, which would run
        # the file's code: say only what the user needs to know, in one line.
        unreadable = CheckpointError(
            f"{path}: not a readable model file (not a napari-segpl model, or a damaged one); "
            "it was not loaded"
        )
        if not zipfile.is_zipfile(path):  # torch.save has written zip archives since 1.6
            raise unreadable
        try:  # torch.load does not check the archive's CRCs: damaged weights would load
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
        except Exception:  # a damaged directory or entry header
            raise unreadable from None
        if damaged is not None:
            raise unreadable
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises many types for a damaged or foreign file
            raise unreadable from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a napari-segpl model file; it was not loaded")
        try:
            config, num_classes = _stored_config(payload.get("config"), payload.get("num_classes"))
        except ConfigError as exc:
            raise CheckpointError(f"{path}: model file refused, {exc}; it was not loaded") from None
        try:
            model = cls.new(config, num_classes)
            wrong = state_mismatch(model.method.state_dict(), payload.get("state"))
            if wrong is None:
                model.method.load_state_dict(payload["state"])
        except (KeyError, TypeError, AttributeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(
                f"{path}: model file does not match this program ({first}); it was not loaded"
            ) from exc
        if wrong is not None:
            raise CheckpointError(
                f"{path}: the weights do not fit the stored configuration ({wrong}); "
                "it was not loaded"
            )
        if bad := non_finite(model.method.state_dict()):
            raise CheckpointError(
                f"{path}: the weights are not finite ({bad}), from a run that diverged; "
                "it was not loaded"
            )
        steps = payload.get("steps_done", 0)
        model.steps_done = steps if isinstance(steps, int) and steps >= 0 else 0
        try:  # files from before (P2) have none: they label as they always did
            model.decision = _stored_decision(payload.get("decision"), num_classes)
        except ValueError as exc:
            raise CheckpointError(f"{path}: model file refused, {exc}; it was not loaded") from None
        return model
