"""``segpl suggest``: which slice to paint next, for scripts and the simulation of issue 25.

The numbers are the dock's: the model predicts the volume as an export does
(``predict_volume``), the uncertainty is the dock's default kind (TTA, M = 8) unless told, one
map per voxel is the most uncertain class's (``uncertainty_volume``, the dock's layer), each
slice's score is ``engine.suggest.slice_scores`` of that map inside the predicted structure
grown in-plane, and the pick is ``suggest_next`` with the dock's default rule.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ._cli_support import (
    add_series_arg,
    check_prediction_numbers,
    check_slices,
    read_image,
    slice_list,
)
from .engine.suggest import DEFAULT_RULE, RULES, describe, rank_by_score, slice_scores, suggest_next
from .engine.uncertainty import (
    ENTROPY,
    KINDS,
    MC,
    MC_SAMPLES,
    TTA,
    TTA_SAMPLES,
    TWIN,
    resolve_kind,
    uncertainty_volume,
)
from .predict_cli import read_paint


def add_suggest_parser(sub: Any) -> None:
    p = sub.add_parser(
        "suggest",
        help="rank the unlabelled slices by uncertainty: which slice to paint next",
        description=(
            "Predict IMAGE with MODEL, score each slice along --axis by the mean uncertainty "
            "inside the predicted structure (grown a few voxels in-plane), and print the "
            "unlabelled slices ranked by score (highest first) and the slice --rule picks. "
            "The same numbers as the dock's slice-score curve and its Suggest next slice button."
        ),
    )
    p.add_argument("model", type=Path, help="model file saved by 'segpl train'")
    p.add_argument("image", type=Path, help="image volume (file or DICOM folder)")
    add_series_arg(p)
    p.add_argument("--axis", type=int, choices=(0, 1, 2), help="default: the training axis")
    p.add_argument(
        "--labelled-slices", type=slice_list, default=[], metavar="3,40,77",
        help="the slices painted already (never suggested)",
    )  # fmt: skip
    p.add_argument(
        "--rule", choices=RULES, default=DEFAULT_RULE,
        help=f"how to pick the slice (default {DEFAULT_RULE}, the dock's: fixed spacing; "
        "uncertainty: the highest score; random)",
    )  # fmt: skip
    p.add_argument(
        "--uncertainty-kind", choices=[k for k in KINDS if k != TWIN], default=TTA,
        help="the uncertainty scored (default tta, the dock's default)",
    )  # fmt: skip
    p.add_argument("--tta-samples", type=int, default=TTA_SAMPLES, metavar="M",
                   help=f"predictions for tta (default {TTA_SAMPLES})")  # fmt: skip
    p.add_argument("--mc-samples", type=int, default=MC_SAMPLES, metavar="K",
                   help=f"thresholds drawn for mc (default {MC_SAMPLES})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="for --rule random (default 0)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--batch-slices", type=int, default=8, help="slices per inference batch")
    p.add_argument(
        "--paint", type=Path, metavar="LABELS",
        help="the labels the model trained on: the structure scored keeps only the parts "
        "touching them, as the dock's prediction with 'Only parts touching the paint'",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def suggest_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .engine import TrainedModel, predict_volume

    model = TrainedModel.load(args.model)
    kind = resolve_kind(model.config.method, args.uncertainty_kind)
    check_prediction_numbers(args)
    image = read_image(args.image, args.series)
    axis = model.config.axis if args.axis is None else args.axis
    check_slices(model, image, axis)
    n = image.array.shape[axis]
    wrong = [s for s in args.labelled_slices if not 0 <= s < n]
    if wrong:
        raise ValueError(f"--labelled-slices {wrong}: axis {axis} has slices 0-{n - 1}")
    if len(set(args.labelled_slices)) == n:  # said now, not after predicting the volume
        raise ValueError(f"every slice is labelled (axis {axis}): there is no slice left to paint")
    paint = None if args.paint is None else read_paint(args.paint, image, model.config.axis)
    start = time.perf_counter()
    with tqdm(total=n, unit="slice", desc="predict", file=sys.stderr, dynamic_ncols=True,
              disable=args.quiet) as bar:  # fmt: skip

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        pred = predict_volume(
            model, image.array, axis=axis, batch_size=args.batch_slices,
            mc_samples=args.mc_samples if kind == MC else 0,
            tta_samples=args.tta_samples if kind == TTA else 0,
            device=args.device, progress=progress, probabilities=kind == ENTROPY, paint=paint,
        )  # fmt: skip
    scores = slice_scores(uncertainty_volume(pred, kind), pred.labels, axis)
    ranked = rank_by_score(scores, args.labelled_slices)
    pick = suggest_next(n, args.labelled_slices, args.rule, scores, seed=args.seed)
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps(_report(args, axis, kind, pick, ranked, seconds, n), indent=1))
        return 0
    print(f"uncertainty: {KINDS[kind].title} (the mean inside the predicted structure, per "
          f"slice along axis {axis}); predicted in {seconds:.1f} s")  # fmt: skip
    print(f"suggested ({pick.rule}): {describe(pick, KINDS[kind].unit)}")
    if ranked:
        print("unlabelled slices by score, highest first:")
        for s, v in ranked:
            print(f"  slice {s:4d}  score {v:.4f}")
    unscored = n - len(ranked) - len(set(args.labelled_slices))
    if unscored:
        print(f"{unscored} unlabelled slice(s) hold no predicted structure: no score")
    return 0


def _report(args: argparse.Namespace, axis: int, kind: str, pick: Any,
            ranked: list[tuple[int, float]], seconds: float, n: int) -> dict[str, Any]:  # fmt: skip
    """The --json object: the pick, the ranking, and the request it answers."""
    score = None if math.isnan(pick.score) else pick.score
    return {
        "axis": axis,
        "slices": n,
        "labelled": sorted(set(args.labelled_slices)),
        "uncertainty_kind": kind,
        "rule": args.rule,
        "suggested": {
            "slice": pick.slice,
            "rule": pick.rule,
            "score": score,
            "distance": pick.distance,
            "nearest_labelled": pick.nearest,
            "reason": pick.reason,
        },
        "ranked": [{"slice": s, "score": v} for s, v in ranked],
        "seconds": round(seconds, 2),
    }
