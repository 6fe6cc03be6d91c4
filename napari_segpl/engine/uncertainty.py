"""Per-class uncertainty maps for any model's prediction, each named for what it is.

Every method gets at least the binary entropy of its probability p, which a user could compute
from the probability layer alone: the free baseline any other uncertainty must beat (issue 25).
A method that learns a threshold (SegPL-VI) also has the Monte-Carlo standard deviation of
``1(p > T_k)`` over K thresholds drawn from its learnt distribution, and a method that averages
members (the deep ensemble) the spread of its members' probabilities. The default kind is the
one that finds wrong voxels best where that was measured: the entropy of p for SegPL-VI too
(benchmarks/RESULTS.md (t)); the ensemble's own spread stays its default (too few runs in
(aa) to reorder them).
Any method can also be asked for test-time augmentation (``tta``): the standard deviation of p
over M augmented copies of each slice (small rotations and scalings, each prediction mapped
back onto the original grid), a cheap uncertainty that costs M - 1 extra forward passes; the
dock predicts it by default, since it found wrong voxels better than the entropy of p on most
runs where both were measured (benchmarks/RESULTS.md (x), (ee), (ff), (gg); see
``tta_transforms``). A run with the safeguard has two models, the kept one and the other (the
supervised twin, or the semi-supervised model when the twin was kept); their TTA maps pool into
one std (``tta-twin``, ``predict_with_twin``), which sees where the two models disagree, a mask
wrong with confidence included. Scored on the mask the front ends export (the kept model's),
it found wrong voxels better than the kept model's TTA std (RESULTS.md (M2), (N2)), so they show it
by default after every safeguarded run.

Classes are sigmoid channels here, so each map is per class: (K, *shape), like
``Prediction.probabilities``. Front ends that show one layer take the maximum over classes
(``uncertainty_volume``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .augment import warp
from .methods import get_method

if TYPE_CHECKING:
    from .inference import Prediction
    from .methods import Method
    from .model import TrainedModel

ENTROPY, MC, SPREAD, TTA, TWIN = "entropy", "mc", "spread", "tta", "tta-twin"
#: TTA's default number of augmented predictions M (the first is the unaugmented one)
TTA_SAMPLES = 8
#: thresholds drawn for SegPL-VI's Monte-Carlo uncertainty by default (the paper's 5), in the
#: dock and every command alike
MC_SAMPLES = 5
#: where the twin kind comes from: only a run's own prediction has the second model
TWIN_NEEDS = (
    "the safeguard's two models, so only a run made with the safeguard has it (segpl train, "
    "or the dock's Predict after such a run), not a model read from a file"
)
#: TTA's small affine maps: a rotation drawn in +-TTA_DEGREES and a scale in 1 +- TTA_SCALE
TTA_DEGREES, TTA_SCALE = 5.0, 0.05


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
    TTA: UncertaintyKind(
        TTA, "TTA std of p", "", 0.5,
        f"TTA std of p over M small affine maps: population standard deviation of "
        f"each class's probability over M predictions of the slice (default {TTA_SAMPLES}; the "
        f"first unaugmented, the others rotated in-plane by up to "
        f"{TTA_DEGREES:g} degrees and scaled by up to {100 * TTA_SCALE:g} %, a seeded list), "
        f"each mapped back onto the original grid (bilinear, edges repeated) before comparing",
    ),
    TWIN: UncertaintyKind(
        TWIN, "TTA std with twin", "", 0.5,
        "TTA std of p pooled over a safeguarded run's two models: population standard "
        "deviation of each class's probability over the M TTA predictions of the model and "
        "the M of the other model the safeguard trained (the supervised twin, or the "
        "semi-supervised model when the twin was kept)",
    ),
}  # fmt: skip


def _method_class(method: str | type[Method] | Method) -> type[Method]:
    if isinstance(method, str):
        return get_method(method)
    return method if isinstance(method, type) else type(method)


def _ordered(mc: bool, spread: bool) -> list[str]:
    """The default first: the entropy of p before the MC std, since for SegPL-VI it found wrong
    voxels better on average (RESULTS.md (t)); the ensemble's spread before the entropy (too
    few runs in RESULTS.md (aa) to reorder them)."""
    kinds = [SPREAD] if spread else []
    return [*kinds, ENTROPY, *([MC] if mc else [])]


def kinds_for(method: str | type[Method] | Method) -> list[str]:
    """The kinds a method's predictions can give without extra passes, its default first: the
    entropy of p always (first but for the ensemble); the Monte-Carlo std for a learnt
    threshold; the members' spread for an ensemble (its default). TTA, which needs M - 1 more
    passes, is not listed here: see ``available_kinds``."""
    cls = _method_class(method)
    return _ordered(cls.learns_threshold, callable(getattr(cls, "spread", None)))


def available_kinds(method: str | type[Method] | Method) -> list[str]:
    """Every kind a method's model can be asked for: its own (``kinds_for``) and TTA, which
    any model has at the cost of M - 1 extra forward passes."""
    return [*kinds_for(method), TTA]


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
    allowed = available_kinds(cls)
    if kind not in allowed:
        needs = {
            MC: "a learnt threshold (--method segpl-vi)", SPREAD: "--method ensemble",
            TWIN: TWIN_NEEDS,
        }[kind]  # fmt: skip
        raise ValueError(
            f"uncertainty kind {kind!r} ({KINDS[kind].title}) needs {needs}; a {cls.name} "
            f"model has: {', '.join(allowed)}"
        )
    return kind


def kinds_in(pred: Prediction) -> list[str]:
    """The kinds a prediction holds the data for, in the order of ``kinds_for`` (the first is
    the one a front end shows by default)."""
    own = _ordered(pred.mc_std is not None, pred.spread is not None)
    extra = [k for k, a in ((TTA, pred.tta_std), (TWIN, pred.tta_twin_std)) if a is not None]
    return own + extra


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
    if kind == TTA:
        if pred.tta_std is None:
            raise ValueError("no TTA in this prediction: predict with tta_samples >= 2")
        return pred.tta_std
    if kind == TWIN:
        if pred.tta_twin_std is None:
            raise ValueError(f"no twin in this prediction: {TWIN_NEEDS}")
        return pred.tta_twin_std
    raise ValueError(f"unknown uncertainty kind {kind!r}; one of {', '.join(KINDS)}")


def uncertainty_volume(pred: Prediction, kind: str) -> np.ndarray:
    """One map for display and slice scores: the most uncertain class at each voxel."""
    return uncertainty_maps(pred, kind).max(axis=0)


def pooled_std(means: list[np.ndarray], stds: list[np.ndarray]) -> np.ndarray:
    """Population std over equal-sized groups of predictions, from each group's mean and
    population std: the mean within-group variance plus the variance of the group means.
    Two models' TTA moments give the std over all their TTA maps (RESULTS.md (I2), (M2))."""
    m = np.stack([np.asarray(a, dtype=np.float32) for a in means])
    s = np.stack([np.asarray(a, dtype=np.float32) for a in stds])
    var = (s**2).mean(axis=0) + m.var(axis=0)
    return np.sqrt(var).astype(np.float32, copy=False)


