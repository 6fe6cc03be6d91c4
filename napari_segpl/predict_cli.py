"""``segpl predict``'s arguments and command: one volume in this process, or a cohort with
``--out`` (run on Dask by ``cohort.py``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import _cli_support as support
from .cohort import MASK_SUFFIX, Settings, run_cohort


def add_predict_parser(sub: Any) -> None:
    """The ``predict`` subcommand: one IMAGE with --mask, or many with --out DIR."""
    p = sub.add_parser(
        "predict",
        help="segment a volume, or a cohort of volumes, with a saved model",
        description="Predict every slice of IMAGE with MODEL and write NIfTI on IMAGE's grid "
        "(--mask, --prob, --uncertainty). With --out DIR, IMAGE may be many files, folders or "
        "globs (a DICOM folder is one volume): one mask each, DIR/<name>_mask.nii.gz, predicted "
        "on Dask workers (a local cluster unless --scheduler); masks present are skipped unless "
        "--overwrite (one that another scan of that name or another model wrote fails that "
        "input); an input (file, folder or glob) that names no volume stops the command before "
        "any work; a volume that fails does not stop the others (exit status 1 at the end).",
    )
    p.add_argument("model", type=Path, help="model file saved by 'segpl train'")
    p.add_argument("image", nargs="+", help="image volume(s): files, folders, DICOM folders, globs")
    support.add_series_arg(p)
    support.add_output_args(p, mask_required=False)
    p.add_argument("--axis", type=int, choices=(0, 1, 2), help="default: the training axis")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--paint", type=Path, metavar="LABELS",
        help="the labels the model trained on (on IMAGE's grid): the mask keeps only the parts "
        "of each class that touch their paint, as 'segpl train --mask' writes it (one image); "
        "a painted class missing from the mask is named on stderr",
    )  # fmt: skip
    p.add_argument(
        "--painted-parts", action=argparse.BooleanOptionalAction, default=True,
        help="with --paint: keep only the parts touching the paint (default); "
        "--no-painted-parts keeps every predicted part and only names a missing class",
    )  # fmt: skip
    c = p.add_argument_group("cohort (--out)")
    c.add_argument("--out", type=Path, metavar="DIR", help="write one mask per input volume here")
    c.add_argument("--overwrite", action="store_true", help="redo masks already present in DIR")
    c.add_argument(
        "--workers", type=int, metavar="N",
        help="local Dask workers (default: one per GPU, else min(4, CPU cores))",
    )  # fmt: skip
    c.add_argument(
        "--threads", type=int, metavar="N",
        help="torch threads per worker (default: CPU cores / workers; with --scheduler, each "
        "worker's thread count)",
    )  # fmt: skip
    c.add_argument("--scheduler", metavar="ADDRESS", help="this Dask cluster (tcp://host:8786)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")


def predict_command(args: argparse.Namespace) -> int:
    """``segpl predict``: the single-volume form in this process, or a cohort with --out."""
    from .engine import TrainedModel

    if not args.painted_parts and args.paint is None:  # else silently unused
        raise ValueError("--no-painted-parts goes with --paint LABELS")
    if args.out is None:
        if args.mask is None or len(args.image) > 1:
            raise ValueError("give one image with --mask OUT.nii.gz, or images with --out DIR")
        for flag in ("overwrite", "workers", "threads", "scheduler"):  # else silently unused
            if getattr(args, flag) not in (None, False):
                also = "; one image's --mask is always replaced" if flag == "overwrite" else ""
                raise ValueError(f"--{flag} is for a cohort (--out DIR){also}")
        image_path = Path(args.image[0])
        inputs = {"image": image_path, "model": args.model}
        support.check_outputs(args, inputs | ({"paint": args.paint} if args.paint else {}))
        model = TrainedModel.load(args.model)
        support.check_uncertainty(args, model.config.method)
        args.axis_predict = args.axis
        image = support.read_image(image_path, args.series)
        paint = None if args.paint is None else read_paint(args.paint, image, model.config.axis)
        support.write_outputs(args, model, image, paint=paint, keep_parts=args.painted_parts)
        return 0
    if args.paint is not None:
        raise ValueError("--paint is for one image (the one it was painted on), not --out")
    for flag in ("mask", "prob", "uncertainty", "uncertainty_kind"):
        if getattr(args, flag) is not None:
            name = flag.replace("_", "-")
            raise ValueError(f"--{name} is for one image; with --out only masks are written")
    if args.series is not None:  # one UID names one series: every other input would fail
        raise ValueError("--series picks a series of one DICOM folder; with --out each folder's "
                         "series with the most slices is read")  # fmt: skip
    for flag in ("workers", "threads"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1")
    support.check_outputs(args, {})  # the numbers shared with the one-volume form
    if args.scheduler is None:  # local workers have this machine's devices: one line, not one
        from .engine.device import resolve_device  # failure per volume after the cluster start

        resolve_device(args.device)
    names = [f.name for f in fields(Settings) if hasattr(args, f.name)]
    settings = Settings(**{n: getattr(args, n) for n in names}, batch_size=args.batch_slices,
                        progress=not args.quiet)  # fmt: skip
    before = _masks(args.out)
    try:
        report = run_cohort(args.model, args.image, args.out, settings)
    except KeyboardInterrupt:  # counted once the local workers stopped: tasks under way finish
        done = sum(before.get(n) != ino for n, ino in _masks(args.out).items())  # after Ctrl-C
        tail = "by this run; the same command resumes"
        print(f"interrupted: {done} mask(s) written in {args.out} {tail}", file=sys.stderr)
        raise
    print(report.summary())
    return 1 if report.count("failed") else 0


def _masks(out: Path) -> dict[str, int]:
    """The masks in ``out`` and their inodes: one written is a new file (renamed into place)."""
    return {p.name: p.stat().st_ino for p in out.glob(f"*{MASK_SUFFIX}")} if out.is_dir() else {}


def read_paint(path: Path, image: Any, axis: int) -> dict:
    """The painted slices of the labels at ``path`` (on ``image``'s grid) along the model's
    training axis: the ``paint`` whose touching parts a mask keeps (``--paint``)."""
    from .engine import labelled_slices, painted_slices
    from .volume import read_labels

    labels = read_labels(path, like=image).array
    slices = labelled_slices(labels, axis)
    if not slices:
        raise ValueError(f"--paint {path}: no painted voxel along axis {axis}")
    return painted_slices(labels, slices, axis)
