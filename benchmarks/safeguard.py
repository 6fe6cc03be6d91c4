"""(q) The safeguard on the accuracy grid: what it would keep on each run, scored on the whole
volume but the painted slices.

The safeguard's supervised twin is exactly the accuracy benchmark's supervised run (same
slices, seed and preset), so its decision is computed from each (dataset, K, seed) pair of
rows and the labels the runs saved (``SEGPL_SAVE_PRED``), with no extra training. The band B is
chosen on the tuning set by the rule written before the runs (RESULTS.md (q)), then applied to
the validation set once.

    python -m benchmarks safeguard --rows ROWS.json [...] --preds DIR
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from napari_segpl.engine import exported_scores
from napari_segpl.engine.safeguard import decide, volume_ratios

from .accuracy import TUNING, VALIDATION, load_case

BANDS = (1.25, 1.5, 2.0, 3.0)
SEMI = ("segpl", "segpl-vi")
#: (r): the loss-only rule's band, (q)'s choice carried over, not re-tuned
LOSS_ONLY_BAND = 2.0


def _mean(values) -> float:
    return float(statistics.mean(values))


def _whole(pred: np.ndarray, truth: np.ndarray, painted: list[int], axis: int) -> float:
    classes = [int(c) for c in np.unique(truth) if c]
    scores = exported_scores(pred, truth, painted, axis=axis, classes=classes)
    return _mean(s["iou"] for s in scores.values())


def evaluate(rows: list[dict], preds: Path) -> list[dict]:
    """One record per semi-supervised row that has its supervised pair: both scores, the
    ratios the safeguard sees, and the whole-volume IoU it would keep for every band, whole
    model and per class."""
    cases: dict = {}
    out = []
    by_key = {(r["dataset"], r["k"], r["seed"], r["method"]): r for r in rows}
    for (name, k, seed, method), row in sorted(by_key.items()):
        sup = by_key.get((name, k, seed, "supervised"))
        if method not in SEMI or sup is None:
            continue
        if (name, k) not in cases:
            cases[name, k] = load_case(name, row["axis"], k)
        case, axis = cases[name, k], row["axis"]
        stem = f"{name}-k{k}-{{}}-s{seed}.npz"
        semi_pred = np.load(preds / stem.format(method))["labels"]
        sup_pred = np.load(preds / stem.format("supervised"))["labels"]
        n = int(case.truth.max())
        moved = np.moveaxis(case.truth, axis, 0)
        areas = [
            float(np.mean([(moved[s] == c).sum() for s in case.chosen])) for c in range(1, n + 1)
        ]
        ratios = volume_ratios(semi_pred, sup_pred, case.chosen, axis, areas)
        semi_iou, sup_iou = (
            _whole(semi_pred, case.truth, case.chosen, axis),
            _whole(sup_pred, case.truth, case.chosen, axis),
        )
        record = {
            "dataset": name, "k": k, "seed": seed, "method": method,
            "set": "tuning" if name in TUNING else "validation",
            "sup_whole": sup_iou, "semi_whole": semi_iou,
            "sup_fg": _mean(sup["iou"].values()), "semi_fg": _mean(row["iou"].values()),
            "semi_volume_ratio": row["volume_ratio"], "sup_volume_ratio": sup["volume_ratio"],
            "ratios": ratios, "guard": len(row["collapse_warnings"]),
            "kept": {}, "per_class": {},
        }  # fmt: skip
        for band in BANDS:
            kept = _two_sided(method, ratios, band)
            record["kept"][str(band)] = [kept, semi_iou if kept == method else sup_iou]
            flagged = [c for c, r in enumerate(ratios, start=1) if not 1 / band <= r <= band]
            mixed = semi_pred.copy()
            for c in flagged:
                mixed[mixed == c] = 0
                mixed[(sup_pred == c) & (mixed == 0)] = c
            record["per_class"][str(band)] = _whole(mixed, case.truth, case.chosen, axis)
        kept, _ = decide(method, ratios, LOSS_ONLY_BAND)
        record["loss_only"] = [kept, semi_iou if kept == method else sup_iou]
        record["confusion"] = confusion(semi_pred, sup_pred, case.chosen, axis, n)
        out.append(record)
    return out


def confusion(
    semi: np.ndarray, sup: np.ndarray, painted: list[int], axis: int, n: int
) -> list[float]:
    """(u): per class c, the fraction of the semi-supervised model's class-c voxels (every
    slice but the painted ones) that the twin gives to another class: two lungs trading
    labels show as a large fraction on both."""
    keep = [s for s in range(semi.shape[axis]) if s not in set(painted)]
    a, b = np.take(semi, keep, axis=axis), np.take(sup, keep, axis=axis)
    out = []
    for c in range(1, n + 1):
        mine = a == c
        out.append(float((mine & (b > 0) & (b != c)).sum() / max(int(mine.sum()), 1)))
    return out


CONFUSION = (0.2, 0.3, 0.5)


def confusion_rules(records: list[dict]) -> str:
    """(u): the loss-only rule plus "supervised when some class's confusion exceeds t", per
    set: mean and worst of kept minus supervised (points), runs below -2, supervised kept."""
    lines = [
        "| t | set | n | mean, worst, < -2, sup kept |",
        "|---|---|---|---|",
    ]
    for t in (None, *CONFUSION):
        for group in ("tuning", "validation"):
            rs = [r for r in records if r["set"] == group]
            if not rs:
                continue
            diffs, kept = [], 0
            for r in rs:
                fall = r["loss_only"][0] == "supervised" or (
                    t is not None and max(r["confusion"]) > t
                )
                kept += fall
                diffs.append(0.0 if fall else 100 * (r["semi_whole"] - r["sup_whole"]))
            lines.append(
                f"| {'loss-only' if t is None else f'{t:g}'} | {group} | {len(rs)} "
                f"| {_mean(diffs):+.1f}, {min(diffs):+.1f}, {sum(d < -2 for d in diffs)}, "
                f"{kept} |"
            )
    return "\n".join(lines)


def _two_sided(method: str, ratios: list[float], band: float) -> str:
    """(q)'s rule, removed from the product by (r): supervised when any class's ratio leaves
    [1/band, band]; kept here to reproduce (q)'s tables."""
    return method if all(1 / band <= r <= band for r in ratios) else "supervised"


