"""The ``segpl`` command: train, predict and evaluate without a screen.

Every error a user can cause (a bad file, a missing device, a wrong parameter) ends with one
line naming the problem and exit status 2, and every argument is checked before training
starts. An interrupted training (Ctrl-C) stops after the step under way, saves the model
trained so far (and the outputs asked for) and exits with status 130; a second Ctrl-C quits
at once without saving.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from ._cli_support import (
    check_outputs,
    check_uncertainty,
    evaluate_command,
    mask_only,
    read_image,
    safeguard_lines,
    slice_list,
    uncertainty_for_kept,
    write_outputs,
)
from .compare_cli import add_compare_parser, compare_command
from .engine import METHODS, TrainConfig
from .engine.config import ConfigError, one_thin_slice_note, resolve_preset
from .engine.device import DeviceError
from .engine.learnt_threshold import learnt_threshold
from .engine.model import CheckpointError, UnsavableModel
from .engine.sampling import DataError
from .predict_cli import add_predict_parser, predict_command
from .run_guard import Interrupt, TrainingFailed, saving_on_failure
from .suggest_cli import add_suggest_parser, suggest_command
from .train_args import add_train_parser
from .volume import VolumeError, read_labels, read_volume

USER_ERRORS = (VolumeError, DataError, ConfigError, DeviceError, CheckpointError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segpl",
        description=(
            "Semi-supervised segmentation of CT and MRI volumes from a few labelled slices, with "
            "SegPL (pseudo labels as Expectation-Maximisation) and SegPL-VI (a threshold learnt "
            "by variational inference). Volumes: NIfTI, DICOM series folders, MHA/MHD, NRRD."
        ),
        epilog="Example: segpl train ct.nii.gz labels.nii.gz --model model.pt --mask mask.nii.gz",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_train_parser(sub)
    add_predict_parser(sub)

    e = sub.add_parser(
        "evaluate",
        help="IoU and Dice of a predicted label volume against the truth",
        description="Per-class foreground IoU and Dice (background excluded).",
    )
    e.add_argument("pred", type=Path, help="predicted label volume")
    e.add_argument("truth", type=Path, help="true label volume on the same grid")
    e.add_argument("--slices", type=slice_list, metavar="3,40,77", help="score only these slices")
    e.add_argument("--axis", type=int, default=2, choices=(0, 1, 2), help="axis of --slices")
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.add_argument("--nested", action="store_true", help="BRATS classes: class c is label >= c")
    add_compare_parser(sub)
    add_suggest_parser(sub)
    return parser


def _config(args: argparse.Namespace, preset: str) -> TrainConfig:
    """The preset's values, then the flags given."""
    # Every TrainConfig field the train command has a flag for (ct_window: two numbers, below).
    names = [f.name for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)]
    names.remove("ct_window")
    overrides = {n: getattr(args, n) for n in names}
    if args.ct_window is not None:
        overrides["ct_window"] = tuple(args.ct_window)
    pairs = [text.partition("=") for text in args.param]
    bad = [text for text, (_, eq, _) in zip(args.param, pairs, strict=True) if not eq]
    if bad:
        raise ValueError(f"--param expects NAME=VALUE, got {bad[0]!r}")
    if pairs:
        overrides["extra"] = {name.strip(): value.strip() for name, _, value in pairs}
    config = TrainConfig.from_preset(preset, **overrides).validate()
    if config.extra:  # the given values as numbers, checked (the file saves them so)
        values = METHODS[config.method].check_params(config.extra)
        config = dataclasses.replace(config, extra={n: values[n] for n in config.extra})
    return config


def _checked(args: argparse.Namespace, method: str) -> bool:
    """Whether the safeguard checks a run of ``method``, so that the run ends with two models
    (the TTA std with twin pools them)."""
    return bool(args.safeguard) and METHODS[method].uses_unlabelled


