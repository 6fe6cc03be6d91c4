"""``segpl compare``'s engine: train several methods on the same slices, score them on slices
they never saw.

Every (method, seed) run gets the same configuration (the preset and the options given; only
``method``, ``seed`` and the method's own parameters change) and the same training data: the
labelled slices minus the held-out ones, whose labels are zeroed before the data is prepared
(``holdout.withhold``), so no run trains on them. Their images stay in the volume as
unlabelled slices, as for any other slice (the user's own scan is what is compared). Runs go one
after another with a plain ``Trainer``; ``predict_volume`` then predicts the whole volume as an
export would, and ``compare_score.score`` scores it on the held-out slices along the training
axis (its docstring lists the numbers: iou, dice, brier, ece, their Monte-Carlo twins, hd95,
the ood and adversarial curves). The loop adds:

- ``seconds_per_step``: the median of the run's step times (the median, because the first steps
  and a busy machine's pauses skew a mean); ``cost_ratio``: that over the median of supervised
  training's in the same compare (the mean over its seeds). When the compare has no supervised
  run, one supervised run (the first seed) trains for the ratio only (``reference_trained``),
  unless ``time_supervised`` is False: then the ratio is None (n/a);
- ``params``: trainable parameters of every network the method trains (CPS two, an ensemble M).

Front ends (CLI, dock) follow the one loop: ``progress`` after every training step, ``on_run``
after every run is scored (``RunDone``), ``should_stop`` before each run and after every step:
a run stopped part way is dropped, the finished ones are returned (``CompareResult.stopped``),
and no supervised run trains for the ratio after a stop.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import robustness
from .compare_score import score
from .compare_store import HD95_RULE
from .compare_store import plain as _plain
from .config import TrainConfig
from .holdout import withhold
from .inference import PredictionStopped, predict_volume, stop_between_batches
from .methods import get_method
from .metrics import hd95, pooled_bins  # noqa: F401  (hd95: compare's name before compare_score)
from .model import TrainedModel
from .sampling import DataError, TrainingData, prepare_data
from .trainer import FinishedEvent, StepEvent, Trainer
from .uncertainty import MC_SAMPLES

#: ``progress(method, seed, step, total)`` after every training step of every run
Progress = Callable[[str, int, int, int], None]
#: ``on_run(done)`` after every (method, seed) run is trained and scored
OnRun = Callable[["RunDone"], None]
#: the numbers ``summary`` averages over the seeds, in its order
SUMMARISED = ("iou", "dice", "hd95", "ood", "adversarial", "mean_iou", "brier", "ece",
              "brier_mc", "ece_mc", "seconds_per_step", "seconds", "cost_ratio")  # fmt: skip


@dataclass
class RunResult:
    """One trained (method, seed) scored on the held-out slices (``compare_score``)."""

    method: str
    seed: int
    iou: list[float]
    dice: list[float]
    brier: float
    ece: float
    seconds_per_step: float
    seconds: float
    steps: int
    params: int
    ood: list[float]
    adversarial: list[float]
    calibration: dict[str, list[float]]
    hd95: list[float] | None = None
    hd95_slices: list[int] | None = None
    cost_ratio: float | None = None
    warnings: list[str] = field(default_factory=list)
    brier_mc: float | None = None
    ece_mc: float | None = None
    calibration_mc: dict[str, list[float]] | None = None

    @property
    def mean_iou(self) -> float:
        finite = [v for v in self.iou if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")


@dataclass
class CompareResult:
    """Every run, what they were scored on, and the supervised reference for the cost."""

    runs: list[RunResult]
    methods: list[str]
    seeds: list[int]
    holdout: list[int]
    axis: int
    num_classes: int
    gammas: list[float]
    epsilons: list[float]
    config: dict[str, Any]
    supervised_seconds_per_step: float | None
    reference_trained: bool
    hd95_note: str = ""
    #: HD95's unit: "mm" with a voxel spacing, "voxels" without one
    hd95_unit: str = "mm"
    #: ``should_stop`` ended the compare before every run finished: ``runs`` are those that did
    stopped: bool = False

    def summary(self) -> list[dict[str, Any]]:
        """One row per method: the mean and SD over its seeds of every number (a list of
        per-class values gives a list), curves and calibration bins averaged."""
        rows = []
        for m in self.methods:
            runs = [r for r in self.runs if r.method == m]
            row: dict[str, Any] = {"method": m, "seeds": [r.seed for r in runs]}
            for key in SUMMARISED:
                values = [getattr(r, key) for r in runs]
                if any(v is None for v in values):
                    row[key] = row[f"{key}_sd"] = None
                    continue
                mean, sd = _mean_sd(np.array(values, np.float64).reshape(len(runs), -1))
                one = not isinstance(values[0], list)  # a number, not one per class or point
                row[key], row[f"{key}_sd"] = (mean[0], sd[0]) if one else (mean, sd)
            row["params"] = runs[0].params
            row["calibration"] = pooled_bins([r.calibration for r in runs])  # over the seeds
            mc = [r.calibration_mc for r in runs]
            row["calibration_mc"] = None if None in mc else pooled_bins(mc)
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """Plain types for ``results.json`` (NaN and inf become None)."""
        # every field but runs (the first) and stopped (the last)
        names = [f.name for f in dataclasses.fields(self)][1:-1]
        data = {name: getattr(self, name) for name in names}
        data["summary"] = self.summary()
        data["runs"] = [
            dataclasses.asdict(r) | {"mean_iou": r.mean_iou, "hd95_rule": HD95_RULE}
            for r in self.runs
        ]
        if self.stopped:  # only then, so a whole compare's file is as it always was
            data["stopped"] = True
        return _plain(data)


@dataclass
class RunDone:
    """What ``on_run`` gets after a run is scored: ``result`` holds every run finished so far
    (ratios over the supervised runs among them, None before one), ``run`` of ``runs`` counts
    the scored runs from 1, ``labels`` is the run's prediction of the whole volume."""

    method: str
    seed: int
    run: int
    runs: int
    result: CompareResult
    model: TrainedModel
    labels: np.ndarray


