"""Time to a mask from the dock (issue 26): the CT sample opened as a user opens it (*File >
Open Sample*, its three painted slices), the dock's defaults (the safeguard on), then the
clicks a user makes: *Train*, *Predict* once the run and its pseudo-label fill are done, and
*Export*. Seconds from the Train click to each phase's end, and the exported mask's accuracy
scored as ``time_to_mask`` scores the CLI's (mean foreground IoU on every slice but the painted
ones, against the sample's full labels), so the two paths are read side by side.

Each run is its own process, torch's threads set to ``--threads`` (as ``OMP_NUM_THREADS``), the
window 1600 x 1000; ``--seeds`` are the dock's *seed* field. Rows are appended to ``--out``. Run
under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m benchmarks dock_time_to_mask \\
        [--seeds 0 1 2] [--threads 2] [--steps N] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_segpl.volume import read_volume

from .time_to_mask import RESOURCES, mask_ious

SAMPLE = "lungs_ct"


def _wait_idle(dock, timeout: float) -> None:
    """Qt's own event loop until the dock is idle, as in a user's session: it sleeps between
    events (a loop of processEvents and short sleeps took CPU from the worker's threads)."""
    from qtpy.QtCore import QEventLoop, QTimer

    end = time.perf_counter() + timeout
    loop, timer = QEventLoop(), QTimer()

    def check() -> None:
        if not (dock.state.busy or dock.state.predict_queued is not None):
            loop.quit()
        elif time.perf_counter() > end:
            loop.exit(1)

    timer.timeout.connect(check)
    timer.start(50)
    failed = loop.exec_()
    timer.stop()
    if failed:
        raise TimeoutError("the dock did not finish in time")


def one_run(seed: int, steps: int) -> dict:
    """One Train - Predict - Export round in this process; the row it measured."""
    import napari

    from napari_segpl.gui import SegPLDock

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-segpl", SAMPLE)
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock)
    dock.params.seed.value = seed
    if steps:
        dock.params.steps.value = steps
    dock.warmed_up.wait(30)  # as a user would: the dock has been open a moment before Train
    painted = dock.data.labelled()
    t0 = time.perf_counter()
    if not dock.start_training():
        raise RuntimeError("Train did not start")
    _wait_idle(dock, 3600)
    trained = time.perf_counter() - t0
    safeguard = dock.training.status.text()
    if not dock.start_prediction():
        raise RuntimeError("Predict did not start")
    _wait_idle(dock, 3600)
    predicted = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = dock.results.export(Path(tmp) / "mask.nii.gz", viewer.layers["prediction"])
        exported = time.perf_counter() - t0
        mask = read_volume(out).array
    truth = read_volume(RESOURCES / f"{SAMPLE}_label_full.nii.gz").array
    iou = float(np.nanmean(mask_ious(mask, truth, painted, dock.state.axis)))
    row = dict(
        case=SAMPLE, seed=seed, steps=dock.model.steps_done, threads=int(os.environ.get(
            "OMP_NUM_THREADS", "0")), trained=trained, predicted=predicted, exported=exported,
        tta_samples=dock.results.tta_spin.value(), iou=iou, status=safeguard.replace("\n", "; "),
        load=os.getloadavg()[0], date=time.strftime("%Y-%m-%d %H:%M"),
    )  # fmt: skip
    dock.shutdown()
    viewer.close()
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dock_time_to_mask")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=0, help="0: the dock's default")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dock_time.json"))
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # a child
    args = parser.parse_args(argv)
    if args.one is not None:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(one_run(args.one, args.steps)), flush=True)
        return 0
    rows = json.loads(args.out.read_text()) if args.out.exists() else []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for seed in args.seeds:
        cmd = [sys.executable, "-m", "benchmarks", "dock_time_to_mask", "--one", str(seed),
               "--threads", str(args.threads), "--steps", str(args.steps)]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            print(f"seed {seed} failed:\n{done.stderr[-2000:]}")
            continue
        rows.append(json.loads(lines[-1]))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    print("| seed | steps | threads | trained (s) | predicted (s) | exported (s) | IoU | status |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['steps']} | {r['threads']} | {r['trained']:.1f} "
            f"| {r['predicted']:.1f} | {r['exported']:.1f} | {r['iou']:.3f} | {r['status']} |"
        )
    return 0
