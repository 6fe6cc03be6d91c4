"""Issue 26: two CPU levers for the training step that need no new recipe.

``bf16`` (default): bfloat16 autocast, where the CPU has bfloat16 instructions (this machine's
Xeon: AVX512-BF16 and AMX).

Each case trains the project's U-net (2D 16 channels or 3-slice 3D 8 channels) on 6 images with
Adam, float32 and bfloat16 autocast steps round-robin, in a child process of its own, because
a crash inside torch's kernels ends the process: a case that dies is reported with its signal
instead of a time.

``denormal``: flushing denormal floats to zero (``torch.set_flush_denormal``), which x86 CPUs
compute far slower than normal ones: two default-recipe trainings of the CT sample, same seed,
their steps alternating, the flush on for one; medians of the first and second half of the
steps.

    python -m benchmarks cpu_levers [bf16|denormal] [--threads 1] [--repeats 6] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: (name, dims, in-plane size)
CASES = (("2D 176 px", 2, 176), ("3D 96 px", 3, 96), ("3D 176 px", 3, 176))


def _child(dims: int, size: int, threads: int, repeats: int) -> dict[str, float]:
    import torch

    from napari_segpl.engine.networks import UNet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = UNet(dims, 1, 3, base=16 if dims == 2 else 8)
    x = torch.randn((6, 1, size, size) if dims == 2 else (6, 1, 3, size, size))
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def step(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out, _ = net(x)
        loss = out.float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {False: [], True: []}
    for bf16 in (False, True):  # warm-up
        step(bf16)
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(step(bf16))
    return {"fp32": statistics.median(times[False]), "bf16": statistics.median(times[True])}


def denormal(steps: int, threads: int) -> str:
    """The ``denormal`` table: each training's step times, the flush off and on."""
    import torch

    from napari_segpl.engine import TrainConfig, prepare_data
    from napari_segpl.engine.trainer import StepEvent, Trainer
    from napari_segpl.volume import read_volume

    torch.set_num_threads(threads)
    root = Path(__file__).resolve().parents[1] / "resources"
    image = read_volume(root / "lungs_ct_image.nii.gz").array
    labels = read_volume(root / "lungs_ct_label_sparse.nii.gz").array
    config = TrainConfig.from_preset("ct", dims=3, steps=steps, device="cpu", preview_every=0)
    data = prepare_data(image, labels, config)
    runs = {flush: Trainer(config, data).run() for flush in (False, True)}
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(steps):
        for flush, events in runs.items():
            torch.set_flush_denormal(flush)
            start = time.perf_counter()
            while not isinstance(next(events), StepEvent):
                pass
            times[flush].append(time.perf_counter() - start)
    torch.set_flush_denormal(False)
    lines = ["| denormals | steps | median s/step, first half | second half |", "|---|---|---|---|"]
    for flush, t in times.items():
        half = len(t) // 2
        first, second = statistics.median(t[:half]), statistics.median(t[half:])
        name = "flushed" if flush else "kept"
        lines.append(f"| {name} | {len(t)} | {first:.3f} | {second:.3f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cpu_levers")
    parser.add_argument("lever", nargs="?", choices=("bf16", "denormal"), default="bf16")
    parser.add_argument("--steps", type=int, default=60, help="denormal: steps per training")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child, args.threads, args.repeats)))
        return 0
    if args.lever == "denormal":
        print(denormal(args.steps, args.threads))
        return 0
    print("| case | fp32 s/step | bf16 s/step | bf16 / fp32 |\n|---|---|---|---|")
    for name, dims, size in CASES:
        cmd = [sys.executable, "-m", "benchmarks", "cpu_levers", "--child", str(dims), str(size),
               "--threads", str(args.threads), "--repeats", str(args.repeats)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            why = done.stderr.strip().splitlines()[-1:] or [""]
            print(f"| {name} | - | crashed (exit {done.returncode}: {why[0]}) | - |")
            continue
        t = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"| {name} | {t['fp32']:.3f} | {t['bf16']:.3f} | {t['bf16'] / t['fp32']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
