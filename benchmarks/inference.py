"""(b) Whole-volume inference against raw batched forward passes (target <= 1.10x).

The raw reference is the network's forward over the same slices, already normalised and padded,
in the same batches, with no_grad: the least any predictor must do. ``predict_volume`` adds
normalisation, padding, the sigmoid, thresholding and copying back to the volume's grid.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
from napari_segpl.engine.networks import memory_format
from napari_segpl.engine.sampling import Normaliser, pad_in_plane


def run(dims: int, shape: tuple[int, int, int], batch: int, repeats: int) -> tuple[float, float]:
    torch.manual_seed(0)
    cfg = TrainConfig(dims=dims, axis=2, method="segpl")
    model = TrainedModel.new(cfg, 2)
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    vol = np.moveaxis(Normaliser()(image), 2, 0)
    n = vol.shape[0]
    padded = pad_in_plane(vol, 2**cfg.depth)
    fmt = memory_format(dims)
    if dims == 2:
        chunks = [torch.from_numpy(padded[s : s + batch, None]) for s in range(0, n, batch)]
    else:
        idx = [[max(s - 1, 0), s, min(s + 1, n - 1)] for s in range(n)]
        chunks = [
            torch.from_numpy(np.stack([padded[i] for i in idx[s : s + batch]]))[:, None]
            for s in range(0, n, batch)
        ]
    net = model.method.model
    net.eval()

    def raw() -> None:
        with torch.no_grad():
            for x in chunks:
                net(x.contiguous(memory_format=fmt))

    def full() -> None:
        predict_volume(model, image, batch_size=batch, device="cpu")

    times: dict[str, list[float]] = {"raw": [], "predict": []}
    for i in range(repeats + 1):
        for name, fn in (("raw", raw), ("predict", full)):
            t0 = time.perf_counter()
            fn()
            if i:
                times[name].append(time.perf_counter() - t0)
    return statistics.median(times["raw"]), statistics.median(times["predict"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks inference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    shape = (160, 176, 48)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, volume {shape}")
    print("| backbone | raw forward s | predict_volume s | ratio |")
    print("|---|---|---|---|")
    for dims in (2, 3):
        raw, full = run(dims, shape, args.batch, args.repeats)
        print(f"| {dims}D | {raw:.2f} | {full:.2f} | {full / raw:.3f} |")
    return 0
