"""(vv), issue 25: do the data say the threshold should move?

For a trained model's probabilities: the exported whole-volume IoU (every slice but the painted
ones, the parts touching the paint kept, as ``accuracy`` scores) when the labels are cut at
other thresholds than the fixed 0.5: one cut for every class, and each class's own cut with
the others at ``BASE``. The best of these is an oracle (it reads the truth); beside it, the cut
a user's data could choose without the truth: per class, the one that best reproduces each
painted slice's paint on its unpainted neighbours (``neighbour_cut``). ``accuracy`` adds these
to a row when ``SEGPL_CUT_SWEEP`` is set; no training of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_segpl.engine import exported_scores, keep_painted_parts
from napari_segpl.engine.inference import labels_from_probabilities
from napari_segpl.engine.metrics import class_mask

#: the thresholds tried (the fixed threshold, 0.5, among them)
CUTS = (0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9)
BASE = 0.5


def _labels(prob: np.ndarray, cuts: np.ndarray, paint, axis: int, nested: bool) -> np.ndarray:
    labels = labels_from_probabilities(prob, cuts.reshape((-1,) + (1,) * (prob.ndim - 1)), nested)
    keep_painted_parts(labels, paint, axis, nested)
    return labels


def neighbours(painted: Sequence[int], n: int) -> dict[int, int]:
    """Unpainted slice -> the painted slice next to it (s - 1 and s + 1 of each painted s,
    inside 0..n-1); a slice between two painted ones takes the lower."""
    out: dict[int, int] = {}
    for s in sorted(painted):
        for t in (s - 1, s + 1):
            if 0 <= t < n and t not in set(painted):
                out.setdefault(t, s)
    return out


def neighbour_dice(
    labels: np.ndarray, paint: Mapping[int, np.ndarray], axis: int, c: int, nested: bool = False
) -> float:
    """Dice of class c between each painted slice's neighbours (``neighbours``) and that
    slice's paint, pooled over the neighbours (1.0 where both are empty)."""
    pairs = neighbours(list(paint), labels.shape[axis])
    inter = total = 0
    for t, s in pairs.items():
        a = class_mask(np.take(labels, t, axis=axis), c, nested)
        b = class_mask(paint[s], c, nested)
        inter += int(np.logical_and(a, b).sum())
        total += int(a.sum() + b.sum())
    return 2 * inter / total if total else 1.0


def _closest(scores: Mapping[float, float]) -> float:
    """The cut with the best score; among equals the one nearest BASE."""
    best = max(scores.values())
    return min((abs(t - BASE), t) for t, v in scores.items() if v >= best - 1e-12)[1]


def cut_sweep(
    prob: np.ndarray,
    truth: np.ndarray,
    painted: Sequence[int],
    paint: Mapping[int, np.ndarray],
    axis: int,
    nested: bool = False,
) -> dict:
    """The sweep's record for one run (``prob``: (K, *shape) sigmoid probabilities)."""
    k = prob.shape[0]
    classes = list(range(1, k + 1))

    done: dict[tuple[float, ...], tuple[dict[int, float], dict[int, float]]] = {}

    def whole(cuts: np.ndarray) -> tuple[dict[int, float], dict[int, float]]:
        """(exported IoU, neighbour Dice) per class of the labels cut at ``cuts``; every
        class at BASE comes up once per class and once shared, and is labelled once."""
        key = tuple(float(t) for t in cuts)
        if key not in done:
            labels = _labels(prob, cuts, paint, axis, nested)
            scores = exported_scores(labels, truth, painted, axis=axis, classes=classes)
            dice = {c: neighbour_dice(labels, paint, axis, c, nested) for c in classes}
            done[key] = {c: s["iou"] for c, s in scores.items()}, dice
        return done[key]

    shared = {t: float(np.mean(list(whole(np.full(k, t))[0].values()))) for t in CUTS}
    own: dict[int, dict[float, float]] = {c: {} for c in classes}
    near: dict[int, dict[float, float]] = {c: {} for c in classes}
    for c in classes:
        for t in CUTS:
            cuts = np.full(k, BASE)
            cuts[c - 1] = t
            iou, dice = whole(cuts)
            own[c][t], near[c][t] = iou[c], dice[c]
    chosen = np.array([_closest(near[c]) for c in classes])
    at_chosen, _ = whole(chosen)
    return {
        "sweep_shared": {str(t): round(v, 5) for t, v in shared.items()},
        "sweep_class": {str(c): {str(t): round(v, 5) for t, v in own[c].items()} for c in classes},
        "sweep_neighbour_dice": {
            str(c): {str(t): round(v, 5) for t, v in near[c].items()} for c in classes
        },
        "oracle_cut": {str(c): _closest(own[c]) for c in classes},
        "neighbour_cut": {str(c): float(t) for c, t in zip(classes, chosen, strict=True)},
        "neighbour_cut_iou": {str(c): round(v, 5) for c, v in at_chosen.items()},
    }


