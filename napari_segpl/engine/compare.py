"""``segpl compare``'s engine: train several methods on the same slices, score them on slices
they never saw.

Every (method, seed) run gets the same configuration (the preset and the options given; only
``method``, ``seed`` and the method's own parameters change) and the same training data: the
labelled slices minus the held-out ones, whose labels are zeroed before the data is prepared
(``safeguard.withhold``), so no run trains on them. Their images stay in the volume as
unlabelled slices, as for any other slice (the user's own scan is what is compared). Runs go one
after another with a plain ``Trainer``; ``predict_volume`` then predicts the whole volume as an
export would, and on the held-out slices along the training axis:

- ``iou`` / ``dice``: per class 1..K (background excluded, ``metrics.overlap_scores``), NaN for a
  class absent from both the prediction and the truth there;
- ``brier``: mean over held-out voxels and class channels of (p - y)^2;
- ``ece``: expected calibration error over the same voxels and channels, 15 equal bins
  (``metrics.expected_calibration_error``), and the bins for a reliability diagram;
- ``hd95``: per class, MONAI's 95th-percentile Hausdorff distance in mm
  (``monai.metrics.compute_hausdorff_distance(..., percentile=95, spacing=...)``) on each held-out
  slice in 2D with the in-plane voxel spacing (held-out slices are not neighbours, so no 3D
  surface joins them), averaged over the slices where prediction and truth both hold the class
  (``hd95_slices`` counts them); NaN where none does;
- ``seconds_per_step``: the median of the run's step times (the median, because the first steps
  and a busy machine's pauses skew a mean); ``cost_ratio``: that over the median of supervised
  training's in the same compare (the mean over its seeds). When the compare has no supervised
  run, one supervised run (the first seed) trains for the ratio only (``reference_trained``),
  unless ``time_supervised`` is False: then the ratio is None (n/a);
- ``params``: trainable parameters of every network the method trains (CPS two, an ensemble M);
- ``ood`` / ``adversarial``: the robustness curves of ``robustness.py``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import robustness
from .config import TrainConfig
from .inference import predict_volume
from .methods import get_method
from .metrics import brier_score, calibration_bins, expected_calibration_error, overlap_scores
from .model import TrainedModel
from .safeguard import withhold
from .sampling import DataError, TrainingData, encode_target, prepare_data
from .trainer import FinishedEvent, StepEvent, Trainer

#: ``progress(method, seed, step, total)`` after every training step of every run
Progress = Callable[[str, int, int, int], None]


@dataclass
class RunResult:
    """One trained (method, seed) scored on the held-out slices (module docstring)."""

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

    def summary(self) -> list[dict[str, Any]]:
        """One row per method: the mean and SD over its seeds of every number (a list of
        per-class values gives a list), curves and calibration bins averaged."""
        rows = []
        for m in self.methods:
            runs = [r for r in self.runs if r.method == m]
            row: dict[str, Any] = {"method": m, "seeds": [r.seed for r in runs]}
            for key in ("iou", "dice", "hd95", "ood", "adversarial"):
                values = [getattr(r, key) for r in runs]
                if any(v is None for v in values):
                    row[key] = row[f"{key}_sd"] = None
                    continue
                row[key], row[f"{key}_sd"] = _mean_sd(np.array(values, np.float64))
            for key in ("mean_iou", "brier", "ece", "seconds_per_step", "seconds", "cost_ratio"):
                values = [getattr(r, key) for r in runs]
                if any(v is None for v in values):
                    row[key] = row[f"{key}_sd"] = None
                    continue
                mean, sd = _mean_sd(np.array(values, np.float64)[:, None])
                row[key], row[f"{key}_sd"] = mean[0], sd[0]
            row["params"] = runs[0].params
            count = np.sum([r.calibration["count"] for r in runs], axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                row["calibration"] = {
                    "count": count.tolist(),
                    **{
                        k: (
                            np.nansum(
                                [np.nan_to_num(r.calibration[k]) * r.calibration["count"]
                                 for r in runs], axis=0,
                            ) / count
                        ).tolist()
                        for k in ("mean_p", "freq")
                    },
                }  # fmt: skip
            rows.append(row)
        return rows

    def to_json(self) -> dict[str, Any]:
        """Plain types for ``results.json`` (NaN and inf become None)."""
        data = {
            "methods": self.methods,
            "seeds": self.seeds,
            "holdout": self.holdout,
            "axis": self.axis,
            "num_classes": self.num_classes,
            "gammas": self.gammas,
            "epsilons": self.epsilons,
            "config": self.config,
            "supervised_seconds_per_step": self.supervised_seconds_per_step,
            "reference_trained": self.reference_trained,
            "hd95_note": self.hd95_note,
            "summary": self.summary(),
            "runs": [dataclasses.asdict(r) | {"mean_iou": r.mean_iou} for r in self.runs],
        }
        return _plain(data)


def _mean_sd(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Column means and population SDs over the rows (seeds), NaN where a column has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column (absent class)
        return np.nanmean(values, axis=0).tolist(), np.nanstd(values, axis=0).tolist()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


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


def _train(trainer: Trainer, progress: Progress | None) -> tuple[list[float], float, list[str]]:
    """Run to the end: (step times, seconds, warnings)."""
    times, seconds, notes = [], 0.0, []
    method, seed = trainer.config.method, trainer.config.seed
    for event in trainer.run():
        if isinstance(event, StepEvent):
            times.append(event.seconds_per_step)
            if progress is not None:
                progress(method, seed, event.step, event.total)
        elif isinstance(event, FinishedEvent):
            seconds = event.seconds
        elif hasattr(event, "message"):
            notes.append(str(event.message))
    return times, seconds, notes


def hd95(
    pred: np.ndarray, truth: np.ndarray, classes: int, spacing: Sequence[float]
) -> tuple[list[float], list[int]]:
    """Per class: MONAI's HD95 (mm) of (S, h, w) predicted against true labels, slice by slice
    in 2D with in-plane ``spacing``, averaged over the slices where both hold the class; and
    how many such slices there were. ImportError without MONAI."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    means, counts = [], []
    for c in range(1, classes + 1):
        p, t = pred == c, truth == c
        both = [i for i in range(len(p)) if p[i].any() and t[i].any()]
        if not both:
            means.append(float("nan"))
            counts.append(0)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI's deprecation notes
            d = compute_hausdorff_distance(
                torch.from_numpy(p[both, None]),
                torch.from_numpy(t[both, None]),
                include_background=True,
                percentile=95,
                spacing=list(spacing),
            )
        means.append(float(d.float().mean()))
        counts.append(len(both))
    return means, counts


