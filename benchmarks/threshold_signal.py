"""Where can SegPL-VI's threshold head learn from? (issue 25) A cheap diagnostic on the lungs CT
sample (resources/, 128 x 128 x 34, slices 13, 20 and 26 painted).

For each ``threshold_signal`` asked for, trains SegPL-VI with the ``ct`` preset for ``--steps``
steps on ``--threads`` threads, then, with the trained model's E-step (the EMA weights, which
become the model when training ends):

- ``unsure``: the share of the painted slices' voxels (every class channel; in 3D the centre
  slice; in the moved view only those inside the map) whose E-step probability lies in
  (0.1, 0.9), for the plain painted slices ("plain", what ``labelled`` fits T on) and for
  ``--draws`` views moved and changed as the student sees unlabelled images ("augmented",
  ``moved_view``, what the removed ``augmented`` signal fitted T on, RESULTS.md (z'), (H2));
- ``cut``: the hard threshold, on a grid of 0.05 to 0.95, with the best Dice against the labels
  for each view, and ``flat``: how many of the 19 grid thresholds come within 0.01 of that Dice
  (19: any T fits the labels, so they cannot move T);
- ``mu``: the head's mean mu over the last 10 steps' unlabelled images, and per class over
  every unlabelled slice at the end.

Prints a Markdown table; ``--out`` also writes the rows as JSON.

    python -m benchmarks threshold_signal [--signals kl labelled] [--steps 60]
        [--threads 1] [--seed 0] [--draws 8] [--out FILE.json]
    python -m benchmarks threshold_signal --fit-table ROWS.json   # (bb) rule 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from napari_segpl.engine import StepEvent, TrainConfig, Trainer, prepare_data
from napari_segpl.engine.augment import random_affine, warp, warp_image
from napari_segpl.engine.config import THRESHOLD_SIGNALS
from napari_segpl.engine.methods import Batch
from napari_segpl.engine.methods.segpl import perturb_intensity
from napari_segpl.engine.networks import memory_format
from napari_segpl.engine.sampling import Sampler, stack_indices

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = "lungs_ct"
GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
#: the moved view's affine and intensity strength where the config's ``warp`` or ``perturb`` is 0
MOVED_STRENGTH = 0.2


def load_sample() -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """(image, sparse labels, axis, painted slices) of the lungs CT sample."""
    about = json.loads((ROOT / "resources" / "samples.json").read_text())["samples"][SAMPLE]
    files = about["files"]
    image = np.asarray(nib.load(ROOT / "resources" / files["image"]).dataobj, np.float32)
    labels = np.asarray(nib.load(ROOT / "resources" / files["label_sparse"]).dataobj, np.int32)
    return image, labels, int(about["axis"]), [int(s) for s in about["labelled_slices"]]


def unsure_share(p: torch.Tensor, mask: torch.Tensor | None) -> float:
    """Share of the voxels ``mask`` keeps (all without one) with p in (0.1, 0.9)."""
    unsure = ((p > 0.1) & (p < 0.9)).float()
    if mask is None:
        return unsure.mean().item()
    weight = mask.expand_as(p).float()
    return ((unsure * weight).sum() / weight.sum().clamp_min(1.0)).item()


def moved_view(method, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(E-step probabilities, labels, mask) of the labelled images moved and changed as the
    student sees unlabelled ones, the labels moved alike; the mask keeps the pixels inside the
    map (and, in 3D, the centre slice). Call without gradient."""
    config, x = method.config, batch.x_l
    theta = random_affine(x.shape[0], config.warp or MOVED_STRENGTH, x.device, x.dtype)
    x = perturb_intensity(warp_image(x, theta), config.perturb or MOVED_STRENGTH)
    x = x.contiguous(memory_format=memory_format(config.dims))
    y = (warp(batch.y_l, theta) > 0.5).to(batch.y_l.dtype)
    mask = (warp(torch.ones_like(y[:, :1]), theta) > 0.999).to(y.dtype)
    if batch.mask_l is not None:
        mask = mask * batch.mask_l.to(mask.dtype)
    return method.e_step_probabilities(x), y, mask


