"""One table and one set of curves from several ``segpl compare`` folders of the same request.

``compare_grid`` runs one method beside its own supervised run per process (so a grid can be
split over sessions and machines), which leaves one folder per method. This merges their
``results.json`` into one comparison and writes what ``segpl compare`` writes (table.md,
table.csv, results.json, ood.png, adversarial.png, reliability.png) for all the methods at once.

The folders must score the same held-out slices, axis, classes, curve points and training
options (the method and its own parameters aside): otherwise the numbers do not compare and the
merge stops with the first difference. Their seeds may differ (``segpl compare --first-seed``
runs more seeds of a compare in another folder): the table is over every seed found. An option
only some methods read (SegPL-VI's prior) may differ too: the first folder's value holds, and
those methods' runs are taken only from folders that agree with it (the others' are dropped,
with a note), so the merged table never mixes two priors. A (method, seed) present in several
folders is taken from the first; where a later copy scores differently (supervised training is
deterministic with one thread and identical inputs, so its copies should agree), the merge says
so. Each run keeps the cost ratio of its own folder (its s/step over the supervised run timed
in the same process), because step times from different processes on a shared machine do not
compare; the table's footnote says so.

    python -m benchmarks compare_merge DIR [DIR ...] --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from napari_segpl.compare_cli import result_files, write_atomic
from napari_segpl.engine.compare import CompareResult, RunResult
from napari_segpl.engine.compare_store import (
    completed,
    old_hd95_note,
    run_from_json,
    scored_before_hd95_rule,
)

#: what every folder must share for its numbers to compare
SHARED = ("holdout", "axis", "num_classes", "gammas", "epsilons")
#: training options only these methods read (an ensemble's members are supervised ones, as
#: compare_grid requests them: results.json does not record another member method)
READ_BY = {key: ("segpl-vi",) for key in ("prior_mu", "prior_sigma", "threshold_signal")}
#: training options that differ from one folder to the next by design
PER_METHOD = ("method", "extra")
TIMING = (
    "Merged from one compare per method (each beside its own supervised run, in its own "
    "process): s/step and x supervised are each run's own, over the supervised run timed in "
    "the same process."
)


def _run(data: dict[str, Any]) -> RunResult:
    """A run as ``results.json`` holds it: its own folder's cost ratio kept, ``mean_iou`` (a
    property of the run) dropped."""
    return run_from_json({k: v for k, v in data.items() if k != "mean_iou"})


def _options(config: dict[str, Any]) -> dict[str, Any]:
    """The training options, a field added since the folder was written at its default."""
    config = completed({"config": config})["config"]
    return {k: v for k, v in config.items() if k not in PER_METHOD}


def merge(results: list[dict[str, Any]]) -> tuple[CompareResult, list[str]]:
    """One comparison from several ``results.json`` contents (ValueError where they differ in
    what they scored or how they trained), and notes on duplicate runs that disagree."""
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]
    for i, other in enumerate(results[1:], start=2):
        for key in SHARED:
            if other[key] != first[key]:
                raise ValueError(f"folder {i} differs from the first in {key}: "
                                 f"{other[key]} against {first[key]}")  # fmt: skip
    skip: list[set[str]] = [set()]  # per folder: methods whose runs do not count
    notes = []
    for i, other in enumerate(results[1:], start=2):
        a, b = _options(first["config"]), _options(other["config"])
        changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if any(k not in READ_BY for k in changed):
            refused = ", ".join(k for k in changed if k not in READ_BY)
            raise ValueError(f"folder {i} trained with other options: {refused}")
        skip.append({m for k in changed for m in READ_BY[k]})
        for k in changed:
            notes.append(f"folder {i} has {k} {b.get(k)} against {a.get(k)}: its "
                         f"{' and '.join(READ_BY[k])} runs are left out")  # fmt: skip
    runs: dict[tuple[str, int], RunResult] = {}
    for i, result in enumerate(results, start=1):
        for data in result["runs"]:
            run = _run(data)
            key = (run.method, run.seed)
            if run.method in skip[i - 1]:
                continue
            if key not in runs:
                runs[key] = run
            elif not np.allclose(run.iou, runs[key].iou, equal_nan=True):
                notes.append(f"{run.method} seed {run.seed} in folder {i} scored IoU "
                             f"{run.iou} against {runs[key].iou} kept")  # fmt: skip
    old_rule = sorted({f"{d['method']} s{d['seed']}" for r in results for d in r["runs"]
                       if scored_before_hd95_rule(d)})  # fmt: skip
    hd95_note = first.get("hd95_note", "")
    if old_rule:  # scored before the rule changed: their HD95 skips missed or invented slices
        hd95_note = (f"{hd95_note}; " if hd95_note else "") + old_hd95_note(old_rule)
    methods = list(dict.fromkeys(m for m, _ in runs))
    ordered = [r for m in methods for r in runs.values() if r.method == m]
    sup = [r.seconds_per_step for r in ordered if r.method == "supervised"]
    base = {key: first[key] for key in SHARED} | {"seeds": sorted({s for _, s in runs})}
    merged = CompareResult(
        ordered, methods, config=first["config"] | {"method": methods[0]},
        supervised_seconds_per_step=float(np.mean(sup)) if sup else None,
        reference_trained=False, hd95_note=hd95_note,
        hd95_unit=first.get("hd95_unit", "mm"), **base,
    )  # fmt: skip
    return merged, notes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare_merge")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        results = [
            json.loads((f / "results.json").read_text(encoding="utf-8")) for f in args.folders
        ]
        merged, notes = merge(results)
    except (OSError, ValueError, KeyError) as exc:
        print(f"compare_merge: {exc}", file=sys.stderr)
        return 2
    command = "python -m benchmarks compare_merge " + " ".join(map(str, args.folders))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in result_files(merged, command, TIMING).items():
        write_atomic(args.out / name, data)
    for note in notes:
        print(f"note: {note}")
    print(f"{len(merged.runs)} runs of {', '.join(merged.methods)} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
