"""What ``Trainer.run`` yields (and ``FillStopped``), apart from the loop so a front end reads
the events it draws without the training code around them; ``trainer`` re-exports them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .guard import CollapseWarning


@dataclass
class StepEvent:
    """After each optimiser step. ``mu``/``sigma`` are the mean threshold distribution of the
    step's unlabelled images (SegPL-VI only); ``fg_fraction`` the pseudo labels' foreground
    fraction per class (methods with pseudo labels only)."""

    step: int
    total: int
    losses: dict[str, float]
    lr: float
    seconds_per_step: float
    mu: float | None = None
    sigma: float | None = None
    fg_fraction: list[float] | None = None


@dataclass
class PreviewEvent:
    """Every ``preview_every`` steps: the pseudo labels the E-step makes now of one whole
    unlabelled slice (the teacher, the intensity evidence and the exclusive rule, as in the
    loss), and the probabilities they were cut from, in the slice's own in-plane shape.
    ``threshold`` is the T each class was cut at (SegPL-VI: the head's mu for this slice, the
    centre of the distribution training draws T from) and ``threshold_note`` says so in one
    line for the dock."""

    step: int
    slice_index: int
    labels: np.ndarray
    probabilities: np.ndarray
    threshold: list[float] = field(default_factory=list)
    threshold_note: str = ""


@dataclass
class FinishedEvent:
    steps_done: int
    stopped: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    #: what a front end must add to "done" (the safeguard's check stopped: model unchecked)
    note: str = ""


Event = StepEvent | PreviewEvent | CollapseWarning | FinishedEvent


class FillStopped(Exception):
    """``Trainer.pseudo_label_volume`` was asked to stop before it finished."""