def choose_band(records: list[dict]) -> float:
    """The rule of (q): on the tuning records, the band with the best worst case of kept minus
    supervised; among bands within 0.5 points of it, the best mean."""
    tuning = [r for r in records if r["set"] == "tuning"]
    if not tuning:
        raise SystemExit("no tuning-set pair yet: the band is chosen on the tuning set")
    stats = {}
    for band in BANDS:
        diffs = [r["kept"][str(band)][1] - r["sup_whole"] for r in tuning]
        stats[band] = (min(diffs), _mean(diffs))
    best_worst = max(w for w, _ in stats.values())
    near = [b for b, (w, _) in stats.items() if w >= best_worst - 0.005]
    return max(near, key=lambda b: stats[b][1])


def table(records: list[dict], band: float) -> str:
    lines = [
        "| set | dataset | K | seed | method | supervised whole (fg) | semi whole (fg) "
        "| semi/sup volume per class | kept | kept whole | kept - sup | per-class whole "
        "| semi/true volume | sup/true volume | guard warnings | loss-only kept - sup |",
        "|---" * 16 + "|",
    ]
    for r in sorted(
        records, key=lambda r: (r["set"], r["dataset"], r["k"], r["method"], r["seed"])
    ):
        kept, value = r["kept"][str(band)]
        ratios = ", ".join(f"{x:.2f}" for x in r["ratios"])
        vol = lambda d: ", ".join(f"{v:.2f}" for v in d.values())  # noqa: E731
        lines.append(
            f"| {r['set']} | {r['dataset']} | {r['k']} | {r['seed']} | {r['method']} "
            f"| {r['sup_whole']:.3f} ({r['sup_fg']:.3f}) | {r['semi_whole']:.3f} "
            f"({r['semi_fg']:.3f}) | {ratios} | {kept} | {value:.3f} "
            f"| {100 * (value - r['sup_whole']):+.1f} | {r['per_class'][str(band)]:.3f} "
            f"| {vol(r['semi_volume_ratio'])} | {vol(r['sup_volume_ratio'])} | {r['guard']} "
            f"| {r['loss_only'][0]} {100 * (r['loss_only'][1] - r['sup_whole']):+.1f} |"
        )
    return "\n".join(lines)


