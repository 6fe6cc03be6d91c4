"""Per-class uncertainty maps for any model's prediction, each named for what it is.

Every method gets at least the binary entropy of its probability p, which a user could compute
from the probability layer alone: the free baseline any other uncertainty must beat (issue 25).
A method that learns a threshold (SegPL-VI) also has the Monte-Carlo standard deviation of
``1(p > T_k)`` over K thresholds drawn from its learnt distribution, and a method that averages
members (the deep ensemble) the spread of its members' probabilities. The default kind is the
one that finds wrong voxels best where that was measured: the entropy of p for SegPL-VI too
(benchmarks/RESULTS.md (t)); the ensemble's own spread, not measured, stays its default.

Classes are sigmoid channels here, so each map is per class: (K, *shape), like
``Prediction.probabilities``. Front ends that show one layer take the maximum over classes
(``uncertainty_volume``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .methods import get_method

if TYPE_CHECKING:
    from .inference import Prediction
    from .methods import Method

ENTROPY, MC, SPREAD = "entropy", "mc", "spread"


@dataclass(frozen=True)
class UncertaintyKind:
    """What a map is: its key (``--uncertainty-kind``), a short title for layer names and plot
    axes, its unit, and the largest value it can take (for contrast limits)."""

    key: str
    title: str
    unit: str
    upper: float
    description: str


KINDS: dict[str, UncertaintyKind] = {
    ENTROPY: UncertaintyKind(
        ENTROPY, "entropy of p", "bits", 1.0,
        "binary entropy of each class's probability p, in bits (1 at p = 0.5, 0 at 0 and 1)",
    ),
    MC: UncertaintyKind(
        MC, "MC std of 1(p>T)", "", 0.5,
        "standard deviation of 1(p > T_k) over K thresholds drawn from the learnt N(mu, sigma)",
    ),
    SPREAD: UncertaintyKind(
        SPREAD, "ensemble spread", "", 0.5,
        "standard deviation of the ensemble members' probabilities (population std)",
    ),
}  # fmt: skip


def _method_class(method: str | type[Method] | Method) -> type[Method]:
    if isinstance(method, str):
        return get_method(method)
    return method if isinstance(method, type) else type(method)


def _ordered(mc: bool, spread: bool) -> list[str]:
    """The default first: the entropy of p before the MC std, since for SegPL-VI it finds wrong
    voxels far better in every run (AUROC 0.58-0.84 against 0.51-0.58, RESULTS.md (t)); the
    ensemble's spread (not measured) before the entropy."""
    kinds = [SPREAD] if spread else []
    return [*kinds, ENTROPY, *([MC] if mc else [])]


def kinds_for(method: str | type[Method] | Method) -> list[str]:
    """The kinds a method's predictions can give, its default first: the entropy of p always
    (first but for the ensemble); the Monte-Carlo std for a learnt threshold; the members'
    spread for an ensemble (its default)."""
    cls = _method_class(method)
    return _ordered(cls.learns_threshold, callable(getattr(cls, "spread", None)))


def default_kind(method: str | type[Method] | Method) -> str:
    """The kind ``--uncertainty`` writes and the dock shows unless told: the first of
    ``kinds_for``."""
    return kinds_for(method)[0]


def resolve_kind(method: str | type[Method] | Method, kind: str | None) -> str:
    """``kind`` checked against the method (None: its default), with an error that says which
    kinds the method has when it does not apply."""
    cls = _method_class(method)
    if kind is None:
        return default_kind(cls)
    if kind not in KINDS:
        raise ValueError(f"unknown uncertainty kind {kind!r}; one of {', '.join(KINDS)}")
    allowed = kinds_for(cls)
    if kind not in allowed:
        needs = {MC: "a learnt threshold (--method segpl-vi)", SPREAD: "--method ensemble"}[kind]
        raise ValueError(
            f"uncertainty kind {kind!r} ({KINDS[kind].title}) needs {needs}; a {cls.name} "
            f"model has: {', '.join(allowed)}"
        )
    return kind


def kinds_in(pred: Prediction) -> list[str]:
    """The kinds a prediction holds the data for, in the order of ``kinds_for`` (the first is
    the one a front end shows by default)."""
    return _ordered(pred.mc_std is not None, pred.spread is not None)


def layer_name(kind: str) -> str:
    """The name a layer of this kind gets, e.g. "uncertainty: entropy of p"."""
    return f"uncertainty: {KINDS[kind].title}"


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log2 p - (1 - p) log2 (1 - p) in bits, with 0 log 0 = 0; float32."""
    p = np.clip(np.asarray(p, dtype=np.float32), 0.0, 1.0)
    q = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(np.where(p > 0, p, 1.0)) + q * np.log2(np.where(q > 0, q, 1.0)))
    return h.astype(np.float32, copy=False)


def uncertainty_maps(pred: Prediction, kind: str) -> np.ndarray:
    """(K, *shape) float32 per-class uncertainty of ``kind`` from a prediction."""
    if kind == ENTROPY:
        return binary_entropy(pred.probabilities)
    if kind == MC:
        if pred.mc_std is None:
            raise ValueError(
                "no Monte-Carlo samples in this prediction: predict a segpl-vi model with "
                "mc_samples >= 1"
            )
        return pred.mc_std
    if kind == SPREAD:
        if pred.spread is None:
            raise ValueError("no member spread in this prediction: it needs an ensemble model")
        return pred.spread
    raise ValueError(f"unknown uncertainty kind {kind!r}; one of {', '.join(KINDS)}")


def uncertainty_volume(pred: Prediction, kind: str) -> np.ndarray:
    """One map for display and slice scores: the most uncertain class at each voxel."""
    return uncertainty_maps(pred, kind).max(axis=0)
