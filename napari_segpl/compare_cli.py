"""``segpl compare``: several methods trained on the same painted slices, scored on held-out ones.

Writes DIR/table.md (the table and how it was made), DIR/table.csv, DIR/results.json (every run
and the per-method summary) and three plots: DIR/ood.png, DIR/adversarial.png and
DIR/reliability.png, once every run is scored. Each run is also kept the moment it is scored,
in DIR/runs/METHOD-sSEED.json, so a compare stopped part way loses only the run under way and
``--resume`` goes on from there (``compare_resume.py``, ``engine/compare_store.py``). Every file
is written to a temporary name beside it and renamed over it, so a failure leaves no half file.
What each number means is in ``napari_segpl/engine/compare.py`` and ``engine/robustness.py``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._cli_support import add_series_arg, read_image, slice_list
from .atomic import write_atomically
from .compare_figures import plots
from .engine import METHODS, PRESETS, TrainConfig
from .engine.config import LOSSES, resolve_preset
from .engine.robustness import EPSILONS, GAMMAS

#: TrainConfig fields ``--set`` may not change (the compare sets them itself)
NOT_SETTABLE = {"method", "seed", "extra", "preview_every"}


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 0,0.5,1: {text!r}") from exc


def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The ``compare`` subcommand, on ``build_parser``'s subparsers."""
    c = subparsers.add_parser(
        "compare",
        help="train several methods on the same slices and score them on held-out slices",
        description=(
            "Train each method (and seed) on the labelled slices of LABELS minus the held-out "
            "ones, with the same preset and options, then score each on the held-out slices: "
            "per-class IoU and Dice, HD95 (MONAI), Brier score, expected calibration error, "
            "seconds per step against supervised training, parameters, and IoU under "
            "out-of-distribution inputs and FGSM. Writes table.md, table.csv, results.json and "
            "PNG plots in --out; each run is also kept in --out/runs/ as soon as it is scored, "
            "so an interrupted compare can go on with --resume."
        ),
    )
    c.add_argument("image", type=Path, help="image volume (file or DICOM folder)")
    c.add_argument("labels", type=Path, help="label volume on the image's grid")
    add_series_arg(c)
    c.add_argument(
        "--methods", required=True, metavar="supervised,segpl,...",
        help=f"comma-separated methods, from: {', '.join(METHODS)}",
    )  # fmt: skip
    c.add_argument(
        "--holdout-slices", type=slice_list, required=True, metavar="5,60",
        help="labelled slices kept out of every run's training and scored",
    )  # fmt: skip
    c.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for results")
    c.add_argument("--seeds", type=int, default=1, metavar="N", help="N seeds (default 1)")
    c.add_argument(
        "--first-seed", type=int, default=0, metavar="K",
        help="the seeds are K..K+N-1 (default 0): more seeds of an earlier compare in another "
        "--out, to merge later",
    )  # fmt: skip
    c.add_argument(
        "--labelled-slices", type=slice_list, metavar="3,40,77",
        help="use exactly these slices as labelled (background included); held-out ones too",
    )  # fmt: skip
    c.add_argument("--preset", choices=sorted(PRESETS), help="default: from the image")
    c.add_argument("--axis", type=int, choices=(0, 1, 2), help="slicing axis (default 2)")
    c.add_argument("--steps", type=int, help="optimiser steps (default: the preset's)")
    c.add_argument("--dims", type=int, choices=(0, 2, 3), help="network (default: the preset's)")
    c.add_argument("--lr", type=float, help="Adam learning rate")
    c.add_argument("--batch", type=int, help="labelled images per step")
    c.add_argument("--ratio", type=int, help="unlabelled images per labelled one")
    c.add_argument("--alpha", type=float, help="weight of the pseudo-label loss")
    c.add_argument("--loss", choices=LOSSES)
    c.add_argument("--nested", action="store_true", default=None, help="classes nest (BRATS)")
    c.add_argument("--normalisation", choices=("zscore", "ct"))
    c.add_argument("--channels", type=int, dest="base_channels", help="first encoder width")
    c.add_argument("--depth", type=int, help="U-net depth (default 4)")
    c.add_argument("--patch", type=int, help="in-plane patch size")
    c.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    c.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast on CUDA")
    c.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", dest="set_fields",
        help="any other training option by its configuration name (burn_in=0.2, gate=false, "
        "ct_window=-300,1600); repeatable",
    )  # fmt: skip
    c.add_argument(
        "--param", action="append", default=[], metavar="[METHOD:]NAME=VALUE",
        help="a method's own parameter (tau=0.9 for every chosen method that has tau, or "
        "fixmatch:tau=0.9); repeatable",
    )  # fmt: skip
    c.add_argument("--gammas", type=_floats, default=list(GAMMAS), metavar="0,0.5,1",
                   help="out-of-distribution mixing steps")  # fmt: skip
    c.add_argument("--epsilons", type=_floats, default=list(EPSILONS), metavar="0,0.05",
                   help="FGSM steps, in normalised-intensity units")  # fmt: skip
    c.add_argument("--no-hd95", action="store_true", help="leave out HD95 (MONAI)")
    c.add_argument(
        "--no-painted-parts",
        action="store_true",
        help="score every part predicted, not the export's (touching the paint)",
    )
    c.add_argument(
        "--no-supervised-timing", action="store_true",
        help="without supervised among the methods, report the cost ratio as n/a instead of "
        "training supervised once to time it",
    )  # fmt: skip
    c.add_argument(
        "--resume", action="store_true",
        help="go on with a stopped compare in the same --out: runs kept in --out/runs/ for the "
        "same request (options, slices, image and labels) are loaded instead of trained, the "
        "others trained; a run file of another request is an error naming what differs. "
        "Without --resume, run files already in --out are an error",
    )  # fmt: skip
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    return c


