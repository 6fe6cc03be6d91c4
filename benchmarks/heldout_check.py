"""(x) rule 2: what one held-out slice buys the safeguard, on the recorded runs.

The user paints one more slice and marks it held out: it never trains, and the safeguard keeps
the semi-supervised model only if it also scores within ``HELDOUT_MARGIN`` Dice of the twin
there (``safeguard.decide``, unchanged). The recorded runs trained on the painted slices alone,
exactly as such a run would, so the decision and its outcome are computed from their saved
labels with no training. Which slice the user holds out: (a) the test slice (one holding the
structure) farthest from every painted slice, the lower on a tie; (b) each of 3 test slices
drawn at random (seed 0 per case). The kept model is scored on every slice but the painted and
the held-out one.

    python -m benchmarks heldout_check --rows ROWS.json [...] --preds DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from napari_segpl.engine.safeguard import BAND, decide, heldout_dice, volume_ratios

from .accuracy import TUNING, load_case
from .safeguard import SEMI, _whole

DRAWS = 3


def farthest(test: list[int], painted: list[int]) -> int:
    """The test slice farthest from every painted slice (the lower on a tie)."""
    return min(test, key=lambda s: (-min(abs(s - p) for p in painted), s))


def empty_ends(truth: np.ndarray, axis: int) -> list[int]:
    """(c), added after (a) and (b) were seen: the nearest slice with no structure beyond each
    end of the structure along the axis, where there is one (a slice a user can mark as
    labelled with nothing painted, then hold out)."""
    held = [s for s in range(truth.shape[axis]) if np.take(truth, s, axis=axis).any()]
    return [s for s in (held[0] - 1, held[-1] + 1) if 0 <= s < truth.shape[axis]]


def drawn(test: list[int], draws: int = DRAWS) -> list[int]:
    """``draws`` distinct test slices at random, the same for every method of a case."""
    rng = np.random.default_rng(0)
    return sorted(int(s) for s in rng.choice(test, size=min(draws, len(test)), replace=False))


def _load(preds: list[Path], stem: str) -> np.ndarray | None:
    for folder in preds:
        if (folder / stem).exists():
            return np.load(folder / stem)["labels"]
    return None


def outcome(method, semi, sup, case, axis, areas, held: list[int]) -> dict:
    """The safeguard's choice with slice(s) ``held`` held out, and each model's whole-volume
    IoU on every slice but the painted and held-out ones."""
    n = len(areas)
    ratios = volume_ratios(semi, sup, case.chosen, axis, areas)
    dice = {
        method: heldout_dice(semi, case.truth, held, axis, classes=n),
        "supervised": heldout_dice(sup, case.truth, held, axis, classes=n),
    }
    loss_only, _ = decide(method, ratios, BAND)
    with_slice, _ = decide(method, ratios, BAND, heldout=dice)
    scored = [*case.chosen, *held]
    semi_iou, sup_iou = (
        _whole(semi, case.truth, scored, axis),
        _whole(sup, case.truth, scored, axis),
    )
    pick = {method: semi_iou, "supervised": sup_iou}
    return {
        "held": held, "raw": semi_iou - sup_iou,
        "loss_only": pick[loss_only] - sup_iou, "heldout": pick[with_slice] - sup_iou,
        "kept_loss_only": loss_only, "kept_heldout": with_slice,
    }  # fmt: skip


def evaluate(rows: list[dict], preds: list[Path]) -> list[dict]:
    cases: dict = {}
    by_key = {(r["dataset"], r["k"], r["seed"], r["method"]): r for r in rows}
    out = []
    for (name, k, seed, method), row in sorted(by_key.items()):
        if method not in SEMI or (name, k, seed, "supervised") not in by_key:
            continue
        stem = f"{name}-k{k}-{{}}-s{seed}.npz"
        semi, sup = _load(preds, stem.format(method)), _load(preds, stem.format("supervised"))
        if semi is None or sup is None:
            continue
        axis = row["axis"]
        if (name, k) not in cases:
            cases[name, k] = load_case(name, axis, k)
        case = cases[name, k]
        moved = np.moveaxis(case.truth, axis, 0)
        n = int(case.truth.max())
        areas = [
            float(np.mean([(moved[s] == c).sum() for s in case.chosen])) for c in range(1, n + 1)
        ]
        args = (method, semi, sup, case, axis, areas)
        out.append({
            "dataset": name, "k": k, "seed": seed, "method": method,
            "set": "tuning" if name in TUNING else "validation",
            "farthest": outcome(*args, [farthest(case.test, case.chosen)]),
            "drawn": [outcome(*args, [s]) for s in drawn(case.test)],
            "empty": outcome(*args, ends) if (ends := empty_ends(case.truth, axis)) else None,
        })  # fmt: skip
    return out


def _cell(diffs: list[float], kept: int | None = None) -> str:
    pts = [100 * d for d in diffs]
    text = f"{statistics.mean(pts):+.1f}, {min(pts):+.1f}, {sum(p < -2 for p in pts)}"
    return text if kept is None else f"{text}, {kept}"


def summary(records: list[dict], fresh: set | None = None) -> str:
    """Per set: raw, loss-only and with one held-out slice, (a) the farthest slice and (b) the
    mean of 3 drawn slices per run (worst: the worst single draw): mean, worst, runs < -2 and
    runs where supervised was kept."""
    lines = [
        "| set | runs | n | slice | raw: mean, worst, < -2 | loss-only: mean, worst, < -2, sup "
        "kept | one held-out slice: mean, worst, < -2, sup kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in ("tuning", "validation"):
        for which in ("fresh", "all") if fresh else ("all",):
            rs = [r for r in records if r["set"] == group]
            if which == "fresh":
                rs = [r for r in rs if (r["dataset"], r["k"], r["seed"], r["method"]) in fresh]
            if not rs:
                continue
            # (c): runs without an empty end slice keep the loss-only outcome of (a)'s scoring
            empty = [r["empty"] or {**r["farthest"], "heldout": r["farthest"]["loss_only"],
                     "kept_heldout": r["farthest"]["kept_loss_only"]} for r in rs]  # fmt: skip
            for label, outs in (
                ("(a) farthest", [r["farthest"] for r in rs]),
                ("(c) empty ends", empty),
            ):
                lines.append(
                    f"| {group} | {which} | {len(rs)} | {label} "
                    f"| {_cell([o['raw'] for o in outs])} "
                    f"| {_cell([o['loss_only'] for o in outs], _sup(outs, 'kept_loss_only'))} "
                    f"| {_cell([o['heldout'] for o in outs], _sup(outs, 'kept_heldout'))} |"
                )
            means = {
                key: [statistics.mean(o[key] for o in r["drawn"]) for r in rs]
                for key in ("raw", "loss_only", "heldout")
            }
            worst = {key: min(o[key] for r in rs for o in r["drawn"]) for key in means}
            below = {key: sum(any(o[key] < -0.02 for o in r["drawn"]) for r in rs) for key in means}
            all_drawn = [o for r in rs for o in r["drawn"]]
            cells = []
            for key, kept in (
                ("raw", None),
                ("loss_only", "kept_loss_only"),
                ("heldout", "kept_heldout"),
            ):
                text = (
                    f"{100 * statistics.mean(means[key]):+.1f}, {100 * worst[key]:+.1f}, "
                    f"{below[key]}"
                )
                cells.append(
                    text if kept is None else f"{text}, {_sup(all_drawn, kept)}/{len(all_drawn)}"
                )
            lines.append(
                f"| {group} | {which} | {len(rs)} | (b) 3 drawn | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def _sup(outcomes: list[dict], key: str) -> int:
    return sum(o[key] == "supervised" for o in outcomes)


def table(records: list[dict]) -> str:
    lines = [
        "| set | dataset | K | seed | method | held (a) | raw | loss-only | held out (a) "
        "| held out (b): per draw | held out (c) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        records, key=lambda r: (r["set"], r["dataset"], r["k"], r["method"], r["seed"])
    ):
        a = r["farthest"]
        b = ", ".join(f"{o['held']}: {100 * o['heldout']:+.1f}" for o in r["drawn"])
        lines.append(
            f"| {r['set']} | {r['dataset']} | {r['k']} | {r['seed']} | {r['method']} | {a['held']} "
            f"| {100 * a['raw']:+.1f} | {100 * a['loss_only']:+.1f} | {100 * a['heldout']:+.1f} "
            f"({a['kept_heldout']}) | {b} | {_empty(r['empty'])} |"
        )
    return "\n".join(lines)


def _empty(o: dict | None) -> str:
    if o is None:
        return "no empty slice"
    return f"{o['held']}: {100 * o['heldout']:+.1f} ({o['kept_heldout']})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks heldout_check")
    parser.add_argument("--rows", type=Path, nargs="+", required=True)
    parser.add_argument("--preds", type=Path, nargs="+", required=True)
    parser.add_argument("--fresh", type=Path, nargs="*", default=[], help="rows made after (x)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = [r for path in args.rows for r in json.loads(path.read_text())]
    fresh = {
        (r["dataset"], r["k"], r["seed"], r["method"])
        for path in args.fresh
        for r in json.loads(path.read_text())
    }
    records = evaluate(rows, args.preds)
    print(summary(records, fresh or None), "\n")
    print(table(records))
    if args.out:
        args.out.write_text(json.dumps(records, indent=1))
    return 0
