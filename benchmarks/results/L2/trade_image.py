"""(L2) lever T2 on saved labels: in a class trade, keep the semi-supervised model where the
image check favours its labels (> 0 nats a voxel). Run from the repository root:

    SEGPL_DATA=../shared/data PYTHONPATH=. python benchmarks/results/L2/trade_image.py
"""

import statistics
from pathlib import Path

from benchmarks.intensity_arbiter import evaluate
from napari_segpl.engine.safeguard import BAND, lost_classes

R = Path("benchmarks/results")
SOURCES = {
    "D": R / "issue23-preds", "C": R / "issue23-preds-tt", "ff": R / "issue23-preds-ff",
    "gg": R / "issue23-preds-gg", "hh": R / "issue23-preds-hh", "rr": R / "issue23-preds-rr",
    "B2": R / "issue23-preds-B2", "I2": R / "I2" / "preds",
}  # fmt: skip


def trade(ratios: list[float]) -> bool:
    """Each model lost a class against the other (the volume rule's trade)."""
    return bool(lost_classes(ratios, BAND)) and any(r > BAND for r in ratios)


fails = []
fires = {"tuning": [], "validation": []}
for name, folder in SOURCES.items():
    for r in evaluate([folder], margin=-1.0):
        today = r["gain_i"]
        t2 = today
        if r["kept_i"] == "supervised" and trade(r["ratios"]) and r["nats"] > 0:
            t2 = r["semi"] - r["sup"]
            fires[r["set"]].append(t2 - today)
            print(
                f"- {name} {r['set']} {r['dataset']} K={r['k']} s{r['seed']} {r['method']}: "
                f"fires, {r['nats']:+.2f} nats, kept - supervised {today:+.1f} -> {t2:+.1f}"
            )
            if t2 < -2 <= today:
                fails.append(name)
        r["t2"] = t2
        r["src_name"] = name
        fires.setdefault("records", []).append(r)
print()
for group in ("tuning", "validation"):
    print(f"- {group}: fires on {len(fires[group])} runs, summed change {sum(fires[group]):+.1f}")
records = fires["records"]
worst_c = 0.0
for name in SOURCES:
    for group in ("tuning", "validation"):
        for method in ("segpl", "segpl-vi"):
            part = [
                r
                for r in records
                if (r["src_name"], r["set"], r["method"]) == (name, group, method)
            ]
            if not part:
                continue
            before = statistics.mean(r["gain_i"] for r in part)
            after = statistics.mean(r["t2"] for r in part)
            worst_c = min(worst_c, after - before)
            if after != before:
                print(
                    f"- {name} {group} {method}: mean kept - supervised "
                    f"{before:+.2f} -> {after:+.2f}"
                )
a = not fails
b = all(sum(fires[g]) > 0 for g in ("tuning", "validation")) and bool(fires["validation"])
c = worst_c >= -0.5
print(
    f"\n(a) {'holds' if a else 'fails: ' + ', '.join(fails)}; (b) {'holds' if b else 'fails'}; "
    f"(c) {'holds' if c else 'fails'} (worst {worst_c:+.2f})"
)
print(f"T2: {'adopted' if a and b and c else 'not adopted'}")
