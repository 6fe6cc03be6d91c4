"""(f) The CUDA path: training on the GPU in float32 and bfloat16 autocast, the memory given
back when a run ends or is stopped, and a saved model reloaded and predicting alike.

Needs a CUDA GPU (prints why and exits 1 without one). Seconds per step are medians after five
warm-up steps; the CPU column trains the same configuration in the same process, so the ratio
is measured on one machine. Memory is read with torch.cuda's allocator counters: the peak while
training, then what stays allocated (must be nothing) and reserved (the allocator's cache) after
the trainer has finished. Results: benchmarks/results/cuda-h100.txt.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_segpl.engine import (
    FinishedEvent,
    StepEvent,
    TrainConfig,
    TrainedModel,
    Trainer,
    predict_volume,
    prepare_data,
)

MIB = 2**20


def _volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A 48 x 176 x 176 noisy volume with two bright blobs per slice; 3 slices labelled."""
    rng = np.random.default_rng(seed)
    shape = (48, 176, 176)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    for c, (cy, cx, r) in enumerate([(60, 60, 25), (120, 110, 18)], start=1):
        radius = r * (1 - 0.3 * np.abs(z - 24) / 24)
        labels[(y - cy) ** 2 + (x - cx) ** 2 < radius**2] = c
    image = rng.normal(0, 1, shape).astype(np.float32) + labels * 1.5
    chosen = [12, 24, 36]
    sparse = np.zeros_like(labels)
    sparse[chosen] = labels[chosen]
    return image * 50 + 200, sparse, chosen


def train(cfg: TrainConfig, stop_after: int = 0) -> dict:
    """One run; the step-time median, and the CUDA memory counters around it."""
    image, sparse, chosen = _volume()
    data = prepare_data(np.moveaxis(image, 0, 2), np.moveaxis(sparse, 0, 2), cfg, chosen)
    cuda = cfg.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    trainer = Trainer(cfg, data)
    times, finished = [], None
    for event in trainer.run():
        if isinstance(event, StepEvent):
            if event.step > 5:
                times.append(event.seconds_per_step)
            if stop_after and event.step == stop_after:
                trainer.stop()
        elif isinstance(event, FinishedEvent):
            finished = event
    out = {
        "s_per_step": statistics.median(times) if times else float("nan"),
        "steps": finished.steps_done if finished else 0,
        "stopped": finished.stopped if finished else None,
        "trainer": trainer,
    }
    if cuda:
        torch.cuda.synchronize()
        out.update(
            peak_mib=torch.cuda.max_memory_allocated() / MIB,
            left_mib=(torch.cuda.memory_allocated() - before) / MIB,
            reserved_mib=torch.cuda.memory_reserved() / MIB,
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cuda")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--cpu-steps", type=int, default=12)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to measure")
        return 1
    name = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}, {name}, CPU threads {torch.get_num_threads()}")
    print("| method | dims | autocast | s/step GPU | s/step CPU | CPU/GPU | peak MiB "
          "| allocated after MiB | reserved after MiB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    failures = []
    for dims in (2, 3):
        for method in ("supervised", "segpl", "segpl-vi"):
            cpu_time = None
            if args.cpu_steps:
                cfg = TrainConfig(method=method, dims=dims, steps=args.cpu_steps, device="cpu")
                cpu_time = train(cfg)["s_per_step"]
            for amp in (False, True):
                cfg = TrainConfig(
                    method=method, dims=dims, steps=args.steps, device="cuda", amp=amp,
                    preview_every=10,
                )  # fmt: skip
                r = train(cfg)
                ratio = f"{cpu_time / r['s_per_step']:.1f}" if cpu_time else ""
                cpu = f"{cpu_time:.4f}" if cpu_time else ""
                print(
                    f"| {method} | {dims}D | {'bf16' if amp else 'fp32'} | {r['s_per_step']:.4f} "
                    f"| {cpu} | {ratio} | {r['peak_mib']:.0f} | {r['left_mib']:.1f} "
                    f"| {r['reserved_mib']:.1f} |",
                    flush=True,
                )
                # what the run allocated must be freed; the allocator may keep a few segments
                # cached (cuDNN's), but not the run's working set
                if r["left_mib"] > 1 or r["reserved_mib"] >= r["peak_mib"]:
                    failures.append(f"{method} {dims}D amp={amp}: memory not given back")
                params = r["trainer"].model.method.parameters()
                if any(p.device.type != "cpu" for p in params):
                    failures.append(f"{method} {dims}D: weights left on the GPU")
    # a run stopped after 8 steps gives its memory back too
    r = train(TrainConfig(method="segpl-vi", steps=200, device="cuda", amp=True), stop_after=8)
    print(
        f"stopped run: {r['steps']} steps, stopped={r['stopped']}, allocated after "
        f"{r['left_mib']:.1f} MiB, reserved after {r['reserved_mib']:.1f} MiB"
    )
    if not r["stopped"] or r["steps"] != 8 or r["left_mib"] > 1:
        failures.append("stopped run did not end cleanly")
    # a CUDA-trained model saved, reloaded (weights_only) and predicting on the GPU and the CPU
    model = r["trainer"].model
    image = _volume()[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = model.save(Path(tmp) / "model.pt")
        loaded = TrainedModel.load(path)
    t0 = time.perf_counter()
    gpu = predict_volume(loaded, image, axis=0, device="cuda", mc_samples=4)
    t_gpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    cpu = predict_volume(loaded, image, axis=0, device="cpu", mc_samples=4)
    t_cpu = time.perf_counter() - t0
    agree = float((gpu.labels == cpu.labels).mean())
    diff = float(np.abs(gpu.probabilities - cpu.probabilities).max())
    print(f"prediction of 48 slices with 4 MC samples: GPU {t_gpu:.2f} s, CPU {t_cpu:.2f} s; "
          f"labels agree on {agree:.5f} of voxels, max probability difference {diff:.2e}; "
          f"reserved after {torch.cuda.memory_reserved() / MIB:.1f} MiB")  # fmt: skip
    if agree < 0.999:
        failures.append("GPU and CPU predictions of a reloaded model disagree")
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0
