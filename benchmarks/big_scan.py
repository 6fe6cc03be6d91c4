"""Peak memory of ``segpl train`` and ``segpl predict`` on a big CT (issue 26, "Big scans").

Writes a synthetic 512 x 512 x 400 int16 CT (a body ellipse of soft tissue in air, a liver and
two kidneys of other Hounsfield units, a spine that is not labelled, Gaussian noise) and a sparse
label volume with 3 painted axial slices to a temporary folder, then runs, each under
``/usr/bin/time -v`` in its own process,

* ``segpl train IMAGE LABELS --steps 5 --model M --mask OUT`` (train, then predict the volume),
* ``segpl predict M IMAGE --mask OUT2`` (prediction alone),

and reports each one's peak resident set size ("Maximum resident set size") and wall time.
``--phases`` instead runs the train command's steps in this process and prints the resident
memory and its peak after each phase (the peak is reset between phases through
``/proc/self/clear_refs``), to see where the memory goes. Torch runs on one thread unless
``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE = (512, 512, 400)
PAINTED = (120, 200, 280)  # slices along axis 2 (the default slicing axis)
SEGPL = [sys.executable, "-m", "napari_segpl.cli"]


def make_ct(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(int16 image in HU, uint8 labels: 1 liver, 2 kidneys), built slice by slice so that the
    generator itself stays small."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x, y = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), indexing="ij")
    image = np.empty(shape, np.int16)
    labels = np.zeros(shape, np.uint8)
    for k in range(nz):
        t = k / max(nz - 1, 1)  # 0 .. 1 from feet to head
        hu = np.full((nx, ny), -1000.0)
        hu[(x / 0.85) ** 2 + (y / 0.65) ** 2 < 1] = 30.0  # body: soft tissue
        liver_r = 0.35 * np.sin(np.pi * min(max((t - 0.3) / 0.6, 0.0), 1.0))
        liver = ((x + 0.3) / 1.2) ** 2 + ((y + 0.05) / 0.9) ** 2 < liver_r**2
        kidney_r = 0.14 * np.sin(np.pi * min(max((t - 0.1) / 0.5, 0.0), 1.0))
        kidneys = np.zeros_like(liver)
        for cx in (-0.35, 0.35):
            kidneys |= ((x - cx) / 0.7) ** 2 + ((y - 0.3) / 1.0) ** 2 < kidney_r**2
        spine = x**2 + (y - 0.45) ** 2 < 0.08**2
        hu[liver], hu[kidneys], hu[spine] = 90.0, 200.0, 700.0
        hu += rng.normal(0.0, 25.0, (nx, ny))
        image[:, :, k] = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
        labels[:, :, k][liver] = 1
        labels[:, :, k][kidneys & ~liver] = 2
    return image, labels


def write_inputs(folder: Path, shape: tuple[int, int, int], suffix: str) -> tuple[Path, Path]:
    """The image and its sparse labels (only the ``PAINTED`` slices) as NIfTI in ``folder``."""
    image, labels = make_ct(shape)
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    sparse = np.zeros_like(labels)
    painted = [int(round(p * shape[2] / SHAPE[2])) for p in PAINTED]
    sparse[:, :, painted] = labels[:, :, painted]
    paths = folder / f"ct{suffix}", folder / f"ct_label_sparse{suffix}"
    nib.save(nib.Nifti1Image(image, affine), paths[0])
    nib.save(nib.Nifti1Image(sparse, affine), paths[1])
    return paths


def timed(command: list[str]) -> dict[str, float]:
    """Run ``command`` under ``/usr/bin/time -v``: peak RSS (MB), wall seconds, exit status."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=env
    )
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr)
    if done.returncode or peak is None or wall is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    seconds = sum(float(p) * 60**i for i, p in enumerate(reversed(wall.group(1).split(":"))))
    found = re.search(r"prediction: .*? in ([\d.]+) s", done.stdout + done.stderr)
    return {
        "peak_mb": int(peak.group(1)) / 1024,
        "seconds": seconds,
        "predict_s": float(found.group(1)) if found else float("nan"),
    }


def _status(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` of this process, in MB."""
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


def phases(image_path: Path, labels_path: Path, steps: int) -> None:
    """The train command's phases in this process, with the peak RSS of each."""
    import torch

    from napari_segpl.engine import Trainer, predict_volume, prepare_data
    from napari_segpl.engine.config import TrainConfig, resolve_preset
    from napari_segpl.volume import read_labels, read_volume, write_nifti

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print("| phase | seconds | RSS after (MB) | peak in phase (MB) |\n|---|---:|---:|---:|")
    t = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        print(f"| {name} | {now - t:.1f} | {_status('VmRSS'):.0f} | {_status('VmHWM'):.0f} |")
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        t = time.perf_counter()

    mark("start (imports)")
    image = read_volume(image_path)
    mark(f"read image ({image.array.dtype})")
    preset = resolve_preset(None, image.array)
    config = TrainConfig.from_preset(preset, steps=steps).validate()
    labels = read_labels(labels_path, like=image)
    mark(f"read labels ({labels.array.dtype}), preset {preset}")
    data = prepare_data(image.array, labels.array, config)
    mark("prepare_data")
    trainer = Trainer(config, data)
    for _ in trainer.run():
        pass
    mark(f"train {steps} steps ({trainer.config.dims}D)")
    pred = predict_volume(trainer.model, image.array, device="cpu")
    mark("predict_volume")
    with tempfile.TemporaryDirectory() as tmp:
        write_nifti(pred.labels, image, Path(tmp) / "mask.nii.gz")
    mark("write mask")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks big_scan")
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--uncompressed", action="store_true", help=".nii instead of .nii.gz")
    parser.add_argument("--phases", action="store_true", help="per-phase RSS, in this process")
    parser.add_argument("--keep", type=Path, help="write the volumes here and keep them")
    args = parser.parse_args(argv)
    shape = tuple(args.shape)
    suffix = ".nii" if args.uncompressed else ".nii.gz"
    with tempfile.TemporaryDirectory(prefix="segpl-big-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        image, labels = write_inputs(folder, shape, suffix)  # type: ignore[arg-type]
        print(f"generated {shape} int16 CT in {time.perf_counter() - t0:.0f} s: {image}")
        if args.phases:
            phases(image, labels, args.steps)
            return 0
        model, mask = folder / "model.pt", folder / "mask.nii.gz"
        runs = {
            f"segpl train --steps {args.steps} --mask": [
                *SEGPL, "train", str(image), str(labels), "--steps", str(args.steps),
                "--model", str(model), "--mask", str(mask), "--device", "cpu",
            ],
            "segpl predict --mask": [
                *SEGPL, "predict", str(model), str(image), "--mask", str(folder / "m2.nii.gz"),
                "--device", "cpu",
            ],
        }  # fmt: skip
        threads = os.environ.get("OMP_NUM_THREADS", "1")
        print(f"\n{'x'.join(map(str, shape))} int16 CT ({suffix}), OMP_NUM_THREADS={threads}\n")
        print("| command | peak RSS (MB) | wall (s) | prediction (s) |\n|---|---:|---:|---:|")
        for name, command in runs.items():
            r = timed(command)
            print(f"| `{name}` | {r['peak_mb']:.0f} | {r['seconds']:.0f} | {r['predict_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
