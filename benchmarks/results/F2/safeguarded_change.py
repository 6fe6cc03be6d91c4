"""(F2): what a user of the default gets (SegPL and SegPL-VI with the safeguard, its decision
recomputed on saved labels as ``intensity_arbiter --margin -1`` does), before and after
supervised training's ``painted_bce``: the twin is the supervised run of the same cell, the
default's before and the lever's after; the semi-supervised labels are the same in both.

    PYTHONPATH=. SEGPL_DATA=../shared/data python benchmarks/results/F2/safeguarded_change.py \\
        BEFORE_DIR [BEFORE_DIR ...] --after AFTER_DIR
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.intensity_arbiter import evaluate


def _user(record: dict) -> float:
    """The exported mask's whole-volume IoU of the model the safeguard keeps."""
    return record["semi"] if record["kept_i"] == record["method"] else record["sup"]


def _linked(folder: Path, files: list[Path]) -> Path:
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f.resolve())
    return folder


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", nargs="+", type=Path)
    parser.add_argument("--after", type=Path, required=True)
    args = parser.parse_args(argv)
    lever = {f.name: f for f in sorted(args.after.glob("*-supervised-s*.npz"))}
    old = {f.name: f for d in args.before for f in sorted(d.glob("*.npz"))}
    semi = [f for n, f in old.items() if "-supervised-" not in n]
    with tempfile.TemporaryDirectory() as tmp:
        before = _linked(Path(tmp) / "before", [*semi, *(old[n] for n in lever if n in old)])
        after = _linked(Path(tmp) / "after", [*semi, *lever.values()])
        rows_b = {(r["dataset"], r["k"], r["seed"], r["method"]): r for r in evaluate([before], -1)}
        rows_a = {(r["dataset"], r["k"], r["seed"], r["method"]): r for r in evaluate([after], -1)}
    changes: dict[tuple, list[float]] = {}
    for key in sorted(rows_a.keys() & rows_b.keys()):
        b, a = rows_b[key], rows_a[key]
        d = _user(a) - _user(b)
        print(
            f"{key[0]:20s} K{key[1]} s{key[2]} {key[3]:9s} kept {b['kept_i']:>10s} -> "
            f"{a['kept_i']:>10s}; user {_user(b):5.1f} -> {_user(a):5.1f} ({d:+6.1f}); "
            f"issue 23 (user - sup) {_user(b) - b['sup']:+6.1f} -> {_user(a) - a['sup']:+6.1f}"
        )
        for group in ((a["set"],), (a["set"], key[0], key[3])):
            changes.setdefault(group, []).append(d)
    print()
    for group, d in sorted(changes.items()):
        sd = statistics.stdev(d) if len(d) > 1 else 0.0
        print(
            f"{' / '.join(map(str, group)):40s} n={len(d):2d} mean {statistics.mean(d):+6.2f} "
            f"SD {sd:5.2f} min {min(d):+6.1f} max {max(d):+6.1f}"
        )
    stat: dict[tuple, list[tuple[float, float]]] = {}
    for key in rows_a.keys() & rows_b.keys():
        b, a = rows_b[key], rows_a[key]
        stat.setdefault((a["set"], key[3]), []).append((_user(b) - b["sup"], _user(a) - a["sup"]))
    print()
    for (group, method), pairs in sorted(stat.items()):
        before_m = statistics.mean(p[0] for p in pairs)
        after_m = statistics.mean(p[1] for p in pairs)
        print(
            f"issue 23, {group}, {method}: kept minus supervised {before_m:+.2f} -> "
            f"{after_m:+.2f} (worst {min(p[0] for p in pairs):+.1f} -> "
            f"{min(p[1] for p in pairs):+.1f}; n={len(pairs)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
