"""The painted slices' intensity evidence alone, and added to a finished supervised model
(benchmarks/RESULTS.md (n)): what the E-step's ``intensity`` lever can give before any student
learns from it.

    SEGPL_DATA=../shared/data python -m benchmarks intensity --dataset brain_tissue_mri \\
        --labelled 3 [--supervised-seed 3 --weights 0 0.5 1 2]

Scored on the test slices of ``accuracy.py`` (every foreground slice not painted), mean IoU
over the classes. "Lookup alone": each voxel labelled from the evidence only (the most likely
class among those whose log-likelihood ratio is positive), no network. With
``--supervised-seed``, supervised 3D training as in ``accuracy.py`` (the suggested preset), then
its probabilities with ``w`` times the evidence added to the logits: the pseudo labels the
E-step would make from that model, on every slice at once.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from napari_segpl.engine import (
    TrainConfig,
    labels_from_probabilities,
    overlap_scores,
    predict_volume,
    prepare_data,
    train,
)
from napari_segpl.engine.config import suggest_preset
from napari_segpl.engine.intensity import IntensityEvidence

from .accuracy import DATASETS, load_case


def _score(pred: np.ndarray, truth: np.ndarray, axis: int, test: list[int]) -> str:
    scores = overlap_scores(pred, truth, axis=axis, slices=test)
    per_class = [s["iou"] for s in scores.values()]
    return f"{np.mean(per_class):.3f} ({' / '.join(f'{v:.3f}' for v in per_class)})"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks intensity")
    parser.add_argument("--dataset", default="brain_tissue_mri", choices=sorted(DATASETS))
    parser.add_argument("--labelled", type=int, default=3)
    parser.add_argument("--supervised-seed", type=int, default=None)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    axis = DATASETS[args.dataset]
    image, truth, chosen, sparse, test = load_case(args.dataset, axis, args.labelled)
    preset = suggest_preset(image.array)
    cfg = TrainConfig.from_preset(preset, method="supervised", dims=3, axis=axis, preview_every=0)
    data = prepare_data(image.array, sparse, cfg, labelled=chosen)  # slicing axis first
    evidence = IntensityEvidence.from_painted(data)
    with torch.no_grad():  # (K, slices, H, W) -> (K, *truth.shape)
        ratio = evidence(torch.from_numpy(data.image)[:, None]).movedim(1, 0).numpy()
    ratio = np.moveaxis(ratio, 1, axis + 1)
    print(f"{args.dataset}, painted slices {chosen} along axis {axis}, {len(test)} test slices")
    print("| source | mean IoU (per class) |")
    print("|---|---|")
    alone = labels_from_probabilities(1 / (1 + np.exp(-ratio)), 0.5, data.nested)
    print(f"| lookup alone | {_score(alone, truth, axis, test)} |")
    if args.supervised_seed is None:
        return 0
    cfg = TrainConfig.from_preset(
        preset, method="supervised", dims=3, axis=axis, seed=args.supervised_seed, preview_every=0
    )
    model = train(cfg, data)
    prob = predict_volume(model, image.array, device=cfg.device).probabilities
    logits = np.log(np.clip(prob, 1e-6, 1)) - np.log(np.clip(1 - prob, 1e-6, 1))
    for w in args.weights:
        fused = labels_from_probabilities(1 / (1 + np.exp(-(logits + w * ratio))), 0.5, False)
        name = f"supervised (seed {args.supervised_seed}) + {w:g} x evidence"
        print(f"| {name} | {_score(fused, truth, axis, test)} |")
    return 0