def _train(args: argparse.Namespace) -> int:
    from .engine import (
        CollapseWarning,
        FinishedEvent,
        HeldoutEvent,
        RetriedRun,
        RetryDecision,
        RetryEvent,
        SafeguardEvent,
        SafeguardProgress,
        StepEvent,
        Trainer,
        painted_slices,
        prepare_data,
    )
    from .engine.holdout import withhold

    inputs = {"image": args.image, "labels": args.labels}
    inputs.update({f"unlabelled {p}": p for p in args.unlabelled})
    check_outputs(args, inputs, model=args.model)
    if args.method is not None:
        check_uncertainty(args, args.method, _checked(args, args.method))
    image = read_image(args.image, args.series)
    preset = resolve_preset(args.preset, image.array)
    config = _config(args, preset)
    check_uncertainty(args, config.method, _checked(args, config.method))
    labels = read_labels(args.labels, like=image)
    extra = [read_volume(p).array for p in args.unlabelled]
    train_labels, labelled = labels.array, args.labelled_slices
    if args.holdout_slices:
        train_labels, labelled = withhold(labels.array, config.axis, args.holdout_slices, labelled)
    data = prepare_data(image.array, train_labels, config, labelled, extra)
    n_unlab = len(data.unlabelled)
    trainer: Trainer | RetriedRun = Trainer(config, data)
    checked = _checked(args, config.method)
    if checked or args.retry or args.holdout_slices:  # the twin, the retry, held-out scores
        trainer = RetriedRun(
            config, data, image.array, retry=args.retry, truth=labels.array,
            holdout=args.holdout_slices, check=checked, keep_labels=mask_only(args),
            parts=args.painted_parts,
        )  # fmt: skip
    config = trainer.config  # the network chosen from the painted slices, with dims 0
    print(
        f"preset {preset}, "
        f"{config.method}: {len(data.labelled)} labelled slices {data.labelled} along axis "
        f"{config.axis}, {n_unlab} unlabelled, {data.num_classes} class(es), {config.dims}D, "
        f"{config.steps} steps"
        + (
            f" ({one_thin_slice_note(config, trainer.model.method.mixes)})"
            if trainer.one_thin_slice
            else ""
        )
    )
    print(f"device: {trainer.device}")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=trainer.total_steps, unit="step", file=sys.stderr, dynamic_ncols=True)
    say = bar.write if bar is not None else print
    finished = verdict = check = heldout = retried = None
    unsaved: OSError | None = None
    post: dict[str, str] = {}
    with Interrupt(trainer) as interrupt:  # held until the model is saved
        for event in saving_on_failure(trainer, args.model):
            if isinstance(event, StepEvent) and bar is not None:
                post.update(  # (the held-out Dice stays until the next score)
                    {
                        "loss": f"{event.losses['loss']:.4f}",
                        "s/step": f"{event.seconds_per_step:.2f}",
                    }
                )
                if event.mu is not None:
                    post["T"] = f"{event.mu:.3f}+-{event.sigma:.3f}"
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            elif isinstance(event, CollapseWarning):
                say(f"warning: {event.message}")
            elif isinstance(event, SafeguardProgress):
                if check is None and bar is not None:
                    bar.close()
                    check = tqdm(total=event.total, unit="step", file=sys.stderr,
                                 desc="safeguard: supervised", dynamic_ncols=True)  # fmt: skip
                if check is not None:
                    check.update(1)
            elif isinstance(event, HeldoutEvent):
                heldout = event
                if bar is not None:
                    post["held-out Dice"] = f"{sum(event.dice) / len(event.dice):.3f}"
                    bar.set_postfix(post, refresh=False)
            elif isinstance(event, SafeguardEvent):
                verdict = event
            elif isinstance(event, RetryEvent):  # the run again, from step 1
                say(f"warning: {event.message}")
                for b in (bar, check):
                    if b is not None:
                        b.close()
                check = None
                if bar is not None:
                    bar = tqdm(total=trainer.total_steps, unit="step", file=sys.stderr,
                               desc=f"seed {event.seed}", dynamic_ncols=True)  # fmt: skip
            elif isinstance(event, RetryDecision):
                retried = event
            elif isinstance(event, FinishedEvent):
                finished = event
        for b in (bar, check):
            if b is not None:
                b.close()
        if heldout is not None:
            dice = ", ".join(f"{d:.3f}" for d in heldout.dice)
            print(f"held-out Dice at step {heldout.step} (training): {dice}")
        verdict = getattr(trainer, "verdict", verdict)  # the kept run's, after a retry
        if verdict is not None:
            print(safeguard_lines(verdict))
        if retried is not None:
            print(f"retry: {retried.message}")
        if finished is not None:
            state = "stopped early" if finished.stopped else "done"
            print(f"training {state}: {finished.steps_done} steps in {finished.seconds:.1f} s")
            if finished.note:
                print(f"warning: {finished.note}")
        trained = getattr(trainer, "trainer", trainer)  # the safeguard's run, or the run
        if finished is not None and (learnt := learnt_threshold(trained.model, trained.data)):
            print(learnt.line())
        try:
            print(f"model       -> {trainer.model.save(args.model)}")
        except UnsavableModel as exc:  # diverged: its masks would be empty, not a result
            print(f"segpl train: error: {exc}; no masks written", file=sys.stderr)
            return 1
        except OSError as exc:  # the masks are still written: the run is not lost
            unsaved = exc
            print(f"segpl train: error: {exc}; writing the masks asked for", file=sys.stderr)
    args.axis_predict = None
    model, reuse = trainer.model, getattr(trainer, "kept_labels", None)
    twin = getattr(trainer, "partner", None)  # the safeguard's other model, once it decided
    paint = painted_slices(train_labels, data.labelled, config.axis)
    del trainer, data, extra, labels, train_labels  # the training copies (525 MB on a big CT)
    if line := uncertainty_for_kept(args, model, config.method, twin is not None):
        print(line, file=sys.stderr)  # the safeguard kept another method: another kind
    write_outputs(args, model, image, reuse, paint, args.painted_parts, twin)  # a mask: reused
    if unsaved is not None:
        return 2
    return 130 if interrupt.received else 0


def _predict(args: argparse.Namespace) -> int:
    return predict_command(args)  # one volume here, or a cohort on Dask (predict_cli.py, cohort.py)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "train": _train,
        "predict": _predict,
        "evaluate": evaluate_command,
        "compare": compare_command,
        "suggest": suggest_command,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"\nsegpl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (*USER_ERRORS, OSError, TrainingFailed) as exc:
        print(f"segpl {args.command}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingFailed) else 2


if __name__ == "__main__":
    sys.exit(main())
