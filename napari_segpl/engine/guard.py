"""A collapse guard: warn when pseudo labels drift towards nothing or everything.

Pseudo labelling can lock in its own mistakes: its foreground can grow to many times the true one,
or collapse to all background on thin structures (benchmarks/RESULTS.md (g)). The guard compares a
running average of the pseudo labels' foreground fraction, per class, with the fraction on the
labelled slices. The bands are wide on purpose: unlabelled slices may legitimately hold less of a
structure than the slices a user chose to label (a tumour on 20 of 150 slices), so only a fall to a
fiftieth, or a rise to five times and by 5 points, warns.

A class can also be taken over by another while the foreground as a whole looks sane (on the
lungs in 3D, one lung's pseudo labels spread into the other with neither band crossed). So a
class that falls below half its painted fraction while another rises above one and a half
times its own warns too, as long as the classes together keep between half and twice their
painted fraction. With a threshold per class channel both lungs' channels could claim both
lungs, so that no class looked lost; exclusive pseudo labels (one class per pixel,
TrainConfig.exclusive) make such a takeover visible (benchmarks/RESULTS.md (c''), (g)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import TrainConfig, choose_dims
from .sampling import TrainingData, checked_labels, encode_target


@dataclass
class CollapseWarning:
    """Yielded by the trainer once per class and direction when the guard trips. ``source``
    says what collapsed: the pseudo labels while training ("pseudo labels"), the trained
    model's own prediction of the labelled slices once training has ended ("trained model";
    ``pseudo_fraction`` is then the predicted foreground fraction there), or the teacher's
    pseudo labels, which never became plausible enough to be used ("gate")."""

    step: int
    class_index: int
    direction: str
    pseudo_fraction: float
    labelled_fraction: float
    source: str = "pseudo labels"
    #: for a takeover: the class whose pseudo labels grow into this one's (0: none)
    other_class: int = 0

    @property
    def message(self) -> str:
        pseudo, painted = 100 * self.pseudo_fraction, 100 * self.labelled_fraction
        if self.source == "gate":
            state = {
                "taken over": "stayed taken over by another class",
                "taking over": "kept claiming another class's pixels",
            }.get(self.direction, f"stayed towards {self.direction}")
            return (
                f"pseudo labels of class {self.class_index} were never used: the teacher's "
                f"{state} ({pseudo:.2f} % against {painted:.2f} % painted), so that class "
                "learnt from the labelled slices only"
            )
        if self.other_class:
            return (
                f"step {self.step}: pseudo labels of class {self.class_index} are being taken "
                f"over by class {self.other_class} ({pseudo:.2f} % foreground against "
                f"{painted:.2f} % on the labelled slices): check the two classes"
            )
        if self.source == "pseudo labels":
            return (
                f"step {self.step}: pseudo labels of class {self.class_index} are collapsing "
                f"towards {self.direction} ({pseudo:.2f} % foreground against {painted:.2f} % "
                "on the labelled slices)"
            )
        # short enough for the dock's two-line warning
        return (
            f"the trained model predicts {self.direction} of class {self.class_index} on its "
            f"labelled slices ({pseudo:.2f} % against {painted:.2f} % painted): do not trust it"
        )


def labelled_fractions(data: TrainingData) -> list[float]:
    """Foreground fraction of each class channel over the labelled slices."""
    return painted_fractions(data.labels[data.labelled], data.num_classes, data.nested)


def painted_fractions(painted: np.ndarray, num_classes: int, nested: bool) -> list[float]:
    """Foreground fraction of each class channel over ``painted`` (the labelled slices)."""
    target = encode_target(painted, num_classes, nested)
    return [float(f) for f in target.reshape(num_classes, -1).mean(axis=1)]


def run_dims(labels: np.ndarray, config: TrainConfig, labelled: Sequence[int] | None) -> int:
    """The network a Trainer of ``config`` builds for ``labels`` (as ``prepare_data`` gets
    them): ``config.dims``, or with dims 0 ``choose_dims`` over the painted fractions, as the
    Trainer picks it; from the labels alone (nothing normalised), so that a front end can check
    the network's slice size before a run starts. DataError: what ``prepare_data`` raises."""
    if config.dims:
        return config.dims
    moved, slices, num_classes = checked_labels(labels, config, labelled)
    return choose_dims(painted_fractions(moved[slices], num_classes, config.nested))


