"""(P2) rule 1 (saved runs) or rule 2 (seed 8): lever D, the label decision fitted to the
paint, against today's rule, paired by run. From the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/P2/rule.py 1 OUT
    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/P2/rule.py 2 OUT

Labels under D are written to OUT/<source> (outside the repository) and the safeguard is
recomputed on them by ``intensity_arbiter`` (margin -1), as on the saved labels.
"""

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.accuracy import DATASETS, TUNING, load_case
from benchmarks.components import _points, saved_runs
from benchmarks.intensity_arbiter import evaluate as arbiter
from napari_segpl.engine.components import keep_painted_parts, painted_slices
from napari_segpl.engine.decision import Decision, fit_decision

R = Path("benchmarks/results")
SOURCES = {
    "1": {
        R / "I2/preds": Path("/work/i2/probs"),
        R / "M2/preds": Path("/work/m2/probs"),
        R / "N2/preds": Path("/work/n2/probs"),
        R / "O2/preds": Path("/work/o2/probs"),
    },
    "2": {R / "P2/preds": Path("/work/p2q/probs")},
}
which, out = sys.argv[1], Path(sys.argv[2])
cases, raw, fits = {}, [], {}
for (src, name, k, seed, method), f in sorted(saved_runs(list(SOURCES[which])).items()):
    folder = f.parent
    probs = SOURCES[which][folder] / f.name
    if k != 3 or not probs.exists():
        continue
    axis = DATASETS[name]
    if name not in cases:
        _, truth, chosen, sparse, _ = load_case(name, axis, k)
        cases[name] = (truth, chosen, sparse, painted_slices(sparse, chosen, axis))
    truth, chosen, sparse, paint = cases[name]
    prob = np.load(probs)["probabilities"]
    saved = np.load(f)["labels"]
    same = Decision.identity(prob.shape[0]).labels(prob)
    keep_painted_parts(same, paint, axis)
    mismatch = int((same != saved).sum())
    painted_p = np.stack([np.take(p, chosen, axis=axis) for p in prob])
    fitted = fit_decision(painted_p, np.take(sparse, chosen, axis=axis))
    d = fitted.labels(prob).astype(saved.dtype)
    (out / src).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / src / f.name, labels=d)
    keep_painted_parts(d, paint, axis)

    row = {
        "src": src,
        "dataset": name,
        "seed": seed,
        "method": method,
        "set": "tuning" if name in TUNING else "validation",
        "before": _points(saved, truth, chosen, axis),
        "after": _points(d, truth, chosen, axis),
        "mismatch": mismatch,
        "weight": fitted.weight.round(2).tolist(),
        "bias": fitted.bias.round(2).tolist(),
    }
    raw.append(row)
    print(
        f"{src} {name} s{seed} {method}: {row['before']:.1f} -> {row['after']:.1f}"
        f" (identity mismatch {mismatch})",
        flush=True,
    )

before = {
    (r["src"], r["dataset"], r["seed"], r["method"]): r for r in arbiter(list(SOURCES[which]), -1.0)
}
after = {
    (r["src"], r["dataset"], r["seed"], r["method"]): r
    for r in arbiter([out / f.name for f in SOURCES[which]], -1.0)
}
safe = []
for key, b in sorted(before.items()):
    a = after.get(key)
    if a is None or b["k"] != 3:
        continue
    safe.append(
        {
            "src": key[0],
            "dataset": key[1],
            "seed": key[2],
            "method": key[3],
            "set": b["set"],
            "before": b["sup"] + b["gain_i"],
            "after": a["sup"] + a["gain_i"],
            "kept_before": b["kept_i"],
            "kept_after": a["kept_i"],
            "gain_before": b["gain_i"],
            "gain_after": a["gain_i"],
        }
    )


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


ok = True
lines = []
for group in ("tuning", "validation"):
    sup = [
        r["after"] - r["before"] for r in raw if r["set"] == group and r["method"] == "supervised"
    ]
    semi = [r["after"] - r["before"] for r in safe if r["set"] == group]
    for what, xs in (("supervised alone", sup), ("SegPL and SegPL-VI safeguarded", semi)):
        m, sd = mean_sd(xs) if xs else (float("nan"), 0.0)
        ok &= bool(xs) and m > 0
        lines.append(
            f"- {group}, {what}: {len(xs)} runs, mean change {m:+.2f} (SD {sd:.2f}), "
            f"higher {sum(x > 0 for x in xs)}, lower {sum(x < 0 for x in xs)}"
        )
cells = {}
for r in raw:
    if r["method"] == "supervised":
        cells.setdefault((r["dataset"], "supervised alone"), []).append(r["after"] - r["before"])
for r in safe:
    cells.setdefault((r["dataset"], f"{r['method']} safeguarded"), []).append(
        r["after"] - r["before"]
    )
for (name, what), xs in sorted(cells.items()):
    m = statistics.mean(xs)
    ok &= m >= -0.5
    lines.append(f"  - {name}, {what}: {len(xs)} runs, mean {m:+.2f}, worst {min(xs):+.1f}")
for group in ("tuning", "validation"):
    for method in ("segpl", "segpl-vi"):
        part = [r for r in safe if r["set"] == group and r["method"] == method]
        if part:
            gb, ga = (statistics.mean(r[g] for r in part) for g in ("gain_before", "gain_after"))
            worst = min(r["gain_after"] for r in part)
            lines.append(
                f"- issue 23, {group}, {method}: safeguarded minus supervised {gb:+.2f} today, "
                f"{ga:+.2f} both with D ({len(part)} runs; worst {worst:+.1f})"
            )
lines.append(f"- decision: {'D adopted' if ok else 'D not adopted'} by rule {which}")
print("\n".join(lines))
Path(f"benchmarks/results/P2/rule{which}.json").write_text(
    json.dumps({"raw": raw, "safe": safe}, indent=1)
)
Path(f"benchmarks/results/P2/rule{which}.txt").write_text("\n".join(lines) + "\n")
