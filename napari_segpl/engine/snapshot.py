"""A mask of the whole volume while a run trains ("Mask now"), so a user can stop early.

Between two training steps the network as it is is copied, the copy is finished as a Stop
would finish the run (the averaged weights become the network, an ensemble averages the
members trained so far) and predicts the volume through ``predict_volume``, the function an
export uses. The run's own objects are never touched: its network keeps its mode, device and
weights, and the torch generators are restored afterwards, so training goes on exactly as it
would have without the snapshot (tests/test_snapshot.py checks every weight at the end).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .decision import Decision
from .inference import predict_volume
from .methods import Method
from .model import TrainedModel


@dataclass
class SnapshotEvent:
    """A whole-volume mask of the model at ``step`` of ``total``: ``labels`` on the image's
    grid, what a Stop at this step and then Predict would give; ``seconds`` it took."""

    step: int
    total: int
    labels: np.ndarray
    seconds: float
    threshold_note: str = ""
    #: voxels removed per painted class as not touching the paint (None: no paint was given)
    removed: dict[int, int] | None = None
    #: ``paint_note`` of the mask: a painted class missing or unlike its paint ("" when none,
    #: or when no paint was given)
    paint_note: str = ""

    @property
    def name(self) -> str:
        """The layer name that says which step the mask is of."""
        return f"SegPL mask (step {self.step} of {self.total})"


@dataclass
class SnapshotFailed:
    """The snapshot at ``step`` failed; training goes on."""

    step: int
    total: int
    message: str


def frozen_copy(
    model: TrainedModel, fit: Callable[[Method], Decision | None] | None = None
) -> TrainedModel:
    """A copy of ``model`` as a Stop now would leave it (``Method.finish`` on the copy only).
    ``fit`` (the run's ``Trainer.fit_decision``) fits the copy's label decision to the paint,
    as the end of a run does; without it the copy keeps ``model``'s."""
    method = copy.deepcopy(model.method)
    method.finish()
    decision = model.decision if fit is None else fit(method)
    return TrainedModel(method, model.config, model.num_classes, model.steps_done, decision)


def take_snapshot(
    model: TrainedModel,
    image: np.ndarray,
    step: int,
    total: int,
    *,
    device: str | torch.device = "cpu",
    axis: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    paint: Mapping[int, np.ndarray] | None = None,
    keep_parts: bool = True,
    fit: Callable[[Method], Decision | None] | None = None,
) -> SnapshotEvent:
    """Predict ``image`` (the raw volume, as an export reads it) with a finished copy of the
    network being trained, on ``device`` (the run's). Labels only: no probabilities are kept.
    ``progress(done, total)`` after each batch of slices may raise to cancel it. ``paint``
    (the run's trained-on slices, ``predict_volume``'s): the mask keeps only the parts
    touching it unless ``keep_parts`` is False, so that it is the mask an export with the
    same choice would write. ``fit`` (the trainer's ``fit_decision``) fits the copy's label
    decision to the paint, as the end of a run does."""
    start = time.perf_counter()
    dev = torch.device(device)
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    # Nothing below draws random numbers today (no Monte-Carlo samples); forking the
    # generators keeps it so whatever a method's copy or prediction comes to do.
    with torch.random.fork_rng(devices=cuda):
        frozen = frozen_copy(model, fit)
        pred = predict_volume(
            frozen,
            image,
            axis=model.config.axis if axis is None else axis,
            device=str(dev),
            progress=progress,
            probabilities=False,
            paint=paint,
            keep_parts=keep_parts,
        )
    del frozen
    seconds = time.perf_counter() - start
    return SnapshotEvent(
        step, total, pred.labels, seconds, pred.threshold_note, pred.removed, pred.paint_note
    )