def summary(records: list[dict], band: float) -> str:
    """Per set and method: mean and worst of (semi - sup) raw and with the safeguard (whole
    model and per class), in IoU points, and how many runs the safeguard kept supervised in."""
    lines = [
        "| set | method | runs | raw: mean, worst | safeguard: mean, worst | per class: mean, "
        "worst | supervised kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in ("tuning", "validation"):
        for method in (*SEMI, "both"):
            rs = [r for r in records if r["set"] == group and method in (r["method"], "both")]
            if not rs:
                continue
            raw = [100 * (r["semi_whole"] - r["sup_whole"]) for r in rs]
            kept = [100 * (r["kept"][str(band)][1] - r["sup_whole"]) for r in rs]
            pc = [100 * (r["per_class"][str(band)] - r["sup_whole"]) for r in rs]
            n_sup = sum(r["kept"][str(band)][0] == "supervised" for r in rs)
            lines.append(
                f"| {group} | {method} | {len(rs)} | {_mean(raw):+.1f}, {min(raw):+.1f} "
                f"| {_mean(kept):+.1f}, {min(kept):+.1f} | {_mean(pc):+.1f}, {min(pc):+.1f} "
                f"| {n_sup} |"
            )
    return "\n".join(lines)


def bands(records: list[dict]) -> str:
    """Every band on each set: mean and worst of kept minus supervised (points)."""
    lines = ["| band | tuning mean, worst | validation mean, worst |", "|---|---|---|"]
    for band in BANDS:
        parts = []
        for group in ("tuning", "validation"):
            d = [
                100 * (r["kept"][str(band)][1] - r["sup_whole"])
                for r in records
                if r["set"] == group
            ]
            parts.append(f"{_mean(d):+.1f}, {min(d):+.1f}" if d else "")
        lines.append(f"| {band:g} | {parts[0]} | {parts[1]} |")
    return "\n".join(lines)


def rules(records: list[dict], band: float, fresh: set) -> str:
    """(r): raw, (q)'s two-sided rule and the loss-only rule per set, on the runs made after
    (r)'s rules were written (``fresh``) and on every run: mean and worst of kept minus
    supervised (points), runs more than 2 below, runs where supervised was kept."""
    lines = [
        "| set | runs | n | raw: mean, worst, < -2 | two-sided: mean, worst, < -2, sup kept "
        "| loss-only: mean, worst, < -2, sup kept |",
        "|---|---|---|---|---|---|",
    ]

    def cell(diffs, kept=None):
        text = f"{_mean(diffs):+.1f}, {min(diffs):+.1f}, {sum(d < -2 for d in diffs)}"
        return text if kept is None else f"{text}, {kept}"

    for group in ("tuning", "validation"):
        for which in ("fresh", "all"):
            rs = [r for r in records if r["set"] == group and (which == "all" or _key(r) in fresh)]
            if not rs:
                continue
            raw = [100 * (r["semi_whole"] - r["sup_whole"]) for r in rs]
            two = [100 * (r["kept"][str(band)][1] - r["sup_whole"]) for r in rs]
            loss = [100 * (r["loss_only"][1] - r["sup_whole"]) for r in rs]
            n_two = sum(r["kept"][str(band)][0] == "supervised" for r in rs)
            n_loss = sum(r["loss_only"][0] == "supervised" for r in rs)
            lines.append(
                f"| {group} | {which} | {len(rs)} | {cell(raw)} | {cell(two, n_two)} "
                f"| {cell(loss, n_loss)} |"
            )
    return "\n".join(lines)


def _key(r: dict) -> tuple:
    return (r["dataset"], r["k"], r["seed"], r["method"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks safeguard")
    parser.add_argument("--rows", type=Path, nargs="+", required=True)
    parser.add_argument("--preds", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write the records as JSON here")
    parser.add_argument("--band", type=float, help="report this band (default: the rule's)")
    parser.add_argument(
        "--fresh", type=Path, nargs="*", default=[], help="rows made after (r)'s rules"
    )
    args = parser.parse_args(argv)
    rows = [r for path in args.rows for r in json.loads(path.read_text())]
    records = evaluate(rows, args.preds)
    band = args.band or choose_band(records)
    print(
        f"band chosen on the tuning set: {band:g} (sets: {sorted(TUNING)} / {sorted(VALIDATION)})"
    )
    print(summary(records, band), "\n")
    print(bands(records), "\n")
    print(table(records, band))
    print("\n" + confusion_rules(records))
    if args.fresh:
        fresh = {_key(r) for path in args.fresh for r in json.loads(path.read_text())}
        print("\n" + rules(records, band, fresh))
    if args.out:
        args.out.write_text(json.dumps({"band": band, "records": records}, indent=1))
    return 0
