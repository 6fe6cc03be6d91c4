"""The safeguard: a semi-supervised run checked against supervised training on the same slices.

Pseudo labels can over-grow (a structure painted onto slices beyond its ends) or lose a class,
and a user pressing Train on a new scan cannot tell. So after a method that trains on unlabelled
images (``uses_unlabelled``: not supervised training, not an ensemble) trains, a supervised twin
trains on the same painted slices with the same seed and preset, both predict
the whole volume as an export would, and the semi-supervised model is kept unless it lost a
class the twin found: some class's predicted volume outside the painted slices is below
1/``band`` of the twin's. Growth alone is no reason to fall back: on the validation volumes a
semi-supervised volume many times the twin's was as often a kidney the twin had missed
(benchmarks/RESULTS.md (q), (r)). The image decides instead: where the two masks differ, the
painted slices' intensities must not favour the twin's labels by over 1 nat a voxel
(``label_evidence``: a lung grown onto tissue that is not air loses; (tt)). With slices the
user held out, both are scored there instead and the semi-supervised model must not lose by
more than ``HELDOUT_MARGIN`` Dice. Otherwise the supervised model is kept, and the event says
which and why.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .config import TrainConfig
from .device import resolve_device
from .guard import CollapseWarning
from .inference import (
    PredictionStopped,
    predict_volume,
    stop_between_batches,
)
from .label_evidence import MARGIN, LabelEvidence, label_evidence
from .methods import get_method
from .metrics import class_mask
from .model import TrainedModel
from .sampling import TrainingData
from .snapshot import frozen_copy
from .trainer import FinishedEvent, StepEvent, Trainer

#: a class whose semi-supervised volume is below 1/BAND of the twin's counts as lost; 2 was
#: chosen on the tuning set from 1.25, 1.5, 2 and 3 (benchmarks/RESULTS.md (q)) and kept for
#: the loss-only rule (r)
BAND = 2.0
#: how much mean held-out Dice the semi-supervised model may lose to the twin and still be kept
HELDOUT_MARGIN = 0.01


@dataclass
class SafeguardProgress:
    """A step of the supervised twin (for progress bars; its losses are not the run's)."""

    step: int
    total: int


@dataclass
class HeldoutEvent:
    """Every few steps of a run with held-out slices: Dice per class there, of the network
    being trained cut as a prediction would be (the validation curve)."""

    step: int
    dice: list[float]


@dataclass
class SafeguardEvent:
    """What the safeguard decided. ``ratios``: per class, the semi-supervised model's volume over
    the twin's (each plus one painted slice's mean area of the class, so a few stray voxels of
    a small structure do not decide); ``heldout``: mean Dice per class on the held-out slices,
    per method, when there were any."""

    method: str
    kept: str
    reason: str
    ratios: list[float]
    band: float
    heldout: dict[str, list[float]] | None = None
    #: the whole check (the twin's training and both predictions), and the predictions alone
    seconds: float = 0.0
    predict_seconds: float = 0.0

    @property
    def message(self) -> str:
        return f"safeguard kept {self.kept}: {self.reason}"


@dataclass
class CheckedLabels:
    """The kept model's labels from the check's whole-volume prediction, and how they were
    predicted: a front end that would predict the same model the same way for a mask alone
    writes these instead (a whole-volume prediction saved; ``predict_volume``'s labels do not
    depend on its batch size or on whether probabilities are kept)."""

    model: TrainedModel
    labels: np.ndarray
    axis: int
    device: str
    #: voxels removed per class as not touching the paint (``predict_volume``'s ``paint``),
    #: None when every predicted part was kept
    removed: dict[int, int] | None = None
    #: the prediction's ``paint_note``: painted classes missing or unlike their paint ("" when none)
    paint_note: str = ""

    def fits(self, model: TrainedModel, axis: int | None, device: str, parts: bool) -> bool:
        """Whether ``predict_volume(model, axis=axis, device=device)`` would give these labels,
        with the training paint as ``paint`` when ``parts``."""
        axis = model.config.axis if axis is None else axis
        same = str(resolve_device(device)) == str(resolve_device(self.device))
        painted = self.removed is not None
        return model is self.model and axis == self.axis and same and parts == painted


def volume_ratios(
    semi: np.ndarray,
    sup: np.ndarray,
    painted: Sequence[int],
    axis: int,
    areas: Sequence[float],
    nested: bool = False,
) -> list[float]:
    """Per class c = 1..len(areas): (V_semi + a_c) / (V_sup + a_c), V counted on every slice
    along ``axis`` but the painted ones and a_c the mean painted area of c per painted slice."""
    keep = [s for s in range(semi.shape[axis]) if s not in set(painted)]
    a, b = np.take(semi, keep, axis=axis), np.take(sup, keep, axis=axis)
    out = []
    for c, area in enumerate(areas, start=1):
        va, vb = class_mask(a, c, nested).sum(), class_mask(b, c, nested).sum()
        out.append(float((va + area) / (vb + area)))
    return out


def heldout_dice(
    pred: np.ndarray,
    truth: np.ndarray,
    slices: Sequence[int],
    axis: int,
    classes: int | None = None,
    nested: bool = False,
) -> list:
    """Dice per class 1..``classes`` (default max(truth)) on ``slices`` (1.0 where a class is
    absent from both); ``nested``: class c is the region label >= c."""
    p, t = np.take(pred, list(slices), axis=axis), np.take(truth, list(slices), axis=axis)
    out = []
    for c in range(1, (classes or int(truth.max(initial=0))) + 1):
        pc, tc = class_mask(p, c, nested), class_mask(t, c, nested)
        total = pc.sum() + tc.sum()
        out.append(float(2 * np.logical_and(pc, tc).sum() / total) if total else 1.0)
    return out


def lost_classes(ratios: list[float], band: float = BAND) -> list[tuple[float, int]]:
    """(ratio, class) of each class whose volume ratio is below 1/band, smallest first."""
    return sorted((r, c) for c, r in enumerate(ratios, start=1) if r < 1 / band)


def decide(
    method: str,
    ratios: list[float],
    band: float = BAND,
    heldout: dict[str, list[float]] | None = None,
    evidence: LabelEvidence | None = None,
    margin: float = MARGIN,
) -> tuple[str, str]:
    """(kept method, reason): the semi-supervised ``method`` unless a class's volume ratio is
    below 1/band (a class lost against the twin), or, with held-out scores, it loses there by
    over HELDOUT_MARGIN, or, without them, the image favours the twin's labels where the two
    differ (``evidence`` below ``margin``). A fallback where the twin lost a class against
    ``method`` too says so: the kept mask is then no safer than the other."""
    out = lost_classes(ratios, band)
    if out:
        parts = "; ".join(f"class {c} {r:.2f}x (class lost?)" for r, c in out)
        reason = f"{method}'s volume against supervised training's, below 1/{band:g}: {parts}"
        # the twin lost a class too: the two traded classes, and volumes cannot tell which
        # model is right (benchmarks/RESULTS.md (u), (gg) rules 4-5), so the user must look
        lost = sorted((1 / r, c) for c, r in enumerate(ratios, start=1) if r > band)
        if lost:
            twin = "; ".join(f"class {c} {r:.2f}x" for r, c in lost)
            reason += (
                f". But supervised training's volume against {method}'s is below 1/{band:g} "
                f"too ({twin}): the two models trade classes and either may be wrong; check "
                f"the mask (the safeguard off shows {method}'s)"
            )
        return "supervised", reason
    ratio_text = ", ".join(f"{r:.2f}" for r in ratios)
    agree = f"none below 1/{band:g}"
    if heldout:
        semi, sup = (float(np.mean(heldout[m])) for m in (method, "supervised"))
        if semi < sup - HELDOUT_MARGIN:
            return "supervised", (
                f"held-out Dice {sup:.3f} (supervised) against {semi:.3f} ({method})"
            )
        return method, (
            f"held-out Dice {semi:.3f} against {sup:.3f} (supervised); volumes {agree} "
            f"({ratio_text})"
        )
    volumes = f"volumes {agree} of supervised training's ({ratio_text})"
    if evidence is None or not evidence.voxels:
        return method, volumes
    image = f"where the masks differ ({evidence.voxels} voxels), the painted slices' intensities "
    image += f"give {evidence.mean:+.2f} nats a voxel for {method}'s labels over the twin's"
    if evidence.mean < margin:  # the image looks more like the twin's labels
        return "supervised", f"{image}, below {margin:g}: {method} labelled unlike the paint"
    return method, f"{volumes}; {image} (the twin is kept below {margin:g})"


class GuardedTrainer:
    """A ``Trainer`` with the safeguard after it: the same surface (``config``, ``model``,
    ``device``, ``run``, ``stop``, ``preview_slice``, ``pseudo_label_volume``), and ``model``
    becomes the kept one when the check ends. ``image`` is the raw volume the user exports
    from (both models predict it as an export would); ``truth`` and ``holdout``: the labels and
    the held-out slices along the axis, never trained on, scored for each model.
    ``keep_labels``: after the check, ``kept_labels`` holds the kept model's labels (one
    integer volume, the other model's are dropped) for a caller that writes a mask next; off,
    nothing whole outlives the check (the dock keeps its trainer after a run). ``parts``: both
    models' masks keep only the parts touching the paint, as an export with it does."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingData,
        image: np.ndarray,
        *,
        band: float = BAND,
        truth: np.ndarray | None = None,
        holdout: Sequence[int] = (),
        check: bool = True,
        holdout_every: int = 10,
        keep_labels: bool = False,
        parts: bool = True,
    ) -> None:
        self.trainer = Trainer(config, data)
        self.parts = parts
        #: the twin and the choice run (``check``; methods using unlabelled images only);
        #: without it, held-out slices are still scored while training
        self.active = check and get_method(self.trainer.config.method).uses_unlabelled
        self.holdout_every = holdout_every
        #: the twin's configuration: the preset's, not the run's resolved one, so that it gets
        #: supervised training's own one-thin-slice recipe
        self._twin_config = dataclasses.replace(
            config, method="supervised", preview_every=0, extra={}
        )  # (the semi-supervised method's own parameters are not supervised training's)
        self.twin: Trainer | None = None
        self.image, self.band = image, band
        self.truth, self.holdout = truth, list(holdout)
        self.model: TrainedModel = self.trainer.model
        self.verdict: SafeguardEvent | None = None
        self.keep_labels = keep_labels
        self.kept_labels: CheckedLabels | None = None
        self._stopped = False

    def __getattr__(self, name: str):  # config, device, data, one_thin_slice, fills...
        return getattr(self.trainer, name)

    @property
    def preview_slice(self) -> int:
        return self.trainer.preview_slice

    @preview_slice.setter
    def preview_slice(self, value: int) -> None:
        self.trainer.preview_slice = value

    def stop(self) -> None:
        self._stopped = True
        self.trainer.stop()
        if self.twin is not None:
            self.twin.stop()

    def run(self) -> Iterator[object]:
        """The run's events, then (unless stopped) the twin's progress and a SafeguardEvent,
        then the run's FinishedEvent."""
        finished = None
        scored = self.holdout and self.truth is not None and self.holdout_every > 0
        for event in self.trainer.run():
            if isinstance(event, FinishedEvent):
                finished = event
                continue
            yield event
            if scored and isinstance(event, StepEvent):
                if event.step % self.holdout_every == 0 or event.step == event.total:
                    yield self.heldout_now(event.step)
        if self.active and finished is not None and not finished.stopped and not self._stopped:
            start = time.perf_counter()
            # built now, not before the run: constructing a Trainer seeds torch
            self.twin = Trainer(self._twin_config, self.trainer.data)
            twin_done = False
            for event in self.twin.run():
                if isinstance(event, StepEvent):
                    yield SafeguardProgress(event.step, event.total)
                elif isinstance(event, FinishedEvent):
                    twin_done = not event.stopped
                elif isinstance(event, CollapseWarning):
                    pass  # the twin's own checks are not the user's run
            try:  # (the twin's time; _check adds its predictions')
                self.verdict = self._check(time.perf_counter() - start) if twin_done else None
            except PredictionStopped:  # the note below says the model is kept unchecked
                self.verdict = None
            if self.verdict is not None:
                if self.verdict.kept == "supervised":
                    self.model = self.twin.model
                yield self.verdict
        if finished is not None and self.active and self.verdict is None:
            method = self.trainer.config.method
            note = f"Stop came before the safeguard's check: the {method} model is kept unchecked"
            finished = dataclasses.replace(finished, note=note)
        if finished is not None:
            yield finished

    @property
    def partner(self) -> TrainedModel | None:
        """The model the safeguard did not keep, once it decided (else None): the TTA std
        with twin pools the kept model's TTA maps with this one's."""
        if self.verdict is None or self.twin is None:
            return None
        return self.trainer.model if self.model is self.twin.model else self.twin.model

    def heldout_now(self, step: int) -> HeldoutEvent:
        """Dice per class on the held-out slices of the model a Stop now would leave (the
        averaged weights: what Mask now, Predict and the safeguard's own score use), as a
        prediction cuts it; the run's network is not touched."""
        assert self.truth is not None
        trainer, config = self.trainer, self.trainer.config
        cuda = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            frozen = frozen_copy(trainer.model, trainer.fit_decision)
        pred = np.stack(
            [frozen.labels(trainer._probabilities(s, frozen.method)) for s in self.holdout]
        )
        truth = np.stack([np.take(self.truth, s, axis=config.axis) for s in self.holdout])
        classes = trainer.data.num_classes
        scores = heldout_dice(pred, truth, range(len(pred)), 0, classes, config.nested)
        return HeldoutEvent(step, scores)

    def _check(self, seconds: float) -> SafeguardEvent:
        config, data = self.trainer.config, self.trainer.data
        axis, painted = config.axis, data.labelled
        assert self.twin is not None
        start = time.perf_counter()
        models = {config.method: self.trainer.model, "supervised": self.twin.model}
        stop_here = stop_between_batches(lambda: self._stopped)  # a Stop ends the check
        # labels only: no (K, *shape) float32 probabilities for a check that counts voxels;
        # both masks are checked against the same paint (parts kept only when ``parts``)
        paint = data.paint()
        predictions = {
            m: predict_volume(
                x, self.image, device=config.device, probabilities=False, progress=stop_here,
                paint=paint, keep_parts=self.parts,
            )
            for m, x in models.items()
        }  # fmt: skip
        preds = {m: p.labels for m, p in predictions.items()}
        predicting = time.perf_counter() - start
        areas = [
            float(np.mean([class_mask(data.labels[s], c, data.nested).sum() for s in painted]))
            for c in range(1, data.num_classes + 1)
        ]
        ratios = volume_ratios(
            preds[config.method], preds["supervised"], painted, axis, areas, data.nested
        )
        heldout = None
        if self.holdout and self.truth is not None:
            n = data.num_classes
            heldout = {
                m: heldout_dice(p, self.truth, self.holdout, axis, n, config.nested)
                for m, p in preds.items()
            }
        evidence = None  # read only when no class is lost and no slice is held out
        if heldout is None and not lost_classes(ratios, self.band):
            evidence = label_evidence(
                data.image, *(np.moveaxis(preds[m], axis, 0) for m in models),
                data.labels, data.labelled, 0,
            )  # fmt: skip
        kept, reason = decide(config.method, ratios, self.band, heldout, evidence)
        if self.keep_labels:  # the kept model's labels only: the other's go with ``preds``
            self.kept_labels = CheckedLabels(
                models[kept],
                preds[kept],
                axis,
                config.device,
                predictions[kept].removed,
                predictions[kept].paint_note,
            )
        return SafeguardEvent(config.method, kept, reason, ratios, self.band, heldout,
                              seconds + predicting, predicting)  # fmt: skip
