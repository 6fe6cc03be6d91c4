"""The next slice to paint: a per-slice uncertainty score, and the rules that pick a slice.

The score of a slice along the labelling axis is the mean uncertainty over the voxels of that
slice inside the *predicted structure's region*: the voxels predicted as any class, grown in
the slice's plane by ``radius`` voxels (a square of side 2 radius + 1). Why a region and a mean:
most of a CT or MRI slice is background the network is sure of, so a mean over the whole slice
would rank slices by how much structure they show, not by how unsure the model is about it; the
grown band takes in the structure's border, where the errors are (the border of a thin
structure is most of it), and the mean makes a large cross-section no more urgent than a
small one. The region grows in-plane only, so a slice's score never depends on its neighbours
(slice spacing is often several times the in-plane spacing). A slice with no predicted
structure has no score (NaN) and is never picked by the uncertainty rule.

Rules (``RULES``), each choosing among slices that are not labelled:

- ``gap-middle``: the middle of the longest run of unlabelled slices, the volume's two ends
  included (with one painted slice there is no gap between painted slices; the run before the
  first and after the last count as gaps). Ties: the earliest run. This is fixed spacing.
- ``uncertainty``: the unlabelled slice with the highest score.
- ``random``: uniformly among unlabelled slices (a seeded generator).

``DEFAULT_RULE`` is ``gap-middle``, fixed spacing: the simulation of issue 25 (add the suggested
slice, retrain, score the rest; ``benchmarks/suggest_sim.py``) has not found a rule that beats it
on every volume measured, and published work found uncertainty picks no better for slices.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

GAP, UNCERTAINTY, RANDOM = "gap-middle", "uncertainty", "random"
RULES = (GAP, UNCERTAINTY, RANDOM)
#: fixed spacing, the published baseline; no simulated rule beat it on every volume
DEFAULT_RULE = GAP
#: voxels the predicted structure grows by, in-plane, before its uncertainty is averaged
RADIUS = 3


@dataclass(frozen=True)
class Suggestion:
    """The slice a rule picked and why: its score (NaN without scores or structure), its
    distance to the nearest labelled slice (None when none is labelled) and that slice."""

    slice: int
    rule: str
    score: float
    distance: int | None
    nearest: int | None
    reason: str


def grow_in_plane(mask: np.ndarray, radius: int) -> np.ndarray:
    """(n, h, w) boolean mask grown by ``radius`` voxels along axes 1 and 2 (a square
    structuring element: separable, so 4 radius shifted ORs on booleans, no copy of floats)."""
    out = np.asarray(mask, dtype=bool)
    for axis in (1, 2):
        grown = out.copy()
        length = out.shape[axis]
        for shift in range(1, min(radius, length - 1) + 1):
            head = [slice(None)] * 3
            tail = [slice(None)] * 3
            head[axis], tail[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(head)] |= out[tuple(tail)]
            grown[tuple(tail)] |= out[tuple(head)]
        out = grown
    return out


def slice_scores(
    uncertainty: np.ndarray, labels: np.ndarray, axis: int, radius: int = RADIUS
) -> np.ndarray:
    """(n,) float64: per slice along ``axis``, the mean of ``uncertainty`` (3D, one value a
    voxel) over the predicted structure (``labels`` > 0) grown in-plane by ``radius``; NaN
    where a slice has no predicted structure."""
    if uncertainty.shape != labels.shape or uncertainty.ndim != 3:
        raise ValueError(
            f"uncertainty {uncertainty.shape} and labels {labels.shape} must be one 3D shape"
        )
    region = grow_in_plane(np.moveaxis(np.asarray(labels) > 0, axis, 0), radius)
    values = np.moveaxis(np.asarray(uncertainty), axis, 0)
    scores = np.full(region.shape[0], np.nan)
    for s, inside in enumerate(region):  # slice by slice: no float copy of the volume
        if inside.any():
            scores[s] = values[s][inside].mean(dtype=np.float64)
    return scores


def rank_by_score(scores: np.ndarray, labelled: Iterable[int]) -> list[tuple[int, float]]:
    """Unlabelled slices with a score, highest first (ties: the earlier slice)."""
    skip = set(int(s) for s in labelled)
    ranked = [(s, float(v)) for s, v in enumerate(scores) if s not in skip and math.isfinite(v)]
    return sorted(ranked, key=lambda item: (-item[1], item[0]))


def largest_gap_middle(n: int, labelled: Iterable[int]) -> tuple[int, tuple[int, int]]:
    """The middle of the longest run of unlabelled slices in 0..n-1 (ends included; ties: the
    earliest run), and that run's first and last slice."""
    marks = sorted({int(s) for s in labelled if 0 <= int(s) < n})
    best: tuple[int, int] | None = None
    start = 0
    for stop in [*marks, n]:
        if stop > start and (best is None or stop - start > best[1] - best[0] + 1):
            best = (start, stop - 1)
        start = stop + 1
    if best is None:
        raise ValueError("every slice is labelled: there is no slice left to paint")
    return (best[0] + best[1]) // 2, best


def suggest_next(
    n: int,
    labelled: Iterable[int],
    rule: str = DEFAULT_RULE,
    scores: np.ndarray | None = None,
    seed: int | None = None,
) -> Suggestion:
    """The next slice to paint among ``n`` slices by ``rule``; ``scores`` (from
    ``slice_scores``, the curve the dock draws) are needed by the uncertainty rule and, when
    given, reported for any rule. Without a scored unlabelled slice the uncertainty rule falls
    back to gap-middle and says so."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; one of {', '.join(RULES)}")
    marks = sorted({int(s) for s in labelled if 0 <= int(s) < n})
    if scores is not None and len(scores) != n:
        raise ValueError(f"{len(scores)} scores for {n} slices")
    free = [s for s in range(n) if s not in set(marks)]
    if not free:
        raise ValueError("every slice is labelled: there is no slice left to paint")
    used, why = rule, ""
    if rule == UNCERTAINTY:
        if scores is None:
            raise ValueError("the uncertainty rule needs slice scores: predict first")
        ranked = rank_by_score(scores, marks)
        if ranked:
            chosen = ranked[0][0]
            why = f"highest uncertainty of {len(ranked)} unlabelled slices with structure"
        else:
            used = GAP
            why = "no unlabelled slice holds predicted structure: gap-middle instead; "
    if rule == RANDOM:
        chosen = int(np.random.default_rng(seed).choice(free))
        why = f"random among {len(free)} unlabelled slices"
    if used == GAP:
        chosen, (first, last) = largest_gap_middle(n, marks)
        why += f"middle of the largest gap (slices {first}-{last})"
    score = float(scores[chosen]) if scores is not None else math.nan
    nearest = min(marks, key=lambda m: (abs(m - chosen), m)) if marks else None
    distance = None if nearest is None else abs(nearest - chosen)
    return Suggestion(chosen, used, score, distance, nearest, why)


def describe(suggestion: Suggestion, unit: str = "") -> str:
    """One status line: the slice, why, its score and its distance to the nearest labelled."""
    s = suggestion
    score = (
        "no score" if math.isnan(s.score) else f"score {s.score:.3f}{' ' + unit if unit else ''}"
    )
    where = (
        "no labelled slice yet"
        if s.nearest is None
        else f"{s.distance} slice{'s' if s.distance != 1 else ''} from labelled slice {s.nearest}"
    )
    return f"slice {s.slice}: {s.reason}; {score}; {where}"
