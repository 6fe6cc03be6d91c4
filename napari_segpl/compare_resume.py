"""``segpl compare``'s run files: each finished run kept in ``OUT/runs/``, and ``--resume``.

The terminal side of ``engine.compare_store``: which request a run file must match (the
options, slices and volumes of this command), the refusal to mix with an earlier compare's
files unless ``--resume`` is given, the "loaded from" lines, and the messages when a compare is
interrupted or fails part way (its finished runs stay on disk for ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .engine.compare import CompareResult, RunDone, RunResult
from .engine.compare_store import REFERENCE, RunStore, old_hd95_note, volume_identity
from .engine.config import TrainConfig


def open_store(
    args: argparse.Namespace,
    image: Any,
    labels: Any,
    configs: Sequence[TrainConfig],
    preset: str,
    seeds: Sequence[int],
) -> tuple[RunStore, dict[tuple[str, int], RunResult], float | None]:
    """The run store of ``args.out`` and, with ``--resume``, the runs (and the supervised
    timing) saved there for this very request. ValueError for run files without
    ``--resume``, or saved for another request."""
    shared = {
        "preset": preset,
        "holdout": sorted(set(args.holdout_slices)),
        "labelled": None if args.labelled_slices is None else sorted(set(args.labelled_slices)),
        "image": volume_identity(image.array, args.image, series=image.series_uid),
        "labels": volume_identity(labels.array, args.labels),
        "spacing": list(image.spacing),
        "gammas": list(args.gammas),
        "epsilons": list(args.epsilons),
        "hd95": not args.no_hd95,
        "painted_parts": not args.no_painted_parts,  # masks scored as exported (or every part)
    }
    store = RunStore(args.out, shared, {c.method: c for c in configs})
    existing = store.existing()
    if existing and not args.resume:
        raise ValueError(
            f"--out {args.out}: {store.folder} holds {len(existing)} run file(s) of an earlier "
            "compare; pass --resume to continue it, or choose another --out (nothing there is "
            "overwritten)"
        )
    finished: dict[tuple[str, int], RunResult] = {}
    reference = None
    if not args.resume:
        return store, finished, reference
    for c in configs:
        for seed in seeds:
            run = store.load(c.method, seed)
            if run is not None:
                finished[c.method, seed] = run
                print(f"method {c.method} seed {seed}: loaded from {store.path(c.method, seed)}",
                      file=sys.stderr)  # fmt: skip
    if store.old_hd95:  # the table's HD95 line states the new rule
        why = " (run files from before its rule was recorded)"
        print(f"note: the {old_hd95_note(store.old_hd95, why)}", file=sys.stderr)
    if not args.no_supervised_timing and all(c.method != "supervised" for c in configs):
        reference = store.load_reference(seeds[0])
        if reference is not None:
            print(f"supervised timing for the cost ratio: loaded from {store.folder / REFERENCE}",
                  file=sys.stderr)  # fmt: skip
    used = {store.path(m, s).name for m, s in finished} | {REFERENCE}
    others = [p.name for p in existing if p.name not in used]
    if others:
        print(f"note: not part of this compare, left as they are in {store.folder}: "
              f"{', '.join(others)}", file=sys.stderr)  # fmt: skip
    return store, finished, reference


def saver(store: RunStore) -> Callable[[RunDone], None]:
    """``on_run``: write each run the moment it is scored."""

    def save(done: RunDone) -> None:
        key = (done.method, done.seed)
        store.save(next(r for r in done.result.runs if (r.method, r.seed) == key))

    return save


def kept(store: RunStore, what: str) -> str:
    """The line for a compare that ended part way: what is kept, and how to go on."""
    runs = [n for n in store.timed_by if n != REFERENCE]
    if not runs:
        return f"segpl compare: {what} before any run finished; nothing was kept"
    return (f"segpl compare: {what}; {len(runs)} finished run(s) kept in {store.folder}: "
            "run the same command with --resume to continue")  # fmt: skip


def timing_note(store: RunStore, result: CompareResult) -> str:
    """A footnote when the table's runs were timed by more than one process (a resumed
    compare), whose step times are then less comparable; else empty."""
    names = [store.path(r.method, r.seed).name for r in result.runs]
    if result.reference_trained:
        names.append(REFERENCE)
    n = store.processes(names)
    if n < 2:
        return ""
    return (f"Runs timed in {n} different processes (a compare resumed with --resume): s/step "
            "and x supervised compare step times measured at different times, possibly under "
            "another machine load.")  # fmt: skip


__all__ = ["kept", "open_store", "saver", "timing_note"]
