"""(tt) rule 3: lever I, the painted slices' intensities as an arbiter behind the safeguard.

For every semi-supervised run saved with a supervised pair in the same folder
(``SEGPL_SAVE_PRED``): both masks with P (``keep_painted_parts``, as exported), the default
safeguard's decision (``decide`` on the volume ratios), and, where it keeps the semi-supervised
model, ``label_evidence`` of its mask against the twin's on the image normalised as training
normalises it; below ``--margin`` nats a voxel (rule 3: 0; rule 4: -1) the twin is kept.
Whole-volume IoU of the kept model minus supervised training's, without and with I. With
``--trade`` ((B2) rule 1, lever TI), where a class is lost the semi-supervised mask with the
lost classes taken from the twin's (``trade_classes``, then P again) is checked against the
twin's by the same image check and kept unless its evidence is below the margin. No training.

    python -m benchmarks intensity_arbiter DIR [DIR ...] [--margin M] [--trade]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from napari_segpl.engine import TrainConfig, keep_painted_parts, painted_slices, prepare_data
from napari_segpl.engine.class_trade import trade_classes
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.label_evidence import label_evidence
from napari_segpl.engine.safeguard import decide, lost_classes, volume_ratios

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


def traded_check(
    semi: np.ndarray,
    sup: np.ndarray,
    lost: list[int],
    paint,
    axis: int,
    image,
    labels,
    labelled: list[int],
    margin: float,
) -> tuple[np.ndarray, float, bool]:
    """Lever TI: the traded mask (P again), its evidence against the twin's in nats a voxel,
    and whether it is kept (the evidence not below ``margin``)."""
    traded = trade_classes(semi, sup, lost)
    keep_painted_parts(traded, paint, axis)
    evidence = label_evidence(
        image, np.moveaxis(traded, axis, 0), np.moveaxis(sup, axis, 0), labels, labelled, 0
    )
    return traded, evidence.mean, not evidence.voxels or evidence.mean >= margin


def evaluate(folders: list[Path], margin: float = 0.0, trade: bool = False) -> list[dict]:
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
        lost = [cls for _, cls in lost_classes(ratios)] if trade else []
        gain_t, nats_t = score[with_i] - score["supervised"], None
        if lost:
            traded, nats_t, keep = traded_check(
                semi, sup, lost, c["paint"], axis, c["image"], c["labels"], c["labelled"], margin
            )
            if keep:
                gain_t = _points(traded, c["truth"], chosen, axis) - score["supervised"]
            else:
                gain_t = 0.0
        out.append({
            "src": src, "dataset": name, "k": k, "seed": seed, "method": method,
            "set": "tuning" if name in TUNING else "validation",
            "semi": score[method], "sup": score["supervised"],
            "kept": kept, "kept_i": with_i, "nats": evidence.mean, "voxels": evidence.voxels,
            "gain": score[kept] - score["supervised"],
            "gain_i": score[with_i] - score["supervised"],
            "lost": lost, "nats_t": nats_t, "gain_t": gain_t,
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
        "| voxels | with I keeps | kept - sup | with I | lost | TI nats | with TI |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['src']} | {r['set']} | {r['dataset']} | {r['k']} | {r['seed']} "
            f"| {r['method']} | {r['semi']:.1f} | {r['sup']:.1f} | {r['kept']} "
            f"| {r['nats']:+.2f} | {r['voxels']} | {r['kept_i']} | {r['gain']:+.1f} "
            f"| {r['gain_i']:+.1f} | {','.join(map(str, r['lost'])) or '-'} "
            f"| {'-' if r['nats_t'] is None else format(r['nats_t'], '+.2f')} "
            f"| {r['gain_t']:+.1f} |"
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
                traded = [r for r in part if r["lost"]]
                if traded:
                    change = sum(r["gain_t"] - r["gain_i"] for r in traded)
                    added = sum(r["gain_t"] < -LOSS_POINTS <= r["gain_i"] for r in part)
                    lines.append(
                        f"  - with TI ({len(traded)} traded, summed change {change:+.1f}, "
                        f"{added} more than {LOSS_POINTS:g} below added): "
                        f"{_line([r['gain_t'] for r in part])}"
                    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks intensity_arbiter")
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--margin", type=float, default=0.0, help="nats a voxel (default 0)")
    parser.add_argument("--trade", action="store_true", help="(B2): lever TI")
    args = parser.parse_args(argv)
    print(report(evaluate(args.folders, args.margin, args.trade)))
    return 0
