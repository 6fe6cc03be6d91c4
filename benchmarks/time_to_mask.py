"""Time to a mask (issue 26): the wall time of ``segpl train IMAGE LABELS --model M --mask OUT``,
from its start as a process until the mask is written and the process has ended, with the
accuracy the mask reaches.

Cases: ``ct`` (the lungs CT sample and its sparse labels), ``mri`` (the brain MRI sample), and
``generated`` (a 128 x 128 x 120 CT written by ``make_ct``: a body ellipse of soft tissue in air,
three organ-like ellipsoids of other Hounsfield units, one class each, an unlabelled spine,
Gaussian noise; 3 slices painted at the 25th, 50th and 75th percentiles of the slices holding
them, as ``benchmarks/accuracy.py``'s ``spread_slices``). Each run is its own process with
``OMP_NUM_THREADS`` (and so torch's thread count) set to ``--threads``. Accuracy: mean
foreground IoU over the classes on every slice but the painted ones, empty slices included
(``exported_scores``, what a user exports), against the full labels. The CLI's own lines give
the phases: training, the safeguard (its supervised twin and its two whole-volume predictions)
and the mask's prediction (0 when the safeguard's labels were reused); ``other`` is the rest
(start-up, imports, reading, writing).

``--extra`` takes one or more argument strings passed on to ``segpl train`` (``""`` is the
default recipe), so a lever can be timed beside the default in one run; each row carries its
own. Give them with a space inside (``--extra "" "--steps 150"``), or argparse takes them for
options of this benchmark. Rows are appended to ``--out`` (JSON); a Markdown table is printed.

    python -m benchmarks time_to_mask [--cases ct mri generated] [--method segpl]
        [--seeds 0 1 2] [--threads 2] [--extra "" "--steps 150"] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.accuracy import spread_slices
from napari_segpl.engine import exported_scores
from napari_segpl.volume import read_volume

ROOT = Path(__file__).resolve().parents[1]
RESOURCES = ROOT / "resources"
SEGPL = [sys.executable, "-m", "napari_segpl.cli"]
CASES = ("ct", "mri", "generated")
SAMPLES = {"ct": "lungs_ct", "mri": "brain_tissue_mri"}
GENERATED_SHAPE = (128, 128, 120)
#: organ-like ellipsoids: centre (x, y in -1..1, z in 0..1), radii, Hounsfield units
ORGANS = (
    ((-0.35, -0.05, 0.5), (0.35, 0.3, 0.35), 100.0),  # liver-like
    ((0.4, 0.25, 0.45), (0.14, 0.18, 0.25), 180.0),  # kidney-like
    ((0.3, -0.3, 0.6), (0.18, 0.15, 0.25), 0.0),  # fluid-filled
)


def make_ct(
    shape: tuple[int, int, int] = GENERATED_SHAPE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(int16 image in HU, uint8 labels 1..3, one class per organ): soft tissue (40 HU) in a
    body ellipse, air (-1000) outside, organs of other HU, a spine (700, unlabelled), noise of
    20 HU SD. Deterministic for a ``seed``; the anatomy scales with ``shape``."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx, dtype=np.float32),
        np.linspace(-1, 1, ny, dtype=np.float32),
        np.linspace(0, 1, nz, dtype=np.float32),
        indexing="ij",
    )
    hu = np.full(shape, -1000.0, np.float32)
    hu[(x / 0.85) ** 2 + (y / 0.65) ** 2 < 1] = 40.0
    hu[x**2 + (y - 0.45) ** 2 < 0.08**2] = 700.0
    labels = np.zeros(shape, np.uint8)
    for c, ((cx, cy, cz), (rx, ry, rz), value) in enumerate(ORGANS, start=1):
        inside = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 < 1
        hu[inside], labels[inside] = value, c
    hu += rng.normal(0.0, 20.0, shape).astype(np.float32)
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16), labels


def generated_case(
    shape: tuple[int, int, int] = GENERATED_SHAPE,
) -> tuple[np.ndarray, np.ndarray, list[int], np.ndarray]:
    """(image, full labels, the 3 painted slices along axis 2, the sparse labels holding
    only those slices) of the generated CT."""
    image, labels = make_ct(shape)
    painted = spread_slices(labels, 2, 3)
    sparse = np.zeros_like(labels)
    sparse[..., painted] = labels[..., painted]
    return image, labels, painted, sparse


def write_generated(folder: Path, shape: tuple[int, int, int]) -> dict:
    """The generated case's image, sparse labels (3 painted slices along axis 2) and full
    labels as NIfTI files in ``folder``."""
    image, labels, painted, sparse = generated_case(shape)
    affine = np.diag([1.5, 1.5, 3.0, 1.0])
    files = {}
    for name, array in (("image", image), ("label_sparse", sparse), ("label_full", labels)):
        files[name] = folder / f"generated_{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), files[name])
    return {**files, "painted": painted, "axis": 2}


def sample_case(name: str) -> dict:
    """A sample's files, painted slices and axis from resources/samples.json."""
    info = json.loads((RESOURCES / "samples.json").read_text())["samples"][SAMPLES[name]]
    files = {k: RESOURCES / v for k, v in info["files"].items()}
    return {**files, "painted": info["labelled_slices"], "axis": info["axis"]}


