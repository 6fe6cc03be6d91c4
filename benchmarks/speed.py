"""(a) Seconds per step of segpl and segpl-vi against a plain supervised step over the same
labelled and unlabelled images (targets: segpl <= 1.05x, segpl-vi <= 1.10x).

The reference step is the backbone's forward and backward over the same L + U images with a
Dice loss against fixed targets for all of them: what a step costs with no pseudo-labelling at
all. Methods are timed round-robin, one step each in turn, so machine noise hits all alike;
medians are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from napari_segpl.engine import TrainConfig, get_method
from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.methods import Batch
from napari_segpl.engine.networks import memory_format


def _batch(cfg: TrainConfig, size: int, classes: int) -> Batch:
    g = torch.Generator().manual_seed(0)
    depth = (3,) if cfg.dims == 3 else ()
    n_l, n_u = cfg.batch, cfg.batch * cfg.ratio
    fmt = memory_format(cfg.dims)
    x_l = torch.randn(n_l, 1, *depth, size, size, generator=g).contiguous(memory_format=fmt)
    x_u = torch.randn(n_u, 1, *depth, size, size, generator=g).contiguous(memory_format=fmt)
    y_l = (torch.rand(n_l, classes, *depth, size, size, generator=g) > 0.8).float()
    mask = None
    if cfg.dims == 3:
        mask = torch.zeros(1, 1, 3, 1, 1)
        mask[:, :, 1] = 1
    return Batch(x_l, y_l.contiguous(memory_format=fmt), mask, x_u)


def run(
    dims: int, size: int, repeats: int, classes: int = 1, preset: str = "paper"
) -> dict[str, float]:
    cfg = TrainConfig.from_preset(preset, dims=dims)
    batch = _batch(cfg, size, classes)
    x_all = torch.cat([batch.x_l, batch.x_u])
    y_u = (torch.rand(batch.x_u.shape[0], *batch.y_l.shape[1:]) > 0.8).float()
    y_all = torch.cat([batch.y_l, y_u])
    runners = {}
    for name in ("supervised", "segpl", "segpl-vi"):
        torch.manual_seed(0)
        method = get_method(name)(TrainConfig.from_preset(preset, dims=dims, method=name), classes)
        method.to(torch.device("cpu"))
        opt = torch.optim.Adam(method.parameters(), lr=0.01)
        if name == "supervised":

            def step(method=method, opt=opt) -> None:
                opt.zero_grad(set_to_none=True)
                logits, _ = method.model(x_all)
                segmentation_loss(logits, y_all, "dice", batch.mask_l).backward()
                opt.step()

            runners["supervised L+U"] = step
        else:

            def step(method=method, opt=opt) -> None:
                opt.zero_grad(set_to_none=True)
                method.compute_loss(batch, 100, lambda s: 1.0).loss.backward()
                opt.step()
                method.after_step()  # the EMA update, where the preset has one

            runners[name] = step
    return {k: statistics.median(v) for k, v in round_robin(runners, repeats).items()}


def round_robin(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each step, timed one step each in turn for ``repeats`` rounds after two
    warm-up rounds, so that machine noise hits every step alike."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for i in range(repeats + 2):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks speed")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument(
        "--preset", default="paper",
        help="paper: the paper's SegPL step (the targets' subject); mri: the default recipe",
    )  # fmt: skip
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print("| backbone | L+U images | supervised L+U s/step | segpl | ratio | segpl-vi | ratio |")
    print("|---|---|---|---|---|---|---|")
    for dims in (2, 3):
        cfg = TrainConfig.from_preset(args.preset, dims=dims)
        med = run(dims, args.size, args.repeats, preset=args.preset)
        ref = med["supervised L+U"]
        images = f"{cfg.batch}+{cfg.batch * cfg.ratio}"
        print(
            f"| {dims}D {cfg.channels}ch {args.size}px | {images} | {ref:.3f} | "
            f"{med['segpl']:.3f} | {med['segpl'] / ref:.3f} | {med['segpl-vi']:.3f} | "
            f"{med['segpl-vi'] / ref:.3f} |"
        )
    return 0
