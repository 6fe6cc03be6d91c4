"""Issue 25: which rule should pick the next slice to paint (``engine/suggest.py``)?

Per dataset, K0 (painted slices, chosen as the accuracy benchmark chooses them: ``load_case``)
and seed: train the method on the K0 slices, predict the volume with the uncertainty the dock
shows by default (``DOCK_KIND``: TTA with the dock's ``TTA_SAMPLES``), score the slices and
ask each rule for its slice with the dock's own functions (``slice_scores``,
``suggest_next``; random: seeded with the run's seed).
Then, for each rule, paint its slice from the truth, retrain from scratch with the same seed
and score what a user exports (``exported_scores``: IoU per class, empty slices included).

Paired scoring: every row of a (dataset, K0, seed) is scored on the same slices, all but the
K0 painted ones and *all three* suggested slices, so no rule is scored on another rule's
painted slice and none is spared its own hardest one; the differences between rules are
paired by seed. The K0 model itself is scored there too (rule ``base``): the gain per rule.
Two rules that pick the same slice train the same data with the same seed; the first run's
scores are copied (``same_as``) instead of training again. Each training gets what a user
gets (the preset suggested by the image, ``dims`` 0): with K0 = 1 on the thin vessels that
includes the one-thin-slice recipe (twice the steps), which K0 + 1 slices do not get, so the
gain over ``base`` mixes the recipe with the slice there; the rules' comparison does not.

Rows go to ``--out`` after each training (a stopped run keeps them; a rerun skips the rows
present); ``--table`` prints mean IoU per rule with its spread over seeds and the paired
differences uncertainty - gap-middle and uncertainty - random, per seed.

    python -m benchmarks suggest_sim [--datasets ...] [--k0 1 2] [--seeds 0 1 2] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_segpl.engine import TrainConfig, Trainer, exported_scores, predict_volume, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.suggest import GAP, RANDOM, RULES, UNCERTAINTY, slice_scores, suggest_next
from napari_segpl.engine.uncertainty import TTA, TTA_SAMPLES, uncertainty_volume

from . import accuracy
from .accuracy import DATASETS, load_case

BASE = "base"
#: the uncertainty the dock predicts and shows by default, for every method (``results_panel``)
DOCK_KIND = TTA
#: what identifies a group of rows (one K0 training and one per rule)
GROUP = ("dataset", "k0", "seed", "method", "steps")


def _key(row: dict) -> tuple:
    return tuple(row[k] for k in GROUP)


def _paint(truth: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    """The truth on ``slices`` along ``axis``, 0 elsewhere."""
    sparse = np.zeros_like(truth)
    index: list = [slice(None)] * 3
    index[axis] = slices
    sparse[tuple(index)] = truth[tuple(index)]
    return sparse


def _train_predict(
    case: accuracy.Case, axis: int, painted: list[int], cfg: TrainConfig, kind: str | None
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Train on ``painted`` slices of the truth, predict the volume; the uncertainty of
    ``kind`` (None: no probabilities kept) and the timings and the trained configuration."""
    t0 = time.perf_counter()
    sparse = _paint(case.truth, axis, painted)
    trainer = Trainer(cfg, prepare_data(case.image.array, sparse, cfg, labelled=painted))
    for _ in trainer.run():
        pass
    model, t1 = trainer.model, time.perf_counter()
    pred = predict_volume(
        model, case.image.array, device=cfg.device, probabilities=kind is not None,
        tta_samples=TTA_SAMPLES if kind == TTA else 0,
    )  # fmt: skip
    unc = uncertainty_volume(pred, kind) if kind is not None else None
    info = {
        "train_seconds": round(t1 - t0, 2),
        "predict_seconds": round(time.perf_counter() - t1, 2),
        "config": model.config.to_dict(),
        "device": accuracy._device_name(trainer.device),
    }
    return pred.labels, unc, info


def _scores(labels: np.ndarray, truth: np.ndarray, axis: int, excluded: list[int]) -> dict:
    """IoU per class (every class of the truth) and its mean, over every slice not excluded."""
    classes = [int(c) for c in np.unique(truth) if c]
    whole = exported_scores(labels, truth, excluded, axis=axis, classes=classes)
    iou = {str(c): s["iou"] for c, s in whole.items()}
    return {
        "iou": iou,
        "mean_iou": statistics.mean(iou.values()),
        "scored_slices": truth.shape[axis] - len(excluded),
    }


def _save(out: Path, row: dict) -> None:
    """Append one row (re-read first: another process may have added rows meanwhile)."""
    rows = json.loads(out.read_text()) if out.exists() else []
    rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))