def parse_phases(out: str) -> dict:
    """Seconds per phase, and what ran, from ``segpl train``'s own lines (None where absent)."""

    def number(pattern: str) -> float | None:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else None

    first = re.search(r"^preset (\S+), (\S+): .*?(\d)D, (\d+) steps", out, re.M)
    kept = re.search(r"safeguard kept (\S+?):", out)
    reused = "(reused)" in out
    return {
        "preset": first.group(1) if first else None,
        "dims": int(first.group(3)) if first else None,
        "steps": int(first.group(4)) if first else None,
        "train_s": number(r"training (?:done|stopped early): \d+ steps in ([\d.]+) s"),
        "safeguard_s": number(r"safeguard: ([\d.]+) s"),
        "check_predict_s": number(r"whole-volume predictions ([\d.]+) s"),
        "predict_s": 0.0 if reused else number(r"prediction: \d+ slices in ([\d.]+) s"),
        "mask_reused": reused,
        "kept": kept.group(1) if kept else None,
    }


def mask_ious(pred: np.ndarray, truth: np.ndarray, painted: list[int], axis: int) -> list[float]:
    """IoU per class of the truth on every slice but the painted ones (what a user exports)."""
    classes = [int(c) for c in np.unique(truth) if c]
    scores = exported_scores(pred, truth, painted, axis=axis, classes=classes)
    return [scores[c]["iou"] for c in classes]


def safeguard_on_generated(
    seed: int, overrides: dict | None = None
) -> tuple[dict, dict[str, np.ndarray]]:
    """SegPL with the defaults (and ``overrides`` of the preset, a lever's) and the safeguard on
    the generated CT, in this process: the record ((tt), (uu): the painted slices, what the
    safeguard kept and why, the volume ratios, each model's mean IoU on every unpainted slice)
    and each model's exported labels (P on)."""
    from napari_segpl.engine import TrainConfig, predict_volume, prepare_data
    from napari_segpl.engine.config import suggest_preset
    from napari_segpl.engine.safeguard import GuardedTrainer, SafeguardEvent

    image, truth, painted, sparse = generated_case()
    config = TrainConfig.from_preset(
        suggest_preset(image),
        method="segpl",
        axis=2,
        seed=seed,
        preview_every=0,
        **(overrides or {}),
    )
    data = prepare_data(image, sparse, config, labelled=painted)
    guarded = GuardedTrainer(config, data, image)
    verdict = next(e for e in guarded.run() if isinstance(e, SafeguardEvent))
    paint = data.paint()
    scores, labels = {}, {}
    for name, model in (("segpl", guarded.trainer.model), ("supervised", guarded.twin.model)):
        labels[name] = predict_volume(model, image, paint=paint).labels
        scores[name] = float(np.mean(mask_ious(labels[name], truth, painted, 2)))
    record = {"seed": seed, "painted": painted, "kept": verdict.kept, "reason": verdict.reason}
    return {**record, "ratios": verdict.ratios, **scores}, labels


