"""Issue 24: what one training step of each method costs against supervised training's, in one
run (the paper's cost table: SegPL 1.58x, FixMatch 2.64x, CPS 2.69x, CCT 4.07x supervised).

Every method's own step (``compute_loss``, backward, the optimiser, ``after_step``) over the
same synthetic batch of the preset's shape, methods timed round-robin one step each in turn so
that machine noise hits all alike; medians compared. Methods that use no unlabelled images get
the labelled ones alone, as the trainer gives them. A run's cost is the step's times
``total_steps / steps`` (an ensemble trains its members one after another). The trainer's own
work per step (sampling, warps, the guard) is not in this number; ``segpl compare`` times whole
runs.

    python -m benchmarks method_cost [--preset ct] [--dims 3] [--repeats 9] [--methods ...]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from napari_segpl.engine import TrainConfig, get_method
from napari_segpl.engine.methods import Batch

from .speed import _batch, round_robin

#: the paper's training cost against supervised training (its cost table)
PAPER = {"segpl": 1.58, "fixmatch": 2.64, "cps": 2.69, "cct": 4.07}
ALL = ("supervised", "segpl", "segpl-vi", "mean-teacher", "fixmatch", "cct", "cps", "selfloop",
       "ensemble")  # fmt: skip


def runners(preset: str, dims: int, methods: list[str], classes: int) -> dict[str, tuple]:
    """(step function, run-cost factor) per method, each on its own seeded network."""
    out = {}
    for name in methods:
        cfg = TrainConfig.from_preset(preset, method=name, dims=dims)
        batch = _batch(cfg, cfg.patch, classes)
        cls = get_method(name)
        if not cls.uses_unlabelled:
            batch = Batch(batch.x_l, batch.y_l, batch.mask_l, None)
        torch.manual_seed(0)
        method = cls(cfg, classes)
        method.to(torch.device("cpu"))
        opt = torch.optim.Adam(method.parameters(), lr=cfg.lr)
        middle = method.total_steps() // 2 if name != "ensemble" else cfg.steps // 2

        def step(method=method, opt=opt, batch=batch, at=middle) -> None:
            opt.zero_grad(set_to_none=True)
            method.compute_loss(batch, at, lambda s: 1.0).loss.backward()
            opt.step()
            method.after_step()

        out[name] = (step, method.total_steps() / cfg.steps)
    return out


def run(
    preset: str, dims: int, methods: list[str], repeats: int, classes: int = 2
) -> dict[str, dict]:
    steps = runners(preset, dims, methods, classes)
    times = round_robin({name: step for name, (step, _) in steps.items()}, repeats)
    ref = statistics.median(times["supervised"])
    return {
        name: {
            "step_s": statistics.median(t),
            "step_ratio": statistics.median(t) / ref,
            "run_ratio": statistics.median(t) / ref * steps[name][1],
            "spread": (min(t) / ref, max(t) / ref),
        }
        for name, t in times.items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks method_cost")
    parser.add_argument("--preset", default="ct")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dims", type=int, choices=(2, 3), default=3, help="the network")
    parser.add_argument("--methods", nargs="+", default=list(ALL))
    args = parser.parse_args(argv)
    methods = ["supervised", *[m for m in args.methods if m != "supervised"]]
    cfg = TrainConfig.from_preset(args.preset, dims=args.dims)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset} "
        f"({cfg.dims}D, {cfg.channels} channels, patch {cfg.patch}, batch {cfg.batch}, ratio "
        f"{cfg.ratio}), {args.repeats} rounds"
    )
    print("| method | s/step (median) | step / supervised (min-max) | run / supervised | paper |")
    print("|---|---|---|---|---|")
    for name, r in run(args.preset, args.dims, methods, args.repeats).items():
        lo, hi = r["spread"]
        paper = f"{PAPER[name]:.2f}" if name in PAPER else ""
        print(
            f"| {name} | {r['step_s']:.3f} | {r['step_ratio']:.2f} ({lo:.2f}-{hi:.2f}) "
            f"| {r['run_ratio']:.2f} | {paper} |"
        )
    return 0