def run_group(
    name: str, k0: int, seed: int, method: str, steps: int | None, out: Path, rows: list[dict]
) -> list[dict]:
    """The K0 training and one training per rule for one dataset, K0 and seed; rows already
    in ``rows`` are kept, not run again. Returns the group's rows (old and new)."""
    axis = DATASETS[name]
    head = {"dataset": name, "axis": axis, "k0": k0, "seed": seed, "method": method, "steps": steps}
    group = {r["rule"]: r for r in rows if _key(r) == _key(head)}
    if all(rule in group for rule in (BASE, *RULES)):
        return list(group.values())
    case = load_case(name, axis, k0)
    preset = suggest_preset(case.image.array)
    cfg = TrainConfig.from_preset(
        preset, method=method, axis=axis, seed=seed, preview_every=0, steps=steps
    )
    n = case.truth.shape[axis]
    if BASE not in group:
        kind = DOCK_KIND
        labels, unc, info = _train_predict(case, axis, case.chosen, cfg, kind)
        scores = slice_scores(unc, labels, axis)
        picks = {r: suggest_next(n, case.chosen, r, scores, seed=seed) for r in RULES}
        suggested = {r: p.slice for r, p in picks.items()}
        excluded = sorted({*case.chosen, *suggested.values()})
        row = {**head, "rule": BASE, "painted": case.chosen, "added": None, "preset": preset}
        row.update(suggested=suggested, excluded=excluded)
        row.update(_scores(labels, case.truth, axis, excluded), kind=kind)
        row["slice_scores"] = [None if math.isnan(v) else round(float(v), 5) for v in scores]
        row["reasons"] = {r: p.reason for r, p in picks.items()}
        row["used_rule"] = {r: p.rule for r, p in picks.items()}
        row.update(info, torch=torch.__version__)
        _progress(row)
        _save(out, row)
        group[BASE] = row
    base = group[BASE]
    for rule in RULES:
        if rule in group:
            continue
        added = base["suggested"][rule]
        twin = next((r for r in group.values() if r["added"] == added), None)
        painted = sorted([*base["painted"], added])
        row = {**head, "rule": rule, "painted": painted, "added": added, "preset": preset}
        row.update(suggested=base["suggested"], excluded=base["excluded"])
        if twin is not None:  # the same data and seed: the same training
            keep = ("iou", "mean_iou", "scored_slices", "config", "device")
            row.update({k: twin[k] for k in keep}, same_as=twin["rule"], train_seconds=0.0)
            row["predict_seconds"] = 0.0
        else:
            labels, _, info = _train_predict(case, axis, painted, cfg, None)
            row.update(_scores(labels, case.truth, axis, base["excluded"]), **info)
        row["torch"] = torch.__version__
        _progress(row)
        _save(out, row)
        group[rule] = row
    return list(group.values())


def _progress(row: dict) -> None:
    seconds = row["train_seconds"] + row["predict_seconds"]
    what = "" if row["added"] is None else f" +slice {row['added']}"
    twin = f" (= {row['same_as']})" if row.get("same_as") else ""
    print(
        f"{row['dataset']} K0={row['k0']} seed={row['seed']} {row['rule']}{what}{twin}: "
        f"mean IoU {row['mean_iou']:.3f} on {row['scored_slices']} slices, {seconds:.1f} s",
        flush=True,
    )


def _spread(values: list[float]) -> str:
    """Mean and, with two seeds or more, the standard deviation over seeds."""
    mean = statistics.mean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def _paired(by_rule: dict[str, dict[int, float]], a: str, b: str) -> str:
    seeds = sorted(set(by_rule.get(a, {})) & set(by_rule.get(b, {})))
    if not seeds:
        return ""
    diffs = [by_rule[a][s] - by_rule[b][s] for s in seeds]
    text = ", ".join(f"{d:+.3f}" for d in diffs)
    return f"{text} (mean {statistics.mean(diffs):+.3f})"


def _added(base: dict, rule: str) -> str:
    """A rule's slice; starred where the rule fell back to another (uncertainty without a
    scored slice: gap-middle)."""
    used = base.get("used_rule", {}).get(rule, rule)
    return f"{base['suggested'][rule]}{'*' if used != rule else ''}"


def table(rows: list[dict]) -> str:
    """Per dataset, K0, method and steps: mean IoU per rule (± std over seeds), the slices
    each rule added per seed, and the paired differences per seed."""
    lines = [
        "| dataset | K0 | method | steps | seeds | base (K0 only) | gap-middle | uncertainty "
        "| random | added slice per seed (gap/unc/random; * fell back) "
        "| uncertainty - gap-middle, per seed | uncertainty - random, per seed |",
        "|---" * 12 + "|",
    ]
    groups = sorted({_key(r)[:2] + _key(r)[3:] for r in rows}, key=str)
    for name, k0, method, steps in groups:
        own = [r for r in rows if _key(r) == (name, k0, r["seed"], method, steps)]
        by_rule: dict[str, dict[int, float]] = {}
        for r in own:
            by_rule.setdefault(r["rule"], {})[r["seed"]] = r["mean_iou"]
        cells = [_spread(list(by_rule[r].values())) if r in by_rule else "" for r in (BASE, *RULES)]
        added = "; ".join(
            f"s{r['seed']}: " + "/".join(_added(r, rule) for rule in RULES)
            for r in sorted(own, key=lambda r: r["seed"])
            if r["rule"] == BASE
        )
        seeds = len(by_rule.get(BASE, {}))
        lines.append(
            f"| {name} | {k0} | {method} | {steps or 'preset'} | {seeds} | {' | '.join(cells)} "
            f"| {added} | {_paired(by_rule, UNCERTAINTY, GAP)} "
            f"| {_paired(by_rule, UNCERTAINTY, RANDOM)} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks suggest_sim")
    parser.add_argument("--datasets", nargs="+", default=sorted(DATASETS))
    parser.add_argument("--k0", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="segpl-vi")
    parser.add_argument("--steps", type=int, help="override the preset's steps (smoke runs)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/suggest_sim.json"))
    parser.add_argument("--table", action="store_true", help="only print the table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.table:
        for seed in args.seeds:  # a stopped run has whole seeds of every dataset
            for k0 in args.k0:
                for name in args.datasets:
                    rows = json.loads(args.out.read_text()) if args.out.exists() else []
                    run_group(name, k0, seed, args.method, args.steps, args.out, rows)
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    print(table(rows))
    return 0