def score(
    model: TrainedModel,
    image: np.ndarray,
    truth: np.ndarray,
    holdout: Sequence[int],
    *,
    spacing: Sequence[float] | None = None,
    gammas: Sequence[float] = robustness.GAMMAS,
    epsilons: Sequence[float] = robustness.EPSILONS,
    surface: bool = True,
) -> dict[str, Any]:
    """Every held-out number of one trained model (the ``RunResult`` fields it fills)."""
    config, k = model.config, model.num_classes
    axis, holdout = config.axis, list(holdout)
    pred = predict_volume(model, image, device=config.device)
    labels_h = np.moveaxis(np.take(pred.labels, holdout, axis=axis), axis, 0)
    truth_h = np.moveaxis(np.take(truth, holdout, axis=axis), axis, 0)
    scores = overlap_scores(labels_h, truth_h, range(1, k + 1), axis=0)
    prob_h = np.moveaxis(np.take(pred.probabilities, holdout, axis=axis + 1), axis + 1, 1)
    target = encode_target(truth_h, k, config.nested)
    count, mean_p, freq = calibration_bins(prob_h, target)
    out: dict[str, Any] = {
        "iou": [scores[c]["iou"] for c in range(1, k + 1)],
        "dice": [scores[c]["dice"] for c in range(1, k + 1)],
        "brier": brier_score(prob_h, target),
        "ece": expected_calibration_error(prob_h, target),
        "calibration": {"count": count.tolist(), "mean_p": mean_p.tolist(),
                        "freq": freq.tolist()},
    }  # fmt: skip
    if surface:
        plane = [s for a, s in enumerate(spacing or (1.0, 1.0, 1.0)) if a != axis]
        out["hd95"], out["hd95_slices"] = hd95(labels_h, truth_h, k, plane)
    volume = robustness.normalised_volume(model, image)
    curve = robustness.ood_curve(model, volume, truth_h, holdout, gammas)
    out["ood"] = [mean for mean, _ in curve]
    curve = robustness.fgsm_curve(model, volume, truth_h, holdout, epsilons)
    out["adversarial"] = [mean for mean, _ in curve]
    return out


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
) -> CompareResult:
    """Train and score every (method, seed) in turn (module docstring). ``labels`` holds the
    truth of the held-out slices; ``params``: each method's own parameters by method name;
    ``spacing``: voxel size (mm) per array axis, for HD95; ``surface`` False (or MONAI
    missing) leaves HD95 out."""
    configs = check_request(config, methods, holdout, seeds, params)
    holdout = sorted(set(int(s) for s in holdout))
    data = training_data(image, labels, config, holdout, labelled)
    note = ""
    if surface:
        try:
            import monai.metrics  # noqa: F401
        except ImportError:
            surface, note = False, "HD95 left out: MONAI is not installed"
    runs: list[RunResult] = []
    for cfg in configs:
        for seed in seeds:
            trainer = Trainer(dataclasses.replace(cfg, seed=int(seed), preview_every=0), data)
            times, seconds, notes = _train(trainer, progress)
            model = trainer.model
            values = score(model, image, labels, holdout, spacing=spacing, gammas=gammas,
                           epsilons=epsilons, surface=surface)  # fmt: skip
            runs.append(
                RunResult(
                    method=cfg.method,
                    seed=int(seed),
                    seconds_per_step=float(np.median(times)) if times else float("nan"),
                    seconds=seconds,
                    steps=len(times),
                    params=sum(p.numel() for p in model.method.parameters()),
                    warnings=notes,
                    **values,
                )
            )
    sup = [r.seconds_per_step for r in runs if r.method == "supervised"]
    trained = False
    if not sup and time_supervised:
        cfg = dataclasses.replace(config, method="supervised", seed=int(seeds[0]), extra={})
        times, _, _ = _train(Trainer(dataclasses.replace(cfg, preview_every=0), data), progress)
        sup, trained = [float(np.median(times))], True
    reference = float(np.mean(sup)) if sup else None
    for r in runs:
        r.cost_ratio = r.seconds_per_step / reference if reference else None
    return CompareResult(
        runs=runs,
        methods=list(methods),
        seeds=[int(s) for s in seeds],
        holdout=holdout,
        axis=config.axis,
        num_classes=data.num_classes,
        gammas=[float(g) for g in gammas],
        epsilons=[float(e) for e in epsilons],
        config=config.to_dict(),
        supervised_seconds_per_step=reference,
        reference_trained=trained,
        hd95_note=note,
    )
