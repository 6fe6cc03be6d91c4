"""(Q2) rule 1 (saved runs, seeds 0-8) or rule 2 (fresh runs, seed 9; seed 10 read beside):
lever A, the decision fitted to the paint on the mean of the semi-supervised model's and its
supervised twin's probabilities, against the default (each model's own fitted decision, the
safeguard choosing). From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/Q2/rule.py 1 OUT
    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/Q2/rule.py 2 OUT

Each model's labels under its own fitted decision are written to OUT/<source> (outside the
repository), where ``intensity_arbiter`` (margin -1) recomputes the safeguard on them, as (P2).
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from benchmarks.components import SEMI, _points, saved_runs
from benchmarks.intensity_arbiter import evaluate as arbiter
from napari_segpl.engine.components import keep_painted_parts, painted_slices
from napari_segpl.engine.decision import fit_decision

R = Path("benchmarks/results")
SOURCES = {
    "1": {
        R / "I2/preds": Path("/work/i2/probs"),
        R / "M2/preds": Path("/work/m2/probs"),
        R / "N2/preds": Path("/work/n2/probs"),
        R / "O2/preds": Path("/work/o2/probs"),
        R / "P2/preds": Path("/work/p2q/probs"),
    },
    "2": {R / "Q2/preds": Path("/work/q2/probs")},
}
DECIDED = {"1": range(0, 9), "2": range(9, 10)}
which, out = sys.argv[1], Path(sys.argv[2])
cases: dict = {}


def case(name: str) -> tuple:
    if name not in cases:
        axis = DATASETS[name]
        _, truth, chosen, sparse, _ = load_case(name, axis, 3)
        cases[name] = (axis, truth, chosen, sparse, painted_slices(sparse, chosen, axis))
    return cases[name]


def fitted_labels(prob: np.ndarray, name: str) -> np.ndarray:
    """The labels of the decision fitted to the painted slices, before the parts rule."""
    axis, _, chosen, sparse, _ = case(name)
    painted = np.stack([np.take(p, chosen, axis=axis) for p in prob])
    return fit_decision(painted, np.take(sparse, chosen, axis=axis)).labels(prob)


runs = {
    key: f
    for key, f in saved_runs(list(SOURCES[which])).items()
    if key[2] == 3 and (SOURCES[which][f.parent] / f.name).exists()
}
probs = {key: SOURCES[which][f.parent] / f.name for key, f in runs.items()}
for key, f in sorted(runs.items()):
    labels = fitted_labels(np.load(probs[key])["probabilities"], key[1])
    (out / key[0]).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / key[0] / f.name, labels=labels.astype(np.load(f)["labels"].dtype))
default = {
    (r["src"], r["dataset"], r["seed"], r["method"]): r
    for r in arbiter([out / f.name for f in SOURCES[which]], -1.0)
    if r["k"] == 3
}
rows = []
for src, name, k, seed, method in sorted(runs):
    d = default.get((src, name, seed, method))
    if method not in SEMI or d is None:
        continue
    axis, truth, chosen, _, paint = case(name)
    mean = (
        np.load(probs[src, name, k, seed, method])["probabilities"]
        + np.load(probs[src, name, k, seed, "supervised"])["probabilities"]
    ) / 2
    a = fitted_labels(mean, name)
    keep_painted_parts(a, paint, axis)
    row = {
        "src": src, "dataset": name, "seed": seed, "method": method, "set": d["set"],
        "sup": d["sup"], "semi": d["semi"], "kept": d["kept_i"],
        "default": d["sup"] + d["gain_i"], "A": _points(a, truth, chosen, axis),
    }  # fmt: skip
    rows.append(row)
    print(
        f"{name} s{seed} {method}: sup {row['sup']:.1f} default {row['default']:.1f}"
        f" ({row['kept']}) A {row['A']:.1f}",
        flush=True,
    )


def summary(part: list[dict], decide: bool) -> tuple[list[str], bool]:
    ok, lines = True, []
    for group in ("tuning", "validation"):
        for method in SEMI:
            rs = [r for r in part if r["set"] == group and r["method"] == method]
            if not rs:
                ok = False if decide else ok
                continue
            diff = [r["A"] - r["default"] for r in rs]
            ga = [r["A"] - r["sup"] for r in rs]
            gd = [r["default"] - r["sup"] for r in rs]
            sd = statistics.stdev(diff) if len(diff) > 1 else 0.0
            below_a, below_d = sum(g < -2 for g in ga), sum(g < -2 for g in gd)
            floor = min(min(gd), -2.0)
            need = 0.5 if which == "1" else 0.0
            good = statistics.mean(diff) >= need and below_a <= below_d and min(ga) >= floor
            ok &= good
            lines.append(
                f"- {group}, {method}: {len(rs)} runs; A minus default {statistics.mean(diff):+.2f}"
                f" (SD {sd:.2f}; higher {sum(x > 0 for x in diff)}, lower"
                f" {sum(x < 0 for x in diff)}); minus supervised: A {statistics.mean(ga):+.2f}"
                f" (worst {min(ga):+.1f}, {below_a} under -2), default {statistics.mean(gd):+.2f}"
                f" (worst {min(gd):+.1f}, {below_d} under -2){'' if good else ' FAILS'}"
            )
    if which == "1":
        for name in sorted({r["dataset"] for r in part}):
            for method in SEMI:
                diff = [
                    r["A"] - r["default"]
                    for r in part
                    if (r["dataset"], r["method"]) == (name, method)
                ]
                if diff:
                    m = statistics.mean(diff)
                    ok &= m >= -1
                    lines.append(
                        f"  - {name}, {method}: {len(diff)} runs, A minus default {m:+.2f}"
                    )
    return lines, ok


lines, ok = summary([r for r in rows if r["seed"] in DECIDED[which]], True)
lines.append(f"- decision: rule {which} {'holds' if ok else 'fails'}")
rest = [r for r in rows if r["seed"] not in DECIDED[which]]
if rest:
    more, _ = summary(rest, False)
    lines += ["- read beside it (seeds " + ", ".join(sorted({str(r["seed"]) for r in rest})) + "):"]
    lines += ["  " + x for x in more]
print("\n".join(lines))
Path(f"benchmarks/results/Q2/rule{which}.json").write_text(json.dumps(rows, indent=1))
Path(f"benchmarks/results/Q2/rule{which}.txt").write_text("\n".join(lines) + "\n")
