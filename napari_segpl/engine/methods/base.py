"""The one interface every training method implements, and the registry the front ends read.

A method owns its networks and turns a batch into a loss. The trainer, the predictor, the command
line and the dock only talk to this interface, so a new baseline is one module and one
``@register`` line, and it appears in the CLI choices and the dock's method list by itself.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..config import TrainConfig
from ..intensity import IntensityEvidence
from ..networks import UNet, memory_format

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under its ``name``."""
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def most_probable(p: torch.Tensor) -> torch.Tensor:
    """(N, K, ...) probabilities -> boolean (N, K, ...), True on each pixel's most probable
    class channel only (ties: the first)."""
    winner = p.argmax(dim=1, keepdim=True)
    return torch.zeros_like(p, dtype=torch.bool).scatter_(1, winner, True)


def per_channel(threshold: torch.Tensor, ndim: int) -> torch.Tensor:
    """(N, K) thresholds -> (N, K, 1, ...) that broadcast against (N, K, *spatial) tensors."""
    return threshold.reshape(threshold.shape + (1,) * (ndim - threshold.ndim))


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


@dataclass(frozen=True)
class Param:
    """A method's own parameter (FixMatch's tau, CPS's lambda...): stored in the configuration's
    ``extra`` under its name, so methods add parameters without touching ``TrainConfig``; front
    ends list ``Method.params`` (the CLI as ``--param NAME=VALUE``).

    A string default makes a choice (an ensemble's member method): ``choices`` holds the
    allowed values, or a function giving them when asked (for a list that grows as methods
    register); ``low`` and ``high`` then do not apply."""

    default: float | int | str
    help: str
    low: float = float("-inf")
    high: float = float("inf")
    choices: tuple[str, ...] | Callable[[], Sequence[str]] = ()

    def options(self) -> tuple[str, ...]:
        """The values a string parameter may take now (empty: any string)."""
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def check(self, name: str, value: object) -> float | int | str:
        """The value as the default's type, within [low, high] (a string: one of the
        choices); ConfigError names the field."""
        from ..config import ConfigError

        if isinstance(self.default, str):
            options = self.options()
            if not isinstance(value, str) or (options and value not in options):
                allowed = ", ".join(options) or "a string"
                raise ConfigError(f"{name} must be one of {allowed}, got {value!r}")
            return value
        try:
            number: float | int = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if isinstance(self.default, int):
            if not float(number).is_integer():
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
            number = int(number)
        if not self.low <= number <= self.high:
            raise ConfigError(f"{name} must be in [{self.low:g}, {self.high:g}], got {number!r}")
        return number


@dataclass
class Batch:
    """Tensors for one step: labelled images, their targets, the supervised-voxel mask (3D) and
    the unlabelled images (None for a method that uses none or when there are none)."""

    x_l: torch.Tensor
    y_l: torch.Tensor
    mask_l: torch.Tensor | None = None
    x_u: torch.Tensor | None = None

    @property
    def has_unlabelled(self) -> bool:
        """Whether the step holds any unlabelled image (``x_u`` may be None or empty)."""
        return self.x_u is not None and self.x_u.shape[0] > 0


@dataclass
class StepOutput:
    """A step's loss to back-propagate and what it reports (plain floats, for events).

    ``pseudo`` holds the detached pseudo labels of the unlabelled images when the method made
    any, so the trainer can watch their foreground fraction without another forward pass.
    """

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)
    pseudo: torch.Tensor | None = None
    threshold: tuple[float, float] | None = None


