"""One retry at the next seed when the exported mask contradicts the paint.

A run can end with a mask that gives a painted class to another class on the very slices the
user painted, or loses it (``components.paint_note``). On the saved runs that was the
training's failure at that seed, supervised training's as much as SegPL's (the lungs at seed 8:
all three methods), and a run at the next seed did not repeat it (benchmarks/RESULTS.md (V2)).
So the whole run (with the safeguard's twin and choice, when it checks) is made once more at
``seed + 1``, and the mask that matches the paint better is kept: the smaller of its per-class
Dice on the painted slices is the higher (a tie keeps the first). A Stop during the retry keeps
the first run, as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .components import paint_dice, paint_note
from .config import TrainConfig
from .inference import PredictionStopped, predict_volume, stop_between_batches
from .safeguard import CheckedLabels, GuardedTrainer
from .sampling import TrainingData
from .trainer import FinishedEvent


@dataclass
class RetryEvent:
    """The first run's mask contradicts the paint (``reason``): the run starts again at
    ``seed``; its events follow, with steps counted from 1 again."""

    seed: int
    reason: str

    @property
    def message(self) -> str:
        return f"{self.reason}. Training once more at seed {self.seed}"


@dataclass
class RetryDecision:
    """Which of the two runs' masks is kept, and each one's smallest per-class Dice against
    the paint on the painted slices."""

    kept_seed: int
    seeds: tuple[int, int]
    fits: tuple[float, float]

    @property
    def message(self) -> str:
        (a, b), (fa, fb) = self.seeds, self.fits
        return (
            f"kept the run at seed {self.kept_seed}: smallest Dice against the paint on the "
            f"painted slices {fa:.2f} at seed {a}, {fb:.2f} at seed {b}"
        )


class RetriedRun:
    """A ``GuardedTrainer`` (whose twin checks when ``check``) and, when its exported mask
    contradicts the paint, a second one at the next seed: the surface of the run in use
    (``model``, ``trainer``, ``partner``, ``kept_labels``...) is the kept one's. ``parts``: the
    masks compared keep only the parts touching the paint, as an export does."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingData,
        image: np.ndarray,
        *,
        retry: bool = True,
        keep_labels: bool = False,
        parts: bool = True,
        **guarded: object,
    ) -> None:
        self.image, self.retry, self.parts = image, retry, parts
        self.keep_labels = keep_labels
        self._guarded = guarded
        self.current = self._new(config, data)
        self.decision: RetryDecision | None = None
        self._stopped = False

    def _new(self, config: TrainConfig, data: TrainingData) -> GuardedTrainer:
        return GuardedTrainer(
            config, data, self.image, keep_labels=True, parts=self.parts, **self._guarded
        )

    def __getattr__(self, name: str):  # config, model, trainer, partner, total_steps...
        return getattr(self.current, name)

    @property
    def holdout_every(self) -> int:
        return self.current.holdout_every

    @holdout_every.setter
    def holdout_every(self, value: int) -> None:  # for this run and a retry
        self._guarded["holdout_every"] = self.current.holdout_every = value

    @property
    def preview_slice(self) -> int:
        return self.current.preview_slice

    @preview_slice.setter
    def preview_slice(self, value: int) -> None:
        self.current.preview_slice = value

    def stop(self) -> None:
        self._stopped = True
        self.current.stop()

    def run(self) -> Iterator[object]:
        """The first run's events; then, if its mask contradicts the paint, a RetryEvent, the
        second run's events and a RetryDecision; the kept run's FinishedEvent last."""
        first, finished = self.current, None
        for event in first.run():
            if isinstance(event, FinishedEvent):
                finished = event
            else:
                yield event
        fit, reason = self._checked(first, finished) if self.retry else (None, "")
        if reason and not self._stopped:
            seed = first.config.seed + 1
            self.current = second = self._new(
                dataclasses.replace(first.config, seed=seed), first.data
            )
            yield RetryEvent(seed, reason)
            again = None
            for event in second.run():
                if isinstance(event, FinishedEvent):
                    again = event
                else:
                    yield event
            fit2, _ = self._checked(second, again)
            if fit2 is not None:
                better = fit2 > fit
                self.current = second if better else first
                finished = again if better else finished
                self.decision = RetryDecision(
                    self.current.config.seed, (first.config.seed, seed), (fit, fit2)
                )
                yield self.decision
            else:  # stopped: the first run, complete, stays
                self.current = first
                note = f"the retry at seed {seed} was stopped: the first run is kept"
                finished = dataclasses.replace(finished, note=note)
        if not self.keep_labels:
            self.current.kept_labels = None
        if finished is not None:
            yield finished

    def _checked(
        self, run: GuardedTrainer, finished: FinishedEvent | None
    ) -> tuple[float | None, str]:
        """(smallest per-class Dice against the paint, the mask's ``paint_note``) of the run's
        exported mask; (None, "") for a run stopped or unchecked. The safeguard's labels serve
        when it checked; else the mask is predicted here as an export would, and kept for
        the front end to write."""
        if finished is None or finished.stopped or finished.note or self._stopped:
            return None, ""
        checked = run.kept_labels
        if checked is None:
            model, config = run.model, run.config
            try:
                pred = predict_volume(
                    model, self.image, device=config.device, probabilities=False,
                    progress=stop_between_batches(lambda: self._stopped),
                    paint=run.data.paint(), keep_parts=self.parts,
                )  # fmt: skip
            except PredictionStopped:
                return None, ""
            checked = CheckedLabels(
                model, pred.labels, config.axis, config.device, pred.removed, pred.paint_note
            )
            run.kept_labels = checked
        paint, axis = run.data.paint(), run.config.axis
        nested = run.config.nested
        dice = paint_dice(checked.labels, paint, axis, nested)
        return min(dice.values(), default=1.0), paint_note(checked.labels, paint, axis, nested)
