"""What the ``segpl`` command reads and writes, checked before the work starts: a user's
mistake in an output argument must not cost a whole training run (Ctrl-C and failures while
training: ``run_guard``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .engine import METHODS, DataError, check_slice_size, removed_note
from .engine.uncertainty import (
    ENTROPY,
    KINDS,
    MC,
    MC_SAMPLES,
    TTA,
    TTA_DEGREES,
    TTA_SAMPLES,
    TTA_SCALE,
    TWIN,
    predict_with_twin,
    resolve_kind,
    uncertainty_maps,
)
from .volume import Volume, VolumeError, check_labels, read_volume, write_nifti


def check_prediction_numbers(args: argparse.Namespace) -> None:
    """The numbers of a prediction's options (segpl train, predict and suggest)."""
    if args.mc_samples < 1:
        raise ValueError("--mc-samples must be at least 1")
    if getattr(args, "tta_samples", TTA_SAMPLES) < 2:
        raise ValueError("--tta-samples must be at least 2 (the first is the image itself)")
    if args.batch_slices < 1:
        raise ValueError("--batch-slices must be at least 1")


def check_outputs(
    args: argparse.Namespace, inputs: dict[str, Path], model: Path | None = None
) -> None:
    """Every output argument that can be checked before the work starts: numbers, file
    types, folders that can be written, and no output written over another or an input."""
    check_prediction_numbers(args)
    if getattr(args, "uncertainty_kind", None) and not args.uncertainty:
        raise ValueError("--uncertainty-kind needs --uncertainty OUT.nii.gz")
    seen = {path.resolve(): f"input {what}" for what, path in inputs.items()}
    outputs = {"--model": model}
    outputs.update({"--mask": args.mask, "--prob": args.prob, "--uncertainty": args.uncertainty})
    for flag, path in outputs.items():
        if path is None:
            continue
        if flag != "--model" and not path.name.lower().endswith((".nii", ".nii.gz")):
            raise ValueError(f"{flag} {path}: output must end with .nii or .nii.gz")
        if path.is_dir():
            raise ValueError(f"{flag} {path}: is a folder; give a file name")
        key = path.resolve()
        if key in seen:
            raise ValueError(f"{flag} {path} would overwrite the {seen[key]}")
        seen[key] = f"{flag} output"
        folder = key.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"{flag} {path}: cannot write in {folder}")


def mask_notes(removed: dict[int, int] | None, against_paint: str) -> None:
    """What the paint did to the mask (``removed_note``), and a warning line on stderr when a
    painted class is missing from it or unlike its paint (``Prediction.paint_note``)."""
    if note := removed_note(removed):
        print(f"mask: {note}")
    if against_paint:
        print(f"warning: {against_paint}", file=sys.stderr)


def check_uncertainty(args: argparse.Namespace, method: str, twin: bool = False) -> str | None:
    """The uncertainty kind ``--uncertainty`` writes for a ``method`` model (``--uncertainty-
    kind``, default the method's own: see ``engine.uncertainty``; with ``twin``, a safeguarded
    run's other model, the TTA std with twin, whichever model was kept: it found the exported
    mask's wrong voxels best, RESULTS.md (M2)), or None when none is asked for; a kind the
    method does not have is refused before any work starts."""
    kind = getattr(args, "uncertainty_kind", None)
    if not args.uncertainty:
        return None
    if twin and kind in (TWIN, None):
        return TWIN
    try:
        return resolve_kind(METHODS[method], kind)
    except ValueError as exc:
        raise ValueError(f"--uncertainty-kind: {exc}") from exc


def uncertainty_for_kept(
    args: argparse.Namespace, model: Any, trained: str, twin: bool = False
) -> str | None:
    """After the safeguard chose ``model`` over the ``trained`` method: a line for the
    terminal when ``--uncertainty`` changes meaning, or None. An explicit kind the kept model
    lacks is dropped (``args.uncertainty`` = None: nothing fails after training); the default
    kind becomes the kept model's own, and the line says so. ``twin`` False (Stop came before
    the safeguard decided): an explicit tta-twin becomes tta, and the line says so."""
    kept = model.config.method
    kind = getattr(args, "uncertainty_kind", None)
    if args.uncertainty and kind == TWIN and not twin:
        args.uncertainty_kind = TTA
        return "note: no twin (the safeguard did not decide): --uncertainty holds the TTA std"
    if not args.uncertainty or kept == trained or (twin and kind in (TWIN, None)):
        return None
    try:
        own = resolve_kind(METHODS[kept], kind)
    except ValueError as exc:
        args.uncertainty = None
        return f"warning: --uncertainty not written: the safeguard kept {kept}: {exc}"
    return f"note: the safeguard kept {kept}: --uncertainty holds its {KINDS[own].title}"


