"""Small helpers the baselines share: the consistency weight's ramp and the centre slice."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig


def sigmoid_rampup(step: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = step / length`` clipped to [0, 1] (Laine and Aila's
    ramp, used by mean teacher, CCT and SSL4MIS); 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def unsupervised_ramp(config: TrainConfig, step: int) -> float:
    """The run's schedule for an unsupervised weight: 0 for the ``burn_in`` steps (0 in the
    paper presets), then the sigmoid ramp over ``warmup`` of the steps."""
    if step < config.burn_in_steps:
        return 0.0
    return sigmoid_rampup(step - config.burn_in_steps, config.warmup_steps)


def centre_slice(x: torch.Tensor) -> torch.Tensor:
    """The centre slice of 3-slice stacks (N, C, 3, H, W); 2D tensors unchanged."""
    return x[:, :, x.shape[2] // 2] if x.ndim == 5 else x
