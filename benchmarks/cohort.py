"""Cohort throughput of ``segpl predict --out`` (volumes per minute) with 1 and 2 local workers.

Each worker count gets a fresh local cluster (the one segpl starts), then a warm-up cohort of
one volume per worker (so that every worker has imported torch and holds the model), then the
timed cohort. Volumes per minute is counted over the timed cohort only; the start-up (cluster
and warm-up) is reported beside it, since a short cohort pays it once. Threads per worker are
segpl's default (CPU cores / workers) unless --threads is given. Volumes are generated, and the
model has random weights: prediction costs the same whatever the weights.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from napari_segpl.cohort import Settings, cpu_cores, local_cluster, run_cohort
from napari_segpl.engine import TrainConfig, TrainedModel


def _write_volumes(folder: Path, count: int, shape: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        image = (rng.normal(size=shape) * 40 + 100).astype(np.float32)
        nib.save(nib.Nifti1Image(image, np.eye(4)), folder / f"v{i:03d}.nii.gz")


def run(workers: int, threads: int, model: Path, root: Path, volumes: int) -> dict[str, float]:
    """One worker count: seconds to start, to warm up, and the timed cohort's throughput."""
    t0 = time.perf_counter()
    with local_cluster(workers, threads) as cluster:
        started = time.perf_counter() - t0
        settings = Settings(scheduler=cluster.scheduler_address, threads=threads, progress=False)
        t1 = time.perf_counter()
        warm = run_cohort(model, [root / "warm"], root / f"out-warm-{workers}", settings)
        warmed = time.perf_counter() - t1
        t2 = time.perf_counter()
        report = run_cohort(model, [root / "cohort"], root / f"out-{workers}", settings)
        seconds = time.perf_counter() - t2
    if report.count("written") != volumes or warm.count("failed"):
        raise RuntimeError(f"{workers} worker(s): {report.summary()}")
    return {"start": started, "warm": warmed, "seconds": seconds, "vpm": 60 * volumes / seconds}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cohort")
    parser.add_argument("--volumes", type=int, default=16, help="volumes in the timed cohort")
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 160, 48))
    parser.add_argument("--threads", type=int, help="torch threads per worker (default: segpl's)")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    cores = cpu_cores()
    with tempfile.TemporaryDirectory(prefix="segpl-cohort-") as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = TrainedModel.new(TrainConfig(dims=2, axis=2, method="segpl"), 1)
        model_path = model.save(root / "model.pt")
        _write_volumes(root / "cohort", args.volumes, shape)
        _write_volumes(root / "warm", 2, shape)
        rows = {}
        for workers in (1, 2):
            threads = args.threads or max(1, cores // workers)
            rows[workers] = (threads, run(workers, threads, model_path, root, args.volumes))
    print(
        f"torch {torch.__version__}, {cores} CPU cores, {args.volumes} volumes of {shape} "
        "float32, 2D U-net (default width), CPU"
    )
    print("| workers | torch threads each | cluster start s | warm-up s | cohort s | volumes/min |")
    print("|---|---|---|---|---|---|")
    for workers, (threads, r) in rows.items():
        print(
            f"| {workers} | {threads} | {r['start']:.1f} | {r['warm']:.1f} | {r['seconds']:.1f} "
            f"| {r['vpm']:.1f} |"
        )
    print(f"\nthroughput ratio, 2 workers / 1 worker: {rows[2][1]['vpm'] / rows[1][1]['vpm']:.2f}")
    return 0
