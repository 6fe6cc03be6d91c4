"""(S2)'s decision: the CT sample's IoU after minus before, paired by seed and thread count,
over (qq)'s 9 pairs and this section's; SegPL's training seconds after / before here.

    python benchmarks/results/S2/rule.py > benchmarks/results/S2/rule.txt
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
QQ = HERE.parent / "qq"


def rows(path: Path) -> dict[tuple[int, int], dict]:
    return {(r["seed"], r["threads"]): r for r in json.loads(path.read_text()) if r["case"] == "ct"}


def pairs(before: Path, after: Path) -> list[tuple[dict, dict]]:
    b, a = rows(before), rows(after)
    return [(b[k], a[k]) for k in sorted(set(a) & set(b))]


def summary(name: str, ps: list[tuple[dict, dict]]) -> float:
    diffs = [100 * (a["iou"] - b["iou"]) for b, a in ps]
    sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
    print(f"{name}: {len(diffs)} pairs, mean {statistics.mean(diffs):+.2f} points (SD {sd:.2f})")
    return statistics.mean(diffs)


def main() -> None:
    old = pairs(QQ / "time_to_mask-before-0ef3547.json", QQ / "time_to_mask-after-4d89444.json")
    old += pairs(
        QQ / "time_to_mask-2threads-before-0ef3547.json",
        QQ / "time_to_mask-2threads-after-7ab5ca0.json",
    )
    old += pairs(
        QQ / "time_to_mask-ct-seeds3-5-before-0ef3547.json",
        QQ / "time_to_mask-ct-seeds3-5-after-7ab5ca0.json",
    )
    new = pairs(HERE / "before-e299404.json", HERE / "after-7750a71.json")
    head = ["seed", "threads", "IoU before", "IoU after", "after - before (points)"]
    head += ["SegPL training s before, after", "ratio", "twin s", "kept before, after"]
    print("| " + " | ".join(head) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for b, a in new:
        print(
            f"| {b['seed']} | {b['threads']} | {b['iou']:.3f} | {a['iou']:.3f} | "
            f"{100 * (a['iou'] - b['iou']):+.1f} | {b['train_s']:.1f}, {a['train_s']:.1f} | "
            f"{a['train_s'] / b['train_s']:.3f} | {b['safeguard_s']:.1f}, {a['safeguard_s']:.1f} | "
            f"{b['kept']}, {a['kept']} |"
        )
    print()
    m_old = summary("(qq)", old)
    m_new = summary("(S2)", new)
    m_all = summary("all", old + new)
    ratios = [a["train_s"] / b["train_s"] for b, a in new]
    ratio = statistics.mean(ratios) if ratios else float("nan")
    print(f"(S2) SegPL training after / before: mean {ratio:.3f} over {len(ratios)} pairs")
    checks = {
        "a (all >= -2.0)": m_all >= -2.0,
        "b (S2 >= -2.0)": m_new >= -2.0,
        "c (ratio <= 0.90)": ratio <= 0.90,
    }
    print(
        checks,
        "->",
        "adopted" if all(checks.values()) else "not adopted",
        f"(qq mean {m_old:+.2f})",
    )


if __name__ == "__main__":
    main()