def read_image(path: Path, series: str | None) -> Volume:
    """The image, naming on the terminal which DICOM series was read when there were several."""
    image = read_volume(path, series)
    if image.note:
        print(f"note: {image.note}", file=sys.stderr)
    return image


def check_slices(model: Any, image: Volume, axis: int | None) -> None:
    """Slices too small for ``model``'s 2D U-net (its deepest level one voxel) said in one
    line before predicting, not as torch's 'Expected more than 1 spatial element': the
    engine's check (``check_slice_size``), with the file's name."""
    try:
        check_slice_size(model.config, image.shape, axis)
    except DataError as exc:
        raise VolumeError(f"{image.path}: {exc}") from exc


def mask_only(args: argparse.Namespace) -> bool:
    """Whether the outputs asked for are a mask alone: then the labels of the safeguard's
    check (a whole-volume prediction of the kept model) can be written without predicting
    again."""
    return bool(args.mask) and not (args.prob or args.uncertainty)


def write_outputs(
    args: argparse.Namespace,
    model: Any,
    image: Volume,
    checked: Any = None,
    paint: dict[int, np.ndarray] | None = None,
    keep_parts: bool = True,
    twin: Any = None,
) -> None:
    """Predict ``image`` with ``model`` and write the outputs asked for (each atomically);
    ``twin``: a safeguarded run's other model, for the TTA std with twin.
    ``paint``: the trained-on slices' labels; the mask keeps only the parts touching them
    unless ``keep_parts`` is False, and a painted class missing from it is named either way.

    ``checked``: the safeguard's ``CheckedLabels``; for a mask alone predicted as the check
    predicted (same model, axis and device), its labels are written instead of predicting the
    volume a second time (they are the same voxels: see tests/test_cli_reuse.py)."""
    from .engine import predict_volume

    kind = check_uncertainty(args, model.config.method, twin is not None)
    if not (args.mask or args.prob or args.uncertainty):
        return
    axis = getattr(args, "axis_predict", None)
    device = args.device or "auto"
    check_slices(model, image, axis)
    parts = paint is not None and keep_parts
    if checked is not None and mask_only(args) and checked.fits(model, axis, device, parts):
        print("prediction: the safeguard's check predicted this model already (reused)")
        mask_notes(checked.removed, checked.paint_note)
        print(f"mask        -> {write_nifti(checked.labels, image, args.mask)}")
        return
    from tqdm import tqdm

    slices = image.array.shape[model.config.axis if axis is None else axis]
    bar = tqdm(total=slices, unit="slice", desc="predict", file=sys.stderr,
               dynamic_ncols=True, disable=getattr(args, "quiet", False))  # fmt: skip

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    start = time.perf_counter()
    with bar:
        pred = (
            partial(predict_with_twin, model, twin)
            if kind == TWIN
            else partial(predict_volume, model)
        )(  # fmt: skip
            image.array,
            axis=axis,
            batch_size=args.batch_slices,
            mc_samples=args.mc_samples if kind == MC else 0,
            tta_samples=getattr(args, "tta_samples", TTA_SAMPLES) if kind in (TTA, TWIN) else 0,
            device=device,
            progress=progress,
            # a mask alone needs no (K, *shape) float32 probabilities (840 MB, 2 classes of
            # a 512 x 512 x 400 scan); --prob and the entropy map do
            probabilities=bool(args.prob) or kind == ENTROPY,
            paint=paint,
            keep_parts=keep_parts,
        )
    print(f"prediction: {slices} slices in {time.perf_counter() - start:.1f} s")
    mask_notes(pred.removed, pred.paint_note)
    if args.mask:
        print(f"mask        -> {write_nifti(pred.labels, image, args.mask)}")
    if args.prob:
        print(f"probability -> {write_nifti(channels_last(pred.probabilities), image, args.prob)}")
    if kind is not None:
        out = write_nifti(channels_last(uncertainty_maps(pred, kind)), image, args.uncertainty)
        print(f"uncertainty -> {out} ({KINDS[kind].description})")


def channels_last(array: np.ndarray) -> np.ndarray:
    """(K, x, y, z) -> (x, y, z) for one class, else (x, y, z, K), the NIfTI 4D convention."""
    return array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)


def slice_list(text: str) -> list[int]:
    """ "3,40,77" -> [3, 40, 77], for argparse."""
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected slice numbers like 3,40,77: {text!r}") from exc