def predict_with_twin(
    model: TrainedModel,
    twin: TrainedModel,
    image: np.ndarray,
    *,
    tta_samples: int = TTA_SAMPLES,
    progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> Prediction:
    """``model``'s prediction with TTA and ``tta_twin_std``: the TTA std pooled with
    ``twin``'s (the same transforms, axis, device and batches; ``pooled_std``). ``kwargs`` go
    to ``predict_volume`` for ``model``; the twin's pass keeps nothing but its TTA moments.
    ``progress`` sees one count over both passes."""
    from .inference import predict_volume

    def part(first: bool) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        return lambda done, total: progress(done + (0 if first else total), 2 * total)

    shared = {k: kwargs[k] for k in ("axis", "batch_size", "device", "seed", "tta") if k in kwargs}
    pred = predict_volume(
        model, image, tta_samples=tta_samples, tta_mean=True, progress=part(True), **kwargs
    )
    other = predict_volume(
        twin, image, tta_samples=tta_samples, tta_mean=True, probabilities=False,
        progress=part(False), **shared,
    )  # fmt: skip
    assert pred.tta_mean is not None and pred.tta_std is not None
    assert other.tta_mean is not None and other.tta_std is not None
    pred.tta_twin_std = pooled_std([pred.tta_mean, other.tta_mean], [pred.tta_std, other.tta_std])
    pred.tta_mean = None  # (K, *shape) float32 a user does not see
    return pred


# --- test-time augmentation ----------------------------------------------------------------


@dataclass(frozen=True)
class TTATransform:
    """One in-plane augmentation of slices (..., H, W): an affine map (a rotation by
    ``degrees`` and a scale about the slice's centre, in pixel units so that a rotation stays
    a rotation on a non-square slice), then flips of rows and columns. ``apply`` moves an image
    onto the augmented grid and ``invert`` moves a prediction made there back: flips exactly,
    the affine map by bilinear sampling with the edge values repeated outside the slice."""

    flip_rows: bool = False
    flip_cols: bool = False
    degrees: float = 0.0
    scale: float = 1.0

    @property
    def identity(self) -> bool:
        return not (self.flip_rows or self.flip_cols) and self.degrees == 0 and self.scale == 1

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._flip(self._warp(x, inverse=False))

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        return self._warp(self._flip(y), inverse=True)

    def _flip(self, x: torch.Tensor) -> torch.Tensor:
        dims = [d for d, on in ((-2, self.flip_rows), (-1, self.flip_cols)) if on]
        return torch.flip(x, dims) if dims else x

    def _warp(self, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        """Sample ``x`` at A p for every output pixel p (centred pixel coordinates), A the
        rotation over the scale (its inverse with ``inverse``), as grid_sample wants it."""
        if self.degrees == 0 and self.scale == 1:
            return x
        h, w = x.shape[-2:]
        a = math.radians(-self.degrees if inverse else self.degrees)
        s = self.scale if inverse else 1.0 / self.scale
        cos, sin = s * math.cos(a), s * math.sin(a)
        # pixel units -> grid_sample's [-1, 1] units per axis: A' = D A D^-1, D = diag(2/w, 2/h)
        theta = torch.tensor(
            [[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype, device=x.device
        )
        return warp(x, theta.expand(x.shape[0], 2, 3), padding="border")


def tta_transforms(samples: int = TTA_SAMPLES, seed: int = 0) -> list[TTATransform]:
    """The M transforms TTA averages over, the same for a given ``samples`` and ``seed`` (a
    generator of its own: no global random state is read or moved). The first is the
    identity (the prediction itself); then each a rotation in +-TTA_DEGREES and a scale in
    1 +- TTA_SCALE. No flips: a mirrored slice swaps left and right organs (the two lungs), and
    with flips TTA found wrong voxels worse on both sets (benchmarks/RESULTS.md (x)). The
    transform itself can still flip (``TTATransform``), which the tests use as an exact check."""
    if samples < 1:
        raise ValueError(f"TTA needs at least one sample, got {samples}")
    rng = np.random.default_rng(seed)
    out = [TTATransform()]
    for _ in range(samples - 1):
        degrees = float(rng.uniform(-TTA_DEGREES, TTA_DEGREES))
        scale = float(1.0 + rng.uniform(-TTA_SCALE, TTA_SCALE))
        out.append(TTATransform(False, False, degrees, scale))
    return out
