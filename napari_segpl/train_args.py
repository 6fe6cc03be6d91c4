"""``segpl train``'s arguments: the image, labels and outputs, the preset, and every training
parameter with the default its help quotes.

Apart from ``cli.py`` so that it stays under 400 lines. The command itself (``_config``,
``_train``) stays in ``cli.py``, where the names it calls are looked up (and patched by tests).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._cli_support import add_output_args, add_series_arg, slice_list
from .engine import METHODS, PRESETS, TrainConfig
from .engine.config import LOSSES, THRESHOLD_SIGNALS
from .engine.safeguard import BAND

D = TrainConfig()  # the defaults the help texts quote


def add_train_parser(sub: Any) -> None:
    """The ``train`` subcommand: one IMAGE, its LABELS, and the model (and outputs) to write."""
    t = sub.add_parser(
        "train",
        help="train a model on one volume with a few labelled slices",
        description=(
            "Train on IMAGE with the labelled slices of LABELS (a label volume on the same grid: "
            "0 background, 1..K classes). A slice counts as labelled when it holds any non-zero "
            "voxel, or exactly the slices given with --labelled-slices. Unset parameters take "
            "the values of --preset; without one, the 'ct' preset for an image in Hounsfield "
            "units and the 'mri' one otherwise. --preset paper reproduces the paper."
        ),
    )
    t.add_argument("image", type=Path, help="image volume (file or DICOM folder)")
    t.add_argument("labels", type=Path, help="label volume on the image's grid")
    add_series_arg(t)
    t.add_argument("--method", choices=list(METHODS), default=None, help="default: segpl")
    t.add_argument("--model", type=Path, required=True, metavar="OUT.pt", help="model to save")
    t.add_argument(
        "--preset", choices=sorted(PRESETS),
        help="ct or mri (the engine's recipe; chosen from the image when not given), or the "
        "paper's settings: paper (= paper-mri) or paper-ct",
    )  # fmt: skip
    add_output_args(t, mask_required=False, twin=True)
    t.add_argument("--axis", type=int, choices=(0, 1, 2), help="slicing axis (default 2)")
    t.add_argument(
        "--labelled-slices",
        type=slice_list,
        metavar="3,40,77",
        help="use exactly these slices as labelled (background included)",
    )
    t.add_argument(
        "--holdout-slices", type=slice_list, default=[], metavar="5,60",
        help="labelled slices kept out of training and scored: the safeguard compares the "
        "models there too, and prints each model's Dice on them",
    )  # fmt: skip
    t.add_argument(
        "--safeguard", action=argparse.BooleanOptionalAction, default=True,
        help="after a method that trains on pseudo labels (segpl, segpl-vi, the baselines), "
        "train a supervised twin on the same slices and keep it instead when a class's "
        f"volume is below 1/{BAND:g} of the twin's (a class lost) or it scores better on "
        "held-out slices; on by default (benchmarks/RESULTS.md (r)), costs a supervised run",
    )  # fmt: skip
    t.add_argument(
        "--retry", action=argparse.BooleanOptionalAction, default=True,
        help="when the mask contradicts the paint (a painted class missing, or under 0.5 Dice "
        "on the painted slices), train once more at seed + 1 and keep the mask that matches "
        "the paint better (on by default, benchmarks/RESULTS.md (V2)); costs a second run then",
    )  # fmt: skip
    t.add_argument(
        "--painted-parts", action=argparse.BooleanOptionalAction, default=True,
        help="the mask keeps only the parts of each class that touch its paint on the trained "
        "slices (on by default, benchmarks/RESULTS.md (rr)); --no-painted-parts keeps every "
        "predicted part, for a structure of separate parts you did not all paint",
    )  # fmt: skip
    t.add_argument(
        "--unlabelled",
        type=Path,
        nargs="+",
        default=[],
        metavar="IMAGE",
        help="extra unlabelled volumes to draw pseudo-labelled slices from",
    )
    t.add_argument(
        "--dims", type=int, choices=(0, 2, 3),
        help="2: 2D U-net; 3: 3-slice 3D U-net; 0: from the painted slices, 2D for thin "
        "structures (the ct and mri presets' choice)",
    )  # fmt: skip
    t.add_argument(
        "--steps", type=int,
        help=f"optimiser steps (default: the preset's; {D.steps}, mri {PRESETS['mri']['steps']})",
    )  # fmt: skip
    t.add_argument("--lr", type=float, help=f"Adam learning rate (default {D.lr})")
    t.add_argument(
        "--alpha", type=float, help=f"weight of the pseudo-label loss (default {D.alpha})"
    )
    t.add_argument(
        "--warmup", type=float, help=f"fraction of steps alpha ramps up over ({D.warmup})"
    )
    t.add_argument(
        "--ratio", type=int, help=f"unlabelled images per labelled one (default {D.ratio})"
    )
    t.add_argument("--batch", type=int, help=f"labelled images per step (default {D.batch})")
    t.add_argument(
        "--prior-mu", type=float, help=f"segpl-vi prior mean of T (default {D.prior_mu})"
    )
    t.add_argument(
        "--prior-sigma", type=float, help=f"segpl-vi prior std of T (default {D.prior_sigma})"
    )
    t.add_argument(
        "--threshold", type=float, help=f"segpl pseudo-label threshold (default {D.threshold})"
    )
    t.add_argument("--loss", choices=LOSSES, help=f"default: {D.loss}")
    t.add_argument("--nested", action="store_true", default=None, help="classes nest (BRATS)")
    t.add_argument("--normalisation", choices=("zscore", "ct"), help="default: from the preset")
    t.add_argument(
        "--ct-window",
        type=float,
        nargs=2,
        metavar=("LEVEL", "WIDTH"),
        help="CT window for --normalisation ct (default {:g} {:g})".format(*D.ct_window),
    )
    levers = t.add_argument_group(
        "levers beyond the paper (defaults: the engine's recipe; --preset paper turns them off)"
    )
    levers.add_argument(
        "--burn-in", type=float, help=f"fraction of steps supervised only ({D.burn_in})"
    )
    levers.add_argument(
        "--unsup-dice", choices=("image", "batch"),
        help=f"pseudo-label Dice per image or over the batch ({D.unsup_dice})",
    )  # fmt: skip
    levers.add_argument(
        "--confidence", type=float,
        help=f"leave pixels this close to T out of L_U: |p - T| < b at T = 0.5, the same share of "
        f"the room on each side for other T ({D.confidence})",
    )  # fmt: skip
    levers.add_argument(
        "--gate", action=argparse.BooleanOptionalAction, default=None,
        help="after the burn-in, wait for plausible pseudo labels before using them "
        f"(default {'on' if D.gate else 'off'})",
    )  # fmt: skip
    levers.add_argument(
        "--exclusive", action=argparse.BooleanOptionalAction, default=None,
        help="exclusive classes: at most one pseudo label per pixel, the most probable "
        f"(default {'on' if D.exclusive else 'off'})",
    )  # fmt: skip
    float_levers = {
        "ema": "EMA of the weights: makes pseudo labels, becomes the model (decay, {})",
        "perturb": "intensity change of the unlabelled images the network trains on ({})",
        "warp": "random affine map of the unlabelled images the network trains on ({})",
        "affine": "random affine map of the labelled slices, every method (ct 0, else {})",
        "near": "draw unlabelled slices by exp(-distance / (NEAR * slices)) ({})",
        "mix": "probability of a CutMix box from another unlabelled image (mri 0.5, else {})",
        "intensity": "weight of the painted slices' intensities in the E-step (mri 2, else {})",
    }
    for name, text in float_levers.items():
        levers.add_argument(f"--{name}", type=float, help=text.format(getattr(D, name)))
    levers.add_argument(
        "--threshold-signal",
        choices=THRESHOLD_SIGNALS,
        help="segpl-vi: the paper's KL-only head, or a head also fitted on the labelled slices "
        f"(default {D.threshold_signal})",
    )
    t.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="a parameter of the chosen method itself (e.g. FixMatch's tau); repeatable",
    )  # fmt: skip
    t.add_argument("--patch", type=int, help=f"in-plane patch, a multiple of 16 ({D.patch})")
    t.add_argument("--channels", type=int, dest="base_channels", help="first encoder width")
    t.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    t.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast on CUDA")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