def _value(text: str, default: Any) -> Any:
    """``text`` as the type of a TrainConfig field's default."""
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "on", "yes"):
            return True
        if text.lower() in ("0", "false", "off", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(default, tuple):
        values = tuple(float(v) for v in text.split(","))
        if len(values) != len(default):
            raise ValueError(f"expected {len(default)} comma-separated numbers, got {text!r}")
        return values
    return type(default)(text)


def build_config(args: argparse.Namespace, preset: str) -> tuple[TrainConfig, dict[str, dict]]:
    """(the shared configuration, each method's own parameters) from the flags."""
    defaults = TrainConfig()
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {n: getattr(args, n) for n in fields if hasattr(args, n)}
    for text in args.set_fields:
        name, eq, value = (p.strip() for p in text.partition("="))
        if not eq or name not in fields or name in NOT_SETTABLE:
            raise ValueError(f"--set expects FIELD=VALUE with a training option, got {text!r}")
        try:
            overrides[name] = _value(value, getattr(defaults, name))
        except ValueError as exc:
            raise ValueError(f"--set {name}: {exc}") from None
    config = TrainConfig.from_preset(preset, **overrides).validate()
    methods = method_list(args.methods)
    params: dict[str, dict] = {m: {} for m in methods}
    for text in args.param:
        target, _, rest = text.rpartition(":") if ":" in text else ("", "", text)
        name, eq, value = (p.strip() for p in rest.partition("="))
        if not eq or not name:
            raise ValueError(f"--param expects [METHOD:]NAME=VALUE, got {text!r}")
        chosen = [target] if target else [m for m in methods if name in METHODS[m].params]
        if target and target not in methods:
            raise ValueError(f"--param {text}: {target} is not among --methods")
        if not chosen:
            raise ValueError(f"--param {text}: no chosen method has a parameter {name!r}")
        for m in chosen:
            params[m][name] = value
    for m, extra in params.items():  # checked, and stored as numbers
        values = METHODS[m].check_params(extra)
        params[m] = {n: values[n] for n in extra}
    return config, params


def method_list(text: str) -> list[str]:
    """``supervised,segpl`` -> the names, each a registered method (ValueError otherwise)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not names:
        raise ValueError("--methods lists no method")
    return names


class _Bars:
    """One progress bar per (method, seed) run on stderr (a line per run with --quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.key, self.bar = quiet, None, None

    def __call__(self, method: str, seed: int, step: int, total: int) -> None:
        if (method, seed) != self.key:
            self.close()
            self.key = (method, seed)
            if self.quiet:
                print(f"training {method} (seed {seed}), {total} steps", file=sys.stderr)
            else:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", file=sys.stderr, dynamic_ncols=True,
                                desc=f"{method} seed {seed}")  # fmt: skip
        if self.bar is not None:
            self.bar.update(1)
            if step >= total:  # scoring follows: the bar should not count its time
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _num(value: float | None, sd: float | None = None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    return text + (f" ± {sd:.{digits}f}" if sd and math.isfinite(sd) else "")


def table_rows(result: Any) -> tuple[list[str], list[list[str]]]:
    """The table's header and one row of text per method (mean ± SD over the seeds)."""
    k = result.num_classes
    head = ["method", "seeds"] + [f"IoU {c}" for c in range(1, k + 1)]
    head += [f"Dice {c}" for c in range(1, k + 1)]
    head += [f"HD95 {c} ({result.hd95_unit})" for c in range(1, k + 1)]
    summary = result.summary()
    mc = any(r["brier_mc"] is not None for r in summary)  # SegPL-VI's Monte-Carlo columns
    head += ["Brier", "ECE", *(["MC Brier", "MC ECE"] if mc else []), "s/step", "x supervised"]
    head.append("params")
    rows = []
    for r in summary:
        row = [r["method"], str(len(r["seeds"]))]
        for key in ("iou", "dice", "hd95"):
            means, sds = r[key] or [None] * k, r[f"{key}_sd"] or [None] * k
            row += [_num(m, s, 1 if key == "hd95" else 3) for m, s in zip(means, sds, strict=True)]
        row += [_num(r["brier"], r["brier_sd"], 4), _num(r["ece"], r["ece_sd"], 4)]
        if mc:
            row += [_num(r["brier_mc"], r["brier_mc_sd"], 4), _num(r["ece_mc"], r["ece_mc_sd"], 4)]
        row += [_num(r["seconds_per_step"], None, 4), _num(r["cost_ratio"], None, 2)]
        row.append(f"{r['params']:,}")
        rows.append(row)
    return head, rows


def markdown(result: Any, command: str, timing: str = "") -> str:
    head, rows = table_rows(result)
    reference = ""
    if result.supervised_seconds_per_step is None:
        reference = " (n/a: no supervised run timed)"
    elif result.reference_trained:
        reference = " (supervised trained once for the ratio only)"
    lines = [
        "# segpl compare",
        "",
        f"`{command}`",
        "",
        f"Held-out slices {result.holdout} along axis {result.axis} (never trained on); seeds "
        f"{result.seeds}; {result.config['steps']} steps each; mean ± SD over the seeds.",
        *(["", "Stopped before every run finished: the runs that did."] if result.stopped else []),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        f"s/step: median step time; x supervised: over supervised training's in this run"
        f"{reference}." + (f" {timing}" if timing else ""),
        f"HD95 ({result.hd95_unit}): MONAI, per held-out slice in 2D with the in-plane spacing, "
        "mean over slices "
        "holding the class in either (in one only: the slice's diagonal)."
        + (f" {result.hd95_note}." if result.hd95_note else ""),
        f"Curves (mean IoU over classes): out of distribution at gamma {result.gammas}, "
        f"FGSM at epsilon {result.epsilons} (normalised units): ood.png, adversarial.png.",
        "",
    ]
    return "\n".join(lines)


def _csv(result: Any) -> str:
    head, rows = table_rows(result)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(head)
    writer.writerows(rows)
    return buffer.getvalue()


def result_files(result: Any, command: str, timing: str = "") -> dict[str, bytes]:
    """Every file ``segpl compare`` writes, by name, for the CLI and the dock alike
    (``timing``: a footnote on where the runs were timed)."""
    return {
        "table.md": markdown(result, command, timing).encode(),
        "table.csv": _csv(result).encode(),
        "results.json": (json.dumps(result.to_json(), indent=1) + "\n").encode(),
        **plots(result),
    }


def write_atomic(path: Path, data: bytes) -> Path:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    return write_atomically(path, lambda tmp: tmp.write_bytes(data))


def compare_command(args: argparse.Namespace) -> int:
    """Check every argument, train and score (each run kept at once), then write the files."""
    from .compare_resume import kept, open_store, saver, timing_note
    from .engine.compare import check_request, compare
    from .engine.holdout import training_slices
    from .volume import read_labels

    methods = method_list(args.methods)
    if not args.holdout_slices:
        raise ValueError("--holdout-slices lists no slice")
    if args.seeds < 1:
        raise ValueError("--seeds must be at least 1")
    if args.first_seed < 0:
        raise ValueError("--first-seed must be 0 or more")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a file; give a folder")
    image = read_image(args.image, args.series)
    labels = read_labels(args.labels, like=image)
    preset = resolve_preset(args.preset, image.array)
    config, params = build_config(args, preset)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    configs = check_request(config, methods, args.holdout_slices, seeds, params)
    # a wrong held-out slice is reported before any error about run files (no labels copy)
    training_slices(labels.array, config.axis, args.holdout_slices, args.labelled_slices)
    store, finished, reference = open_store(args, image, labels, configs, preset, seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    if not os.access(args.out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {args.out}: cannot write there")
    bars = _Bars(args.quiet)
    try:
        result = compare(
            image.array, labels.array, config, methods, args.holdout_slices,
            seeds=seeds, labelled=args.labelled_slices, params=params,
            spacing=image.spacing, gammas=args.gammas, epsilons=args.epsilons,
            surface=not args.no_hd95, time_supervised=not args.no_supervised_timing,
            progress=bars, on_run=saver(store), finished=finished, reference=reference,
            parts=not args.no_painted_parts,
        )  # fmt: skip
    except KeyboardInterrupt:  # the finished runs are on disk: say so, no traceback
        bars.close()
        print(f"\n{kept(store, 'interrupted')}", file=sys.stderr)
        return 130
    except Exception:
        bars.close()
        print(kept(store, "failed"), file=sys.stderr)
        raise
    finally:
        bars.close()
    if result.reference_trained and reference is None and result.supervised_seconds_per_step:
        store.save_reference(result.supervised_seconds_per_step, seeds[0])
    command = "segpl compare " + " ".join(getattr(args, "argv", None) or sys.argv[2:])
    files = result_files(result, command, timing_note(store, result))
    for name, data in files.items():
        write_atomic(args.out / name, data)
    head, rows = table_rows(result)
    keep = [0, *range(2, 2 + 2 * result.num_classes)] + [len(head) - 4, len(head) - 2]
    print("  ".join(head[i] for i in keep))
    for row in rows:
        print("  ".join(row[i] for i in keep))
    print(f"results -> {args.out}/ ({', '.join(files)})")
    return 0


def run(argv: Sequence[str]) -> int:
    """``segpl compare ARGS`` on its own (tests; before cli.py registers it): errors as the
    ``segpl`` command reports them, one line and status 2."""
    from .cli import USER_ERRORS

    parser = argparse.ArgumentParser(prog="segpl")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", *argv])
    args.argv = list(argv)
    try:
        return compare_command(args)
    except (*USER_ERRORS, OSError) as exc:
        print(f"segpl compare: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["add_compare_parser", "compare_command", "run"]
