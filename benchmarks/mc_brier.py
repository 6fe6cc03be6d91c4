"""Issue 25, RESULTS.md (pp): SegPL-VI's Monte-Carlo Brier score (the paper's section 4.4)
beside its Brier of p and a deep ensemble's, on held-out slices.

New SegPL-VI compares (``compare_grid --methods segpl-vi``; ``DIR/DATASET/results.json``, each
run with ``brier_mc``) are set beside the stored compares of the same volumes
(``STORED[dataset]``: their SegPL-VI run of the same seed, to check that the new run
reproduces it, and their ensemble runs; a volume outside them brings its ensemble runs in its
own compare). Per volume (mean over the seeds): whether the MC
Brier is at most ``CLAIM_FACTOR`` times the ensemble's (rule 2 of (pp)).

    python -m benchmarks mc_brier DIR [DIR ...] [--stored benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

#: the stored compare (3 seeds, every method) of each shared volume
STORED = {
    "lungs_ct": "compare-lungs-3seeds",
    "abdomen_vessels_ct": "compare-vessels-3seeds",
    "brain_tissue_mri": "compare-brain-3seeds",
    "abdomen_organs_ct": "compare-organs-ct-3seeds",
    "abdomen_organs_mri": "compare-organs-mri-3seeds",
}
#: rule 2: the paper's claim holds where the MC Brier is at most this times the ensemble's
CLAIM_FACTOR = 1.10
#: rule 1: a new run reproduces the stored one when IoU and Brier of p agree this closely
SAME = 1e-3


def _runs(path: Path, method: str) -> dict[int, dict]:
    runs = json.loads(path.read_text())["runs"]
    return {int(r["seed"]): r for r in runs if r["method"] == method}


def rows(new_dirs: list[Path], stored: Path) -> list[dict]:
    """One row per (dataset, seed) run found under ``new_dirs``."""
    out = []
    for folder in new_dirs:
        for results in sorted(folder.glob("*/results.json")):
            name = results.parent.name
            old = stored / STORED[name] / "results.json" if name in STORED else None
            vi_old = _runs(old, "segpl-vi") if old else {}  # no stored run to reproduce
            ens = _runs(old or results, "ensemble")  # elsewhere: its own compare's ensemble
            for seed, run in _runs(results, "segpl-vi").items():
                ref = vi_old.get(seed)
                out.append({
                    "dataset": name, "seed": seed, "iou": run["mean_iou"],
                    "brier": run["brier"], "ece": run["ece"],
                    "brier_mc": run["brier_mc"], "ece_mc": run["ece_mc"],
                    "iou_stored": ref and ref["mean_iou"], "brier_stored": ref and ref["brier"],
                    "brier_ensemble": ens[seed]["brier"] if seed in ens else None,
                })  # fmt: skip
    return sorted(out, key=lambda r: (r["dataset"], r["seed"]))


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(records: list[dict]) -> str:
    lines = [
        "| dataset | seed | mean IoU (stored) | Brier of p (stored) | MC Brier | ECE of p | MC ECE "
        "| ensemble Brier | same as stored |",
        "|---" * 9 + "|",
    ]
    for r in records:
        same = r["iou_stored"] is not None and (
            abs(r["iou"] - r["iou_stored"]) <= SAME and abs(r["brier"] - r["brier_stored"]) <= SAME
        )
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {_f(r['iou'], 3)} ({_f(r['iou_stored'], 3)}) "
            f"| {_f(r['brier'])} ({_f(r['brier_stored'])}) | {_f(r['brier_mc'])} "
            f"| {_f(r['ece'])} | {_f(r['ece_mc'])} | {_f(r['brier_ensemble'])} "
            f"| {'-' if r['iou_stored'] is None else 'yes' if same else 'no'} |"
        )
    lines.append("")
    for name in sorted({r["dataset"] for r in records}):
        mine = [r for r in records if r["dataset"] == name]
        mc = statistics.mean(r["brier_mc"] for r in mine)
        p = statistics.mean(r["brier"] for r in mine)
        ens = [r["brier_ensemble"] for r in mine if r["brier_ensemble"] is not None]
        verdict = "no ensemble runs"
        if ens:
            e = statistics.mean(ens)
            holds = "holds" if mc <= CLAIM_FACTOR * e else "does not hold"
            verdict = f"ensemble {e:.4f}, MC / ensemble {mc / e:.2f}: the paper's claim {holds}"
        diffs = [r["brier_mc"] - r["brier"] for r in mine]
        lines.append(
            f"- {name} ({len(mine)} seeds): MC Brier {mc:.4f}, Brier of p {p:.4f} (MC minus p "
            f"per seed: {', '.join(f'{d:+.4f}' for d in diffs)}); {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks mc_brier")
    parser.add_argument("dirs", type=Path, nargs="+", help="compare_grid --out folders")
    parser.add_argument("--stored", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    print(table(rows(args.dirs, args.stored)))
    return 0
