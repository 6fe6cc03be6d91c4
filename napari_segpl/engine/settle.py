"""Stopping a run once its pseudo labels and its loss have settled, instead of at a fixed count.

Every ``SETTLE_EVERY`` steps, once the pseudo-label loss has fully ramped in, the trainer cuts
the E-step's pseudo labels of a few probe slices (unlabelled slices spread over the volume) and
asks ``SettleMonitor.check`` whether they still move: the share of the probe's foreground whose
label changed since the last check (voxels that changed over voxels that are foreground in
either cut), and the relative change of the mean training loss between the last two windows of
``SETTLE_EVERY`` steps. Below ``config.settle`` and ``LOSS_TOLERANCE`` at ``PATIENCE`` checks in
a row, the run has settled. Whether it then stops is the trainer's ``stop_when_settled`` (so a
benchmark can see where a run would stop and still train it to the end).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: steps between two checks (the dock's preview runs every 10)
SETTLE_EVERY = 20
#: relative change of the mean loss between two windows that still counts as settled
LOSS_TOLERANCE = 0.05
#: checks in a row that must pass
PATIENCE = 2
#: probe slices at most
PROBES = 8


@dataclass
class SettleEvent:
    """One check: ``change`` is the share of the probe's foreground whose label moved since
    the last check (None at the first), ``loss_change`` the relative change of the mean loss,
    ``settled`` whether the run has now settled."""

    step: int
    change: float | None
    loss_change: float | None
    settled: bool


def probe_slices(unlabelled: list[int], count: int = PROBES) -> list[int]:
    """Up to ``count`` of the unlabelled slices, evenly spread over them."""
    ordered = sorted(set(unlabelled))
    if len(ordered) <= count:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, count).round().astype(int)
    return [ordered[i] for i in dict.fromkeys(picks.tolist())]


def label_change(before: np.ndarray, after: np.ndarray) -> float:
    """Voxels whose label differs over voxels that are foreground in either cut (0 when both
    are empty: nothing to move)."""
    union = np.count_nonzero((before > 0) | (after > 0))
    if union == 0:
        return 0.0
    return float(np.count_nonzero(before != after)) / union


def loss_change(losses: list[float], window: int) -> float | None:
    """Relative change of the mean loss between the last two windows (None: too few steps)."""
    if len(losses) < 2 * window:
        return None
    last = float(np.mean(losses[-window:]))
    previous = float(np.mean(losses[-2 * window : -window]))
    return abs(last - previous) / max(abs(previous), 1e-8)


class SettleMonitor:
    """The checks of one run (see the module's docstring)."""

    def __init__(
        self,
        threshold: float,
        every: int = SETTLE_EVERY,
        loss_tolerance: float | None = None,
        patience: int = PATIENCE,
    ) -> None:
        self.threshold, self.every, self.patience = threshold, every, patience
        self.loss_tolerance = LOSS_TOLERANCE if loss_tolerance is None else loss_tolerance
        self._labels: np.ndarray | None = None
        self._passed = 0
        self.settled_at: int | None = None

    def due(self, step: int, earliest: int | None) -> bool:
        """A check at this step: every ``every`` steps from ``earliest`` (None: not yet)."""
        return earliest is not None and step >= earliest and step % self.every == 0

    def check(self, step: int, labels: np.ndarray, losses: list[float]) -> SettleEvent:
        """The probe's labels now and the run's losses so far."""
        change = None if self._labels is None else label_change(self._labels, labels)
        self._labels = labels
        return self.record(step, change, loss_change(losses, self.every))

    def record(self, step: int, change: float | None, moved: float | None) -> SettleEvent:
        """A check from its two measures (``check``; or a recorded series replayed)."""
        ok = change is not None and moved is not None
        ok = ok and change <= self.threshold and moved <= self.loss_tolerance
        self._passed = self._passed + 1 if ok else 0
        if self._passed >= self.patience and self.settled_at is None:
            self.settled_at = step
        return SettleEvent(step, change, moved, self.settled_at is not None)
