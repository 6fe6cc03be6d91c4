"""Issue 24's comparison on the shared volumes: ``segpl compare`` on each dataset with 3 slices
painted (``spread_slices``, as the accuracy benchmark paints them) and every other slice along
the axis held out, empty slices included, so the held-out score is the whole-volume score a user
exports (the issue-23 measure), not only slices that hold the structure.

Each dataset runs ``segpl compare`` as its own process (its table, curves and results.json in
``OUT/DATASET/``), one after another, with ``OMP_NUM_THREADS`` = ``--threads``.

    SEGPL_DATA=../shared/data python -m benchmarks compare_grid --datasets lungs_ct \\
        [--methods supervised,segpl,...] [--seeds 3] [--first-seed 0] [--threads 2] [--out DIR]
        [--resume]
        [-- EXTRA...]

``--resume`` passes ``--resume`` to every dataset's ``segpl compare``: an interrupted grid goes
on from the runs each dataset kept in ``OUT/DATASET/runs/`` (a dataset not started yet starts).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from .accuracy import DATA, DATASETS, load_case

ALL_METHODS = "supervised,segpl,segpl-vi,mean-teacher,fixmatch,cct,cps,selfloop,ensemble"


def command(
    name: str, methods: str, seeds: int, out: Path, extra: list[str], first_seed: int = 0
) -> list[str]:
    """The ``segpl compare`` command for one dataset: the full labels, the painted slices and
    every other slice along the axis as held-out ones."""
    axis = DATASETS[name]
    case = load_case(name, axis, 3)
    depth = case.truth.shape[axis]
    holdout = [s for s in range(depth) if s not in case.chosen]
    return [
        sys.executable, "-m", "napari_segpl.cli", "compare",
        str(DATA / f"{name}_image.nii.gz"), str(DATA / f"{name}_label.nii.gz"),
        "--methods", methods, "--seeds", str(seeds), "--first-seed", str(first_seed),
        "--axis", str(axis),
        "--labelled-slices", ",".join(map(str, range(depth))),  # painted and held out
        "--holdout-slices", ",".join(map(str, holdout)),
        "--out", str(out / name), "--quiet", *extra,
    ]  # fmt: skip


def main(argv: list[str]) -> int:
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    else:
        extra = []
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare_grid")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), required=True)
    parser.add_argument("--methods", default=ALL_METHODS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds K..K+N-1")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare"))
    parser.add_argument("--resume", action="store_true",
                        help="go on with an interrupted grid: segpl compare --resume")  # fmt: skip
    args = parser.parse_args(argv)
    extra = [*extra, "--resume"] if args.resume else extra
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    failed = 0
    for name in args.datasets:
        cmd = command(name, args.methods, args.seeds, args.out, extra, args.first_seed)
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, check=False)
        took = time.perf_counter() - start
        print(f"{name}: exit {done.returncode} after {took:.0f} s -> {args.out / name}")
        failed += done.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