class CollapseGuard:
    """Tracks an exponential moving average of the pseudo-label foreground fraction."""

    def __init__(
        self,
        reference: list[float],
        decay: float = 0.9,
        min_steps: int = 10,
        low: float = 0.02,
        high: float = 5.0,
        margin: float = 0.05,
        lost: float = 0.5,
        gained: float = 1.5,
    ) -> None:
        self.reference = np.asarray(reference, dtype=float)
        self.decay, self.min_steps = decay, min_steps
        self.low, self.high, self.margin = low, high, margin
        self.lost, self.gained = lost, gained
        self.average: np.ndarray | None = None
        self.warned: set[tuple[int, str]] = set()
        self.updates = 0

    def track(self, fractions: list[float]) -> np.ndarray:
        """Fold one step's pseudo-label foreground fractions into the running average."""
        current = np.asarray(fractions, dtype=float)
        if self.average is None:
            self.average = current
        else:
            self.average = self.decay * self.average + (1 - self.decay) * current
        self.updates += 1
        return self.average

    def plausible_classes(self) -> list[bool]:
        """Per class: is its running average inside every band (not towards nothing or
        everything, neither taken over by another nor taking another over)? All False before
        the first step."""
        if self.average is None:
            return [False] * len(self.reference)
        outside = self.implausible()
        return [c not in outside for c in range(1, len(self.reference) + 1)]

    def plausible(self) -> bool:
        """True when every class is inside every band."""
        return all(self.plausible_classes())

    def update(self, step: int, fractions: list[float]) -> list[CollapseWarning]:
        self.track(fractions)
        if self.updates < self.min_steps:
            return []
        warnings = []
        for c, (avg, ref) in enumerate(zip(self.average, self.reference, strict=True), start=1):
            direction = self.judge(float(avg), float(ref))
            if direction and (c, direction) not in self.warned:
                self.warned.add((c, direction))
                warnings.append(CollapseWarning(step, c, direction, float(avg), float(ref)))
        for c, other in self.takeovers(self.average):
            if (c, "taken over") not in self.warned:
                self.warned.add((c, "taken over"))
                avg, ref = float(self.average[c - 1]), float(self.reference[c - 1])
                warnings.append(CollapseWarning(step, c, "taken over", avg, ref, other_class=other))
        return warnings

    def takeovers(self, fractions: np.ndarray) -> list[tuple[int, int]]:
        """(class, other class) pairs, 1-based, where the class has fallen below ``lost`` of its
        reference while the other has risen above ``gained`` of its own, and the classes together
        stay within half to twice their painted fraction (one class's pixels went to another;
        a general fall or rise is the other bands' business); the other is the one that grew
        most."""
        fractions = np.asarray(fractions, dtype=float)
        known = self.reference > 0
        total = fractions[known].sum() / max(self.reference[known].sum(), 1e-12)
        if not 0.5 <= total <= 2.0:  # the foreground as a whole shrank or grew: not a swap
            return []
        ratio = np.full(len(self.reference), np.nan)
        ratio[known] = fractions[known] / self.reference[known]
        pairs = []
        for c in np.flatnonzero(ratio < self.lost):
            grown = [(ratio[o], o) for o in np.flatnonzero(ratio > self.gained) if o != c]
            if grown:
                pairs.append((int(c) + 1, int(max(grown)[1]) + 1))
        return pairs

    def judge(self, fraction: float, reference: float) -> str | None:
        """ "nothing", "everything" or None for one class's fraction against its reference."""
        if reference <= 0:
            return None
        if fraction < self.low * reference:
            return "nothing"
        if fraction > self.high * reference and fraction - reference > self.margin:
            return "everything"
        return None

    def check_model(
        self, step: int, predicted: list[float], painted: list[float]
    ) -> list[CollapseWarning]:
        """The trained model's foreground fractions on the labelled slices against the painted
        ones, with the same bands. Pseudo labels can look sane while the averaged weights that
        become the model predict nothing at all, so the end result is checked where the truth
        is known."""
        warnings = []
        for c, (fraction, ref) in enumerate(zip(predicted, painted, strict=True), start=1):
            direction = self.judge(fraction, ref)
            if direction:
                warnings.append(CollapseWarning(step, c, direction, fraction, ref, "trained model"))
        return warnings

    def implausible(self) -> dict[int, tuple[str, float, float]]:
        """class (1-based) -> (direction, average, reference) for every class outside the
        bands; both classes of a takeover ("taken over", "taking over")."""
        if self.average is None:
            return {}
        found = {}
        for c, (avg, ref) in enumerate(zip(self.average, self.reference, strict=True), start=1):
            direction = self.judge(float(avg), float(ref))
            if direction:
                found[c] = (direction, float(avg), float(ref))
        for c, other in self.takeovers(self.average):
            avg, ref = float(self.average[c - 1]), float(self.reference[c - 1])
            found.setdefault(c, ("taken over", avg, ref))
            # the class growing into another is no more trustworthy: its pseudo labels claim
            # the other's pixels (RESULTS.md (g))
            avg, ref = float(self.average[other - 1]), float(self.reference[other - 1])
            found.setdefault(other, ("taking over", avg, ref))
        return found


def gate_never_opened(step: int, gate: CollapseGuard, let_in: list[bool]) -> list[CollapseWarning]:
    """A warning for each class whose pseudo labels never became plausible enough to use."""
    closed = [c for c, ok in enumerate(let_in, start=1) if not ok]
    found = gate.implausible()
    return [
        CollapseWarning(step, c, *found[c], "gate")  # type: ignore[arg-type]
        for c in closed
        if c in found
    ]