def _mean_sd(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Column means and population SDs over the rows (seeds), NaN where a column has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (absent class)
        return np.nanmean(values, axis=0).tolist(), np.nanstd(values, axis=0).tolist()


def check_request(
    config: TrainConfig,
    methods: Sequence[str],
    holdout: Sequence[int],
    seeds: Sequence[int],
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[TrainConfig]:
    """Every (method) configuration, validated before anything trains: ValueError for no
    method, an unknown or repeated one, no held-out slice or no seed."""
    if not methods:
        raise ValueError("no method to compare: give at least one")
    repeated = sorted({m for m in methods if list(methods).count(m) > 1})
    if repeated:
        raise ValueError(f"method {', '.join(repeated)} given twice")
    for m in methods:
        get_method(m)  # ValueError listing the known methods
    if not holdout:
        raise DataError("no held-out slice: a compare scores methods on labelled slices kept "
                        "out of training (--holdout-slices)")  # fmt: skip
    if not seeds:
        raise ValueError("no seed: give at least one")
    params = params or {}
    return [
        dataclasses.replace(config, method=m, extra=dict(params.get(m, {}))).validate()
        for m in methods
    ]


def training_data(
    image: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    holdout: Sequence[int],
    labelled: Sequence[int] | None = None,
) -> TrainingData:
    """The data every run trains on: the held-out slices' labels zeroed and those slices left
    out of the labelled ones (DataError when a held-out slice is not labelled)."""
    train_labels, left = withhold(labels, config.axis, holdout, labelled)
    return prepare_data(image, train_labels, config, left)


def _train(
    trainer: Trainer, progress: Progress | None, should_stop: Callable[[], bool] | None = None
) -> tuple[list[float], float, list[str], bool]:
    """Run to the end, or until ``should_stop()`` (before the first step, after any other):
    (step times, seconds, warnings, stopped)."""
    times, seconds, notes, stopped = [], 0.0, [], False
    if should_stop is not None and should_stop():
        return times, seconds, notes, True
    method, seed = trainer.config.method, trainer.config.seed
    for event in trainer.run():
        if isinstance(event, StepEvent):
            times.append(event.seconds_per_step)
            if progress is not None:
                progress(method, seed, event.step, event.total)
            if should_stop is not None and should_stop():
                trainer.stop()
        elif isinstance(event, FinishedEvent):
            seconds, stopped = event.seconds, event.stopped
        elif hasattr(event, "message"):
            notes.append(str(event.message))
    return times, seconds, notes, stopped


def _finished(
    base: CompareResult, runs: list[RunResult], reference: float | None = None, **kw: Any
) -> CompareResult:
    """``base`` with copies of ``runs``, the methods that have one, and each run's s/step over
    the mean of the supervised runs' (over ``reference`` without one; None without either)."""
    sup = [r.seconds_per_step for r in runs if r.method == "supervised"]
    ref = float(np.mean(sup)) if sup else reference
    runs = [dataclasses.replace(r, cost_ratio=r.seconds_per_step / ref if ref else None)
            for r in runs]  # fmt: skip
    methods = [m for m in base.methods if any(r.method == m for r in runs)]
    return dataclasses.replace(
        base, runs=runs, methods=methods, supervised_seconds_per_step=ref, **kw
    )


def compare(
    image: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    methods: Sequence[str],
    holdout: Sequence[int],
    *,
    seeds: Sequence[int] = (0,),
    labelled: Sequence[int] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    spacing: Sequence[float] | None = None,
    gammas: Sequence[float] = robustness.GAMMAS,
    epsilons: Sequence[float] = robustness.EPSILONS,
    surface: bool = True,
    time_supervised: bool = True,
    progress: Progress | None = None,
    on_run: OnRun | None = None,
    should_stop: Callable[[], bool] | None = None,
    finished: Mapping[tuple[str, int], RunResult] | None = None,
    reference: float | None = None,
    parts: bool = True,
) -> CompareResult:
    """Train and score every (method, seed) in turn (module docstring). ``labels`` holds the
    truth of the held-out slices; ``params``: each method's own parameters by method name;
    ``spacing``: voxel size (mm) per array axis, for HD95 (None: HD95 in voxels); ``surface``
    False (or MONAI missing) leaves HD95 out. ``on_run``, ``should_stop``: the module
    docstring. A resumed compare (``compare_store``) gives the runs already scored by (method,
    seed) in ``finished``, taken as they are, and the supervised s/step timed for the ratio
    alone in ``reference``: neither trains again. ``parts``: masks are scored as exported, each
    class kept only where it touches the trained slices' paint (``components``)."""
    configs = check_request(config, methods, holdout, seeds, params)
    holdout = sorted(set(int(s) for s in holdout))
    data = training_data(image, labels, config, holdout, labelled)
    note = ""
    if surface:
        try:
            import monai.metrics  # noqa: F401
        except ImportError:
            surface, note = False, "HD95 left out: MONAI is not installed"
    base = CompareResult([], list(methods), [int(s) for s in seeds], holdout, config.axis,
                         data.num_classes, [float(g) for g in gammas], [float(e) for e in
                         epsilons], config.to_dict(), None, False, note,
                         "mm" if spacing is not None else "voxels")  # fmt: skip
    todo = [(cfg, int(seed)) for cfg in configs for seed in seeds]
    runs: list[RunResult] = []
    stop, stopped, done = should_stop or (lambda: False), False, finished or {}
    for i, (cfg, seed) in enumerate(todo, start=1):
        if (cfg.method, seed) in done:
            runs.append(done[cfg.method, seed])
            continue
        trainer = Trainer(dataclasses.replace(cfg, seed=seed, preview_every=0), data)
        times, seconds, notes, stopped = _train(trainer, progress, stop)
        if stopped:  # the run under way is dropped; the finished ones are kept
            break
        model = trainer.model
        try:  # a whole-volume prediction takes minutes on a big scan: Stop ends it per batch
            mc = MC_SAMPLES if model.method.learns_threshold else 0
            pred = predict_volume(
                model, image, device=cfg.device, progress=stop_between_batches(stop), mc_samples=mc,
                paint=data.paint() if parts else None,
            )  # fmt: skip
        except PredictionStopped:
            stopped = True
            break
        values = score(model, image, labels, holdout, spacing=spacing, gammas=gammas,
                       epsilons=epsilons, surface=surface, prediction=pred)  # fmt: skip
        values |= {"seconds": seconds, "steps": len(times), "warnings": notes,
                   "seconds_per_step": float(np.median(times)) if times else float("nan"),
                   "params": sum(p.numel() for p in model.method.parameters())}  # fmt: skip
        runs.append(RunResult(method=cfg.method, seed=seed, **values))
        if on_run is not None:
            so_far = _finished(base, runs)
            on_run(RunDone(cfg.method, seed, i, len(todo), so_far, model, pred.labels))
        del pred  # one run's probabilities at a time
    timed = any(r.method == "supervised" for r in runs)
    trained = reference is not None and not timed
    if time_supervised and not stopped and not trained and not timed:
        cfg = dataclasses.replace(config, method="supervised", seed=int(seeds[0]), extra={})
        trainer = Trainer(dataclasses.replace(cfg, preview_every=0), data)
        times, _, _, stopped = _train(trainer, progress, stop)
        if not stopped:
            reference, trained = float(np.median(times)), True
    return _finished(base, runs, reference, reference_trained=trained, stopped=stopped)