def run_one(case: dict, method: str, extra: str, seed: int, threads: int, work: Path) -> dict:
    """One ``segpl train ... --mask`` process, timed, and its mask scored."""
    model, mask = work / "model.pt", work / "mask.nii.gz"
    for path in (model, mask):
        path.unlink(missing_ok=True)
    command = [*SEGPL, "train", str(case["image"]), str(case["label_sparse"])]
    command += ["--model", str(model), "--mask", str(mask), "--method", method]
    command += ["--seed", str(seed), "--quiet", *shlex.split(extra)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not mask.exists():
        raise RuntimeError(f"{shlex.join(command)} failed ({done.returncode}):\n{done.stderr}")
    truth = read_volume(case["label_full"]).array
    ious = mask_ious(read_volume(mask).array, truth, case["painted"], case["axis"])
    phases = parse_phases(done.stdout)
    known = sum(phases[k] or 0.0 for k in ("train_s", "safeguard_s", "predict_s"))
    return {
        "method": method,
        "extra": extra,
        "seed": seed,
        "threads": threads,
        "seconds": round(seconds, 2),
        "iou": round(float(np.nanmean(ious)), 4),
        "iou_per_class": [round(float(v), 4) for v in ious],
        **phases,
        "other_s": round(seconds - known, 2),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
    }


def table(rows: list[dict]) -> str:
    """Markdown: every run, then the mean per (case, method, extra)."""

    def cell(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    head = "| case | method | extra | seed | seconds | IoU | train s | safeguard s | predict s |"
    lines = [head, "|" + "---|" * 9]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["case"], r["method"], r["extra"]), []).append(r)
        lines.append(
            f"| {r['case']} | {r['method']} | {r['extra'] or '(default)'} | {r['seed']} | "
            f"{r['seconds']:.1f} | {r['iou']:.3f} | {cell(r['train_s'])} | "
            f"{cell(r['safeguard_s'])} | {cell(r['predict_s'])} |"
        )
    for (case, method, extra), group in groups.items():
        mean = {k: statistics.fmean(g[k] for g in group) for k in ("seconds", "iou")}
        lines.append(
            f"| **{case}** | {method} | {extra or '(default)'} | mean of {len(group)} | "
            f"**{mean['seconds']:.1f}** | **{mean['iou']:.3f}** | | | |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks time_to_mask")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--method", nargs="+", default=["segpl"], help="segpl train --method")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each run")
    parser.add_argument(
        "--extra", nargs="+", default=[""], metavar="ARGS",
        help='arguments for segpl train, one string per variant ("" = the defaults)',
    )  # fmt: skip
    parser.add_argument(
        "--generated-shape", type=int, nargs=3, default=list(GENERATED_SHAPE),
        metavar=("X", "Y", "Z"), help="the generated CT's shape (smaller for a smoke run)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/time_to_mask.json")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="time_to_mask-") as tmp:
        work = Path(tmp)
        for name in args.cases:
            case = (
                write_generated(work, tuple(args.generated_shape))
                if name == "generated"
                else sample_case(name)
            )
            for method in args.method:
                for extra in args.extra:
                    for seed in args.seeds:
                        load = os.getloadavg()[0]
                        row = {"case": name, **run_one(case, method, extra, seed,
                                                       args.threads, work)}  # fmt: skip
                        # the machine's 1-minute load before and after: these are seconds
                        row["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
                        if name == "generated":
                            row["shape"] = list(args.generated_shape)
                        rows.append(row)
                        if args.out:  # each row as it comes: a stopped run keeps the rest
                            _append(args.out, row)
                        print(
                            f"{name} {method} [{extra}] seed {seed}: {row['seconds']:.1f} s, "
                            f"IoU {row['iou']:.3f}",
                            file=sys.stderr,
                            flush=True,
                        )
    print(table(rows))
    return 0


def _append(path: Path, row: dict) -> None:
    old = json.loads(path.read_text()) if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([*old, row], indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