def add_output_args(p: argparse.ArgumentParser, mask_required: bool, twin: bool = False) -> None:
    """``twin``: the command trains with the safeguard (segpl train), so tta-twin is a kind."""
    p.add_argument(
        "--mask",
        type=Path,
        required=mask_required,
        metavar="OUT.nii.gz",
        help="write the predicted label volume here (NIfTI, on the input's grid)",
    )
    p.add_argument(
        "--prob",
        type=Path,
        metavar="OUT.nii.gz",
        help="write per-class probabilities (3D for one class, x*y*z*K for K classes)",
    )
    p.add_argument(
        "--uncertainty",
        type=Path,
        metavar="OUT.nii.gz",
        help="write per-class uncertainty (3D for one class, x*y*z*K for K classes) of the kind "
        "--uncertainty-kind says",
    )
    p.add_argument(
        "--uncertainty-kind",
        choices=[k for k in KINDS if twin or k != TWIN],
        help="entropy: binary entropy of p in bits (every method); mc: std of 1(p > T_k) over "
        "K thresholds drawn from the learnt distribution (segpl-vi); spread: std of the "
        "members' probabilities (ensemble); tta: std of p over --tta-samples small affine maps, "
        "each mapped back (every method; M - 1 extra passes)"
        + (
            "; tta-twin: tta pooled with the safeguard's other model's (2M passes)" if twin else ""
        )  # fmt: skip
        + ". Default: "
        + (
            "tta-twin after a run the safeguard checked (not with --no-safeguard), else "
            if twin
            else ""
        )
        + "spread for ensemble, entropy for every other method (segpl-vi too: it finds wrong "
        "voxels better than mc)",
    )
    p.add_argument(
        "--mc-samples",
        type=int,
        default=MC_SAMPLES,
        metavar="K",
        help=f"thresholds drawn for --uncertainty-kind mc (default {MC_SAMPLES}, as in the paper)",
    )
    p.add_argument(
        "--tta-samples",
        type=int,
        default=TTA_SAMPLES,
        metavar="M",
        help=f"predictions for --uncertainty-kind tta: the image itself and M - 1 copies rotated "
        f"(up to {TTA_DEGREES:g} degrees) and scaled (up to {100 * TTA_SCALE:g} %%) "
        f"in-plane, a fixed list (default {TTA_SAMPLES})",
    )
    p.add_argument("--batch-slices", type=int, default=8, help="slices per inference batch")


def add_series_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--series",
        metavar="UID",
        help="the DICOM series to read from an IMAGE folder holding several (default: the one "
        "with the most slices; the others are named when the folder is read)",
    )


def safeguard_lines(event: Any) -> str:
    """What the safeguard kept and why, with each model's held-out Dice when there is one."""
    lines = [event.message]
    if event.seconds:  # where the time to a mask goes (benchmarks/time_to_mask.py reads it)
        twin = event.seconds - event.predict_seconds
        lines.append(
            f"  safeguard: {event.seconds:.1f} s (supervised twin {twin:.1f} s, both models' "
            f"whole-volume predictions {event.predict_seconds:.1f} s)"
        )
    for method, dice in (event.heldout or {}).items():
        per_class = ", ".join(f"{d:.3f}" for d in dice)
        lines.append(f"  held-out Dice, {method}: {sum(dice) / len(dice):.3f} ({per_class})")
    return "\n".join(lines)


def evaluate_command(args: argparse.Namespace) -> int:
    """``segpl evaluate``: per-class scores of a predicted label volume against the truth."""
    from .engine import overlap_scores

    truth = read_volume(args.truth)
    pred = read_volume(args.pred)
    if pred.shape != truth.shape:  # both files named, as every other input error names its
        raise ValueError(f"{args.pred}: shape {pred.shape} differs from the truth's, "
                         f"{truth.shape} ({args.truth}): not one grid")  # fmt: skip
    check_labels(pred, truth)  # same grid, whole non-negative labels
    check_labels(truth, truth)
    depth = truth.shape[args.axis]
    outside = [s for s in args.slices or [] if not 0 <= s < depth]
    if outside:  # np.take would raise on some and count from the end on negative ones
        raise ValueError(f"--slices {outside} lie outside 0..{depth - 1} along axis {args.axis}")
    if args.slices == []:
        raise ValueError("--slices names no slice")
    slices = None if args.slices is None else sorted(set(args.slices))  # "3,3": slice 3 once
    scores = overlap_scores(pred.array, truth.array, axis=args.axis, slices=slices,
                            nested=args.nested)  # fmt: skip
    if args.json:
        print(json.dumps({str(c): s for c, s in scores.items()}, indent=2))
        return 0
    if not scores:  # not an empty table
        print("no class: both volumes hold only background (0) there; nothing to score")
        return 0
    print(f"{'class':>5}  {'IoU':>7}  {'Dice':>7}  {'pred vox':>9}  {'true vox':>9}")
    for c, s in scores.items():
        iou = "n/a" if math.isnan(s["iou"]) else f"{s['iou']:.4f}"
        dice = "n/a" if math.isnan(s["dice"]) else f"{s['dice']:.4f}"
        print(f"{c:>5}  {iou:>7}  {dice:>7}  {s['pred_voxels']:>9.0f}  {s['true_voxels']:>9.0f}")
    return 0
