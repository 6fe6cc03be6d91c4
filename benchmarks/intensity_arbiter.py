"""(tt) rule 3: lever I, the painted slices' intensities as an arbiter behind the safeguard.

For every semi-supervised run saved with a supervised pair in the same folder
(``SEGPL_SAVE_PRED``): both masks with P (``keep_painted_parts``, as exported), the default
safeguard's decision (``decide`` on the volume ratios), and, where it keeps the semi-supervised
model, ``label_evidence`` of its mask against the twin's on the image normalised as training
normalises it; below ``--margin`` nats a voxel (rule 3: 0; rule 4: -1) the twin is kept.
Whole-volume IoU of the kept model minus supervised training's, without and with I. No
training.

    python -m benchmarks intensity_arbiter DIR [DIR ...] [--margin M]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from napari_segpl.engine import TrainConfig, keep_painted_parts, painted_slices, prepare_data
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.label_evidence import label_evidence
from napari_segpl.engine.safeguard import decide, volume_ratios

from .accuracy import DATASETS, TUNING, load_case
from .components import SEMI, _points, saved_runs
from .paired import LOSS_POINTS, painted_areas


def _case(name: str, k: int) -> dict:
    axis = DATASETS[name]
    image, truth, chosen, sparse, _ = load_case(name, axis, k)
    config = TrainConfig.from_preset(suggest_preset(image.array), axis=axis)
    data = prepare_data(image.array, sparse, config, labelled=chosen)
    return {
        "axis": axis, "truth": truth, "chosen": chosen, "areas": painted_areas(name, k, chosen),
        "paint": painted_slices(sparse, chosen, axis), "image": data.image,
        "labels": data.labels, "labelled": list(data.labelled),
    }  # fmt: skip


def _exported(path: Path, paint, axis: int) -> np.ndarray:
    labels = np.load(path)["labels"]
    keep_painted_parts(labels, paint, axis)
    return labels


def evaluate(folders: list[Path], margin: float = 0.0) -> list[dict]:
    """One record per semi-supervised run with a supervised pair in its folder."""
    runs = saved_runs(folders)
    cases: dict = {}
    out = []
    for (src, name, k, seed, method), f in sorted(runs.items()):
        sup_file = runs.get((src, name, k, seed, "supervised"))
        if method not in SEMI or sup_file is None:
            continue
        if (name, k) not in cases:
            cases[name, k] = _case(name, k)
        c = cases[name, k]
        axis, chosen = c["axis"], c["chosen"]
        semi, sup = _exported(f, c["paint"], axis), _exported(sup_file, c["paint"], axis)
        ratios = volume_ratios(semi, sup, chosen, axis, c["areas"])
        kept, _ = decide(method, ratios)
        evidence = label_evidence(
            c["image"], np.moveaxis(semi, axis, 0), np.moveaxis(sup, axis, 0),
            c["labels"], c["labelled"], 0,
        )  # fmt: skip
        with_i, _ = decide(method, ratios, evidence=evidence, margin=margin)
        score = {
            m: _points(x, c["truth"], chosen, axis)
            for m, x in ((method, semi), ("supervised", sup))
        }
        out.append({
            "src": src, "dataset": name, "k": k, "seed": seed, "method": method,
            "set": "tuning" if name in TUNING else "validation",
            "semi": score[method], "sup": score["supervised"],
            "kept": kept, "kept_i": with_i, "nats": evidence.mean, "voxels": evidence.voxels,
            "ratios": ratios,
            "gain": score[kept] - score["supervised"],
            "gain_i": score[with_i] - score["supervised"],
        })  # fmt: skip
    return out


def _line(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    below = sum(v < -LOSS_POINTS for v in values)
    return (
        f"mean {statistics.mean(values):+.2f} (SD {sd:.2f}), worst {min(values):+.1f}, "
        f"{below} more than {LOSS_POINTS:g} below"
    )


def report(records: list[dict]) -> str:
    lines = [
        "| src | set | dataset | K | seed | method | semi | sup | safeguard keeps | nats "
        "| voxels | with I keeps | kept - sup | with I |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['src']} | {r['set']} | {r['dataset']} | {r['k']} | {r['seed']} "
            f"| {r['method']} | {r['semi']:.1f} | {r['sup']:.1f} | {r['kept']} "
            f"| {r['nats']:+.2f} | {r['voxels']} | {r['kept_i']} | {r['gain']:+.1f} "
            f"| {r['gain_i']:+.1f} |"
        )
    lines.append("")
    for src in sorted({r["src"] for r in records}):
        for group in ("tuning", "validation"):
            for method in SEMI:
                part = [
                    r for r in records if (r["src"], r["set"], r["method"]) == (src, group, method)
                ]
                if not part:
                    continue
                flips = sum(r["kept"] != r["kept_i"] for r in part)
                lines.append(
                    f"- {src}, {group}, {method} ({len(part)} runs, I changes {flips}): "
                    f"safeguard {_line([r['gain'] for r in part])}; with I "
                    f"{_line([r['gain_i'] for r in part])}"
                )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks intensity_arbiter")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--margin", type=float, default=0.0, help="nats a voxel (default 0)")
    args = parser.parse_args(argv)
    print(report(evaluate(args.folders, args.margin)))
    return 0
