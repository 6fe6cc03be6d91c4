"""(T2)'s rule: the burn-in skip's new-code runs (``T2/preds``, from a copy of ffcc750) against
(Q2)'s old-code runs of the same method, volume and seed (``Q2/preds``), each scored as the
product exports it (``intensity_arbiter``, margin -1, against the seed's supervised run: (Q2)'s,
which this machine repeated to the digit at organs CT seed 9). The new runs are copied beside
(Q2)'s supervised runs into OUT (outside the repository) for the arbiter. From the repository
root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/T2/rule.py OUT
"""

import json
import shutil
import statistics
import sys
from pathlib import Path

from benchmarks.components import SEMI
from benchmarks.intensity_arbiter import evaluate

R = Path("benchmarks/results")
out = Path(sys.argv[1]) / "preds"
out.mkdir(parents=True, exist_ok=True)
for f in (R / "Q2/preds").glob("*-supervised-s*.npz"):
    shutil.copy(f, out / f.name)
for f in (R / "T2/preds").glob("*.npz"):
    if "-supervised-" not in f.name and f.name.endswith(("-s9.npz", "-s10.npz")):
        shutil.copy(f, out / f.name)


def scored(folder: Path) -> dict:
    return {
        (r["dataset"], r["seed"], r["method"]): r
        for r in evaluate([folder], -1.0)
        if r["k"] == 3 and r["seed"] in (9, 10)
    }


old, new = scored(R / "Q2/preds"), scored(out)
rows, lines, ok = [], [], {m: True for m in SEMI}
for key in sorted(new):
    if key not in old:
        continue
    o, n = old[key], new[key]
    a, b = o["sup"] + o["gain_i"], n["sup"] + n["gain_i"]
    rows.append(
        {
            "dataset": key[0],
            "seed": key[1],
            "method": key[2],
            "set": n["set"],
            "sup": n["sup"],
            "old": a,
            "new": b,
            "old_kept": o["kept_i"],
            "new_kept": n["kept_i"],
            "old_semi": o["semi"],
            "new_semi": n["semi"],
        }  # fmt: skip
    )
    lines.append(
        f"- {n['set']} {key[0]} s{key[1]} {key[2]}: supervised {n['sup']:.1f}; old {a:.1f}"
        f" ({o['kept_i']} kept, its own {o['semi']:.1f}); new {b:.1f} ({n['kept_i']} kept, its"
        f" own {n['semi']:.1f}); new minus old {b - a:+.1f}"
    )
for method in SEMI:
    for group in ("tuning", "validation"):
        part = [r for r in rows if (r["method"], r["set"]) == (method, group)]
        if not part:
            continue
        d = [r["new"] - r["old"] for r in part]
        g = [r["new"] - r["sup"] for r in part]
        good = statistics.mean(d) >= -2
        ok[method] &= good
        lines.append(
            f"- {group}, {method}: {len(part)} pairs, new minus old {statistics.mean(d):+.2f}"
            f" (worst {min(d):+.1f}); issue 23 at the new code: minus supervised"
            f" {statistics.mean(g):+.2f} (worst {min(g):+.1f}){'' if good else ' FAILS'}"
        )
    lines.append(f"- decision, {method}: the skip {'stays' if ok[method] else 'is reverted'}")
print("\n".join(lines))
(R / "T2/rule.json").write_text(json.dumps(rows, indent=1))
(R / "T2/rule.txt").write_text("\n".join(lines) + "\n")