def _gains(row: dict) -> dict:
    """Points over the fixed cut, mean over the classes: the oracle's per-class cuts (each
    class at its best with the others at BASE) and the neighbour cut's exported IoU."""
    classes = sorted(row["sweep_class"], key=int)
    base = np.mean([row["sweep_class"][c][str(BASE)] for c in classes])
    oracle = np.mean([max(row["sweep_class"][c].values()) for c in classes])
    near = np.mean([row["neighbour_cut_iou"][c] for c in classes])
    sides = [
        np.sign(row["oracle_cut"][c] - BASE) == np.sign(row["neighbour_cut"][c] - BASE)
        for c in classes
        if row["oracle_cut"][c] != BASE
    ]
    return {
        "base": 100 * base, "oracle": 100 * (oracle - base), "neighbour": 100 * (near - base),
        "sides": (sum(sides), len(sides)),
    }  # fmt: skip


def report(rows: list[dict]) -> str:
    from .accuracy import TUNING

    lines = [
        "| set | dataset | K | seed | IoU at 0.5 | oracle gain | neighbour gain | oracle cuts "
        "| neighbour cuts | head mu |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in sorted(rows, key=lambda r: (r["dataset"], r["k"], r["seed"])):
        if "sweep_class" not in r:
            continue
        g = _gains(r)
        group = "tuning" if r["dataset"] in TUNING else "validation"
        groups.setdefault(group, {}).setdefault(r["dataset"], []).append(g)
        cuts = ", ".join(f"{v:g}" for _, v in sorted(r["oracle_cut"].items()))
        near = ", ".join(f"{v:g}" for _, v in sorted(r["neighbour_cut"].items()))
        mu = ", ".join(f"{v:.3f}" for v in r.get("mu_per_class", []))
        lines.append(
            f"| {group} | {r['dataset']} | {r['k']} | {r['seed']} | {g['base']:.1f} "
            f"| {g['oracle']:+.1f} | {g['neighbour']:+.1f} | {cuts} | {near} | {mu} |"
        )
    lines.append("")
    for group, sets in sorted(groups.items()):
        every = [g for gs in sets.values() for g in gs]
        near = [g["neighbour"] for g in every]
        same = sum(g["sides"][0] for g in every), sum(g["sides"][1] for g in every)
        per = "; ".join(
            f"{name} {np.mean([g['neighbour'] for g in gs]):+.2f}" for name, gs in sets.items()
        )
        sd = float(np.std(near, ddof=1)) if len(near) > 1 else 0.0
        oracle = np.mean([g["oracle"] for g in every])
        lines.append(
            f"- {group} ({len(every)} runs): oracle gain {oracle:+.2f}; "
            f"neighbour gain {np.mean(near):+.2f} (SD {sd:.2f}, worst {min(near):+.1f}; per "
            f"volume: {per}); neighbour cut on the oracle's side of {BASE:g} in {same[0]} of "
            f"{same[1]} classes where the oracle moved"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m benchmarks cut_sweep FILE.json [...]``: the table and the per-set lines."""
    import json
    from pathlib import Path

    rows = [r for f in argv for r in json.loads(Path(f).read_text())]
    print(report(rows))
    return 0