class Method(ABC):
    """Base class: builds the backbone; subclasses define the loss."""

    name: ClassVar[str]
    title: ClassVar[str]
    uses_unlabelled: ClassVar[bool] = False
    #: reads ``config.mix``: CutMix boxes between its unlabelled images
    mixes: ClassVar[bool] = False
    #: its loss trains on hard labels cut as ``pseudo_labels`` cuts them (the dock's preview
    #: shows what it uses); others (supervised, consistency methods) are shown for comparison
    cuts_pseudo_labels: ClassVar[bool] = False
    learns_threshold: ClassVar[bool] = False
    #: the method's own parameters, by name (values in ``config.extra``)
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        self.check_params(config.extra)
        self.config = config
        self.num_classes = num_classes
        self.model = UNet(config.dims, 1, num_classes, config.channels, config.depth)
        #: With ``ema > 0``: an exponential moving average of the network's weights. SegPL makes
        #: its pseudo labels with it (a mean teacher); every method hands it over as the trained
        #: model at the end (``finish``), so supervised training gets the same averaging.
        self.teacher: UNet | None = None
        #: Classes whose pseudo labels enter the loss (None: all). The trainer's gate opens a
        #: class once the teacher's pseudo labels of it are plausible.
        self.pseudo_classes: list[bool] | None = None
        #: With ``intensity > 0``: the painted slices' intensity evidence, which the trainer
        #: fits before a run; methods that make pseudo labels add it to the teacher's logits.
        self.evidence: IntensityEvidence | None = None
        self._ema_updates = 0
        #: True once ``finish`` ran: the network then holds the teacher's weights, so the
        #: E-step reads it instead of computing the same logits twice
        self.finished = False
        if config.ema > 0:
            self.teacher = copy.deepcopy(self.model).requires_grad_(False)

    @classmethod
    def check_params(cls, extra: dict) -> dict[str, float | int | str]:
        """Every parameter of the method, from ``extra`` or its default, checked; a name the
        method does not have is an error that lists the ones it has."""
        from ..config import ConfigError

        unknown = sorted(set(extra) - set(cls.params))
        if unknown:
            known = ", ".join(sorted(cls.params)) or "none"
            raise ConfigError(f"{cls.name} has no parameter {', '.join(unknown)} (it has: {known})")
        return {n: p.check(n, extra.get(n, p.default)) for n, p in cls.params.items()}

    def param(self, name: str) -> float | int | str:
        """The value of one of the method's own parameters."""
        return self.check_params(self.config.extra)[name]

    def total_steps(self) -> int:
        """The optimiser steps of one run: ``steps``, or more for a method that trains several
        networks one after another (an ensemble), so the trainer and its events count them."""
        return self.config.steps

    def modules(self) -> dict[str, nn.Module]:
        """Every trainable network, by the name its weights are saved under."""
        return {"model": self.model}

    def parameters(self) -> Iterator[nn.Parameter]:
        for module in self.modules().values():
            yield from module.parameters()

    def to(self, device: torch.device) -> Method:
        fmt = memory_format(self.config.dims)
        for module in self.modules().values():
            module.to(device=device, memory_format=fmt)
        if self.teacher is not None:
            self.teacher.to(device=device, memory_format=fmt)
        return self

    def train(self, mode: bool = True) -> None:
        for module in self.modules().values():
            module.train(mode)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {k: m.state_dict() for k, m in self.modules().items()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        modules = self.modules()
        if set(state) != set(modules):
            raise ValueError(f"checkpoint holds {sorted(state)}, method needs {sorted(modules)}")
        for key, module in modules.items():
            module.load_state_dict(state[key])
        self.finished = True  # saved weights are trained ones (the EMA's when ema > 0)

    def after_step(self) -> None:
        """Called after each optimiser step: the EMA copy follows the network."""
        if self.teacher is None:
            return
        # The decay ramps up as (1 + t) / (10 + t) to its set value, so that a short run's
        # average is not dominated by the random initial weights.
        self._ema_updates += 1
        d = min(self.config.ema, self._ema_updates / (self._ema_updates + 9))
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
                t.mul_(d).add_(s.detach(), alpha=1 - d)

    def finish(self) -> None:
        """Called once when training ends (also after a Stop): with ``ema > 0`` the averaged
        weights become the model that predicts and is saved."""
        if self.teacher is not None:
            self.model.load_state_dict(self.teacher.state_dict())
        self.finished = True

    @abstractmethod
    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        """One step's loss; ``alpha_fn(step)`` gives the unsupervised weight with its warm-up."""

    def e_step_logits(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The logits pseudo labels are cut from: the network's, plus the intensity evidence of
        the images ``x`` when there is any (``intensity`` times its log-likelihood ratios)."""
        if self.evidence is None or self.config.intensity <= 0:
            return logits
        return logits.float() + self.config.intensity * self.evidence(x)

    # The E-step, in three parts that the training step and the dock's preview and fill share,
    # so that what the dock shows as pseudo labels is what the loss trains on: probabilities of
    # the clean images, then (training only) moved like the student's view, then cut.

    def e_step_probabilities(
        self, x: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Float32 probabilities of the clean images ``x`` that pseudo labels are cut from: the
        EMA teacher's logits (the network's without a teacher; ``logits`` when the caller
        already has the network's logits of ``x``) plus the intensity evidence, through a
        sigmoid. Call without gradient."""
        if logits is None:
            net = self.model if self.teacher is None or self.finished else self.teacher
            if net is self.teacher:
                self.teacher.train(self.model.training)
            logits = net(x)[0]
        return torch.sigmoid(self.e_step_logits(logits, x).float())

    def cut(self, p: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
        """Boolean pseudo labels from E-step probabilities ``p`` (N, K, ...): ``p > T`` per
        class channel (``threshold`` a float or broadcastable to ``p``), and for exclusive (not
        nested) classes at most one class a pixel, the most probable one, as inference labels
        (with one threshold a channel, both lungs' channels came to cover both lungs)."""
        pseudo = p > threshold
        if self.config.exclusive and not self.config.nested and p.shape[1] > 1:
            pseudo = pseudo & most_probable(p)
        return pseudo

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The E-step of clean images ``x`` as the dock shows it: (probabilities (N, K, ...),
        boolean pseudo labels, thresholds (N, K)), cut at the fixed ``threshold`` (a method
        that learns one overrides this with its deterministic choice). Call without gradient."""
        fixed = float(self.config.threshold)
        t = torch.full((x.shape[0], self.num_classes), fixed, device=x.device)
        p = self.e_step_probabilities(x)
        return p, self.cut(p, per_channel(t, p.ndim)), t

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation logits for inference (a deep ensemble would average here)."""
        return self.model(x)[0]

    def threshold_distribution(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(logits, mu, sigma) for methods that learn a threshold; None otherwise."""
        return None