def dice_by_cut(p: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """Mean over class channels of the pooled hard Dice of ``p > T`` for each T of GRID."""
    weight = torch.ones_like(p[:, :1]) if mask is None else mask
    dims = (0, *range(2, p.ndim))
    out = []
    for t in GRID:
        cut = (p > float(t)).float() * weight
        inter = (cut * y).sum(dim=dims)
        total = cut.sum(dim=dims) + (y * weight).sum(dim=dims)
        out.append((2 * inter / total.clamp_min(1.0)).mean().item())
    return np.array(out)


def cut_summary(dice: np.ndarray) -> tuple[float, int]:
    """(the best grid threshold, how many grid thresholds come within 0.01 of its Dice)."""
    return float(GRID[int(np.argmax(dice))]), int((dice >= dice.max() - 0.01).sum())


def head_mu_per_class(trainer: Trainer) -> list[float]:
    """The head's mu per class, averaged over every unlabelled slice of the volume."""
    method, data, config = trainer.model.method, trainer.data, trainer.config
    painted = set(data.labelled)
    slices = [s for s in range(data.image.shape[0]) if s not in painted]
    mus = []
    with torch.no_grad():
        for start in range(0, len(slices), 8):
            x = np.stack(
                [
                    data.image[stack_indices(s, data.image.shape[0], config.dims)]
                    for s in slices[start : start + 8]
                ]
            )
            x = torch.from_numpy(x if config.dims == 3 else x[:, 0])[:, None]
            mus.append(method.threshold_distribution(x.float())[1])
    return torch.cat(mus).mean(dim=0).tolist()


def learnt_cut(
    model,
    image: np.ndarray,
    truth: np.ndarray,
    painted: list[int],
    axis: int,
    classes: list[int],
    device: str,
    paint: dict | None = None,
) -> dict:
    """For a SegPL-VI model (the accuracy benchmark's rows, RESULTS.md (bb)): the exported
    scores with the labels cut at the head's mu per slice and class instead of the fixed
    threshold, and the head's mu per class averaged over the unpainted slices. ``paint``: the
    run's painted slices, so that both cuts keep only the parts touching the paint as an
    export does (rows made before 2026-12-06 21:55 UTC scored the mu cut on every part, (G2))."""
    from napari_segpl.engine import exported_scores, predict_volume

    pred = predict_volume(model, image, device=device, cut="mu", probabilities=False, paint=paint)
    scores = exported_scores(pred.labels, truth, painted, axis=axis, classes=classes)
    keep = sorted(set(range(pred.mu.shape[1])) - set(painted))
    return {
        "mu_whole_iou": {str(c): s["iou"] for c, s in scores.items()},
        "mu_whole_dice": {str(c): s["dice"] for c, s in scores.items()},
        "mu_per_class": [round(float(m), 4) for m in pred.mu[:, keep].mean(axis=1)],
    }  # fmt: skip


def run(signal: str, steps: int, seed: int, draws: int) -> dict:
    image, labels, axis, painted = load_sample()
    config = TrainConfig.from_preset(
        "ct", method="segpl-vi", axis=axis, steps=steps, seed=seed, threshold_signal=signal,
        preview_every=0,
    )  # fmt: skip
    trainer = Trainer(config, prepare_data(image, labels, config, labelled=painted))
    start, mus = time.perf_counter(), []
    for event in trainer.run():
        if isinstance(event, StepEvent) and event.mu is not None:
            mus.append(event.mu)
    seconds = time.perf_counter() - start
    method, config = trainer.model.method, trainer.config
    sampler = Sampler(trainer.data, config, np.random.default_rng(seed))
    x, y, mask = sampler.labelled_batch(len(trainer.data.labelled))  # each painted slice once
    batch = Batch(
        torch.from_numpy(x).float(),
        torch.from_numpy(y).float(),
        None if mask is None else torch.from_numpy(mask),
    )
    torch.manual_seed(seed)
    with torch.no_grad():
        p = method.e_step_probabilities(batch.x_l)
        plain_dice = dice_by_cut(p, batch.y_l, batch.mask_l)
        plain = unsure_share(p, batch.mask_l)
        shares, dice = [], np.zeros(len(GRID))
        for _ in range(draws):
            p_aug, y_aug, mask_aug = moved_view(method, batch)
            shares.append(unsure_share(p_aug, mask_aug))
            dice += dice_by_cut(p_aug, y_aug, mask_aug) / draws
    return {
        "signal": signal,
        "steps": steps,
        "seed": seed,
        "dims": config.dims,
        "seconds": round(seconds, 1),
        "unsure_plain": plain,
        "unsure_augmented": float(np.mean(shares)),
        "unsure_augmented_draws": shares,
        "cut_plain": cut_summary(plain_dice),
        "cut_augmented": cut_summary(dice),
        "mu_last10": float(np.mean(mus[-10:])),
        "mu_trace": mus,
        "mu_per_class": head_mu_per_class(trainer),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| signal | steps | dims | unsure plain | unsure augmented | cut plain (flat) "
        "| cut augmented (flat) | mu (last 10) | mu per class | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per_class = ", ".join(f"{m:.3f}" for m in r["mu_per_class"])
        lines.append(
            f"| {r['signal']} | {r['steps']} | {r['dims']} | {r['unsure_plain']:.2%} "
            f"| {r['unsure_augmented']:.2%} | {r['cut_plain'][0]:.2f} ({r['cut_plain'][1]}) "
            f"| {r['cut_augmented'][0]:.2f} ({r['cut_augmented'][1]}) | {r['mu_last10']:.3f} "
            f"| {per_class} | {r['seconds']} |"
        )
    return "\n".join(lines)


def _mean(values: dict) -> float:
    return float(np.mean(list(values.values())))


def fit_table(rows: list[dict]) -> str:
    """RESULTS.md (bb) rule 2: SegPL-VI accuracy rows of the two head fits, paired by dataset
    and seed: mu per class and sigma at the end, whole-volume IoU cut at 0.5 (mean over
    classes), whole-volume Dice cut at 0.5 and at mu, in points."""
    fits = {"default": "dice", "vi-likelihood": "likelihood"}
    lines = [
        "| dataset | seed | fit | mu per class | sigma | IoU at 0.5 | Dice at 0.5 | Dice at mu "
        "| mu - 0.5 cut (Dice pts) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["seed"], r["recipe"])):
        if r["method"] != "segpl-vi" or r["recipe"] not in fits:
            continue
        sigma = r["threshold_trace"][-1][2] if r["threshold_trace"] else float("nan")
        at_half, at_mu = _mean(r["whole_dice"]), _mean(r["mu_whole_dice"])
        lines.append(
            f"| {r['dataset']} | {r['seed']} | {fits[r['recipe']]} "
            f"| {', '.join(f'{m:.3f}' for m in r['mu_per_class'])} | {sigma:.4f} "
            f"| {_mean(r['whole_iou']):.3f} | {at_half:.3f} | {at_mu:.3f} "
            f"| {100 * (at_mu - at_half):+.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks threshold_signal")
    parser.add_argument("--signals", nargs="+", default=["labelled"], choices=THRESHOLD_SIGNALS)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=8, help="augmented views measured")
    parser.add_argument("--out", type=Path, help="also write the rows here (JSON)")
    parser.add_argument("--fit-table", type=Path, help="only print (bb)'s table of these rows")
    args = parser.parse_args(argv)
    if args.fit_table:
        print(fit_table(json.loads(args.fit_table.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    rows = [run(s, args.steps, args.seed, args.draws) for s in args.signals]
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0
