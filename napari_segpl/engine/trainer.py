"""The training loop as a generator of events, shared by the command line, the tests and the dock.

A generator suits every front end: the CLI draws a progress bar from the events, the dock runs
the same generator in a napari ``thread_worker`` (which can abort between yields), and tests just
iterate. ``Trainer.stop()`` (or closing the generator) ends the run between two steps and keeps
the model trained so far in ``Trainer.model``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from .augment import warp_labelled
from .config import TrainConfig, choose_dims, one_thin_slice
from .device import release_memory, resolve_device
from .guard import CollapseGuard, CollapseWarning, labelled_fractions
from .intensity import IntensityEvidence
from .losses import alpha_at
from .methods import Batch, get_method
from .model import TrainedModel
from .networks import memory_format
from .sampling import Sampler, TrainingData, encode_target, pad_in_plane, stack_indices


@dataclass
class StepEvent:
    """After each optimiser step. ``mu``/``sigma`` are the mean threshold distribution of the
    step's unlabelled images (SegPL-VI only); ``fg_fraction`` the pseudo labels' foreground
    fraction per class (methods with pseudo labels only)."""

    step: int
    total: int
    losses: dict[str, float]
    lr: float
    seconds_per_step: float
    mu: float | None = None
    sigma: float | None = None
    fg_fraction: list[float] | None = None


@dataclass
class PreviewEvent:
    """Every ``preview_every`` steps: the current pseudo labels (and probabilities) of one whole
    unlabelled slice, in the slice's own in-plane shape."""

    step: int
    slice_index: int
    labels: np.ndarray
    probabilities: np.ndarray


@dataclass
class FinishedEvent:
    steps_done: int
    stopped: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


Event = StepEvent | PreviewEvent | CollapseWarning | FinishedEvent


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch's generators and return the numpy generator the sampler uses."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class Trainer:
    """Runs one training configuration over prepared data; one ``run()`` per Trainer.

    ``model`` is the same object from construction to the end of the run, so a front end may
    hold it (and save it after a Stop).

    ``preview_slice`` (an index along the slicing axis) may be changed while training, e.g. to
    follow the slice on screen; by default it is the unlabelled slice nearest the middle.
    """

    def __init__(self, config: TrainConfig, data: TrainingData) -> None:
        config = config.validate()
        #: foreground fraction of each class on the labelled slices: picks the network for
        #: ``dims`` 0, and is what the collapse guard and the gate compare pseudo labels with
        self.painted = labelled_fractions(data)
        #: True when the one-thin-slice recipe was applied (front ends say so)
        self.one_thin_slice = False
        if not config.dims:  # the presets' "from the painted slices"
            config = dataclasses.replace(config, dims=choose_dims(self.painted))
            if config.dims == 2 and len(data.labelled) == 1:  # thin, and one slice painted
                uses_unlabelled = get_method(config.method).uses_unlabelled
                config = one_thin_slice(config, uses_unlabelled)
                self.one_thin_slice = True
        self.config = config
        self.data = data
        self.device = resolve_device(config.device)
        seed_everything(config.seed)  # the seed fixes the initial weights...
        self.model = TrainedModel.new(config, data.num_classes)
        self._torch_state = torch.get_rng_state()  # ...and, from here on, the sampled thresholds
        self._stop = False
        unlabelled = [s for v, s in data.unlabelled if v == 0]
        middle = data.image.shape[0] // 2
        self.preview_slice = min(unlabelled or [middle], key=lambda s: abs(s - middle))

    def stop(self) -> None:
        """Ask the loop to end before its next step."""
        self._stop = True

    def run(self) -> Iterator[Event]:
        """Train, yielding a StepEvent per step, PreviewEvents, CollapseWarnings when pseudo
        labels drift towards nothing or everything, and one FinishedEvent."""
        config, method = self.config, self.model.method
        rng = np.random.default_rng(config.seed)  # the batches
        torch.set_rng_state(self._torch_state)  # as if training followed construction at once
        method.to(self.device)
        method.train()
        if config.intensity > 0 and method.uses_unlabelled:
            method.evidence = IntensityEvidence.from_painted(self.data).to(self.device)
        sampler = Sampler(self.data, config, rng)
        optimiser = torch.optim.Adam(method.parameters(), lr=config.lr)
        n_unlabelled = config.batch * config.ratio if method.uses_unlabelled else 0
        fmt = memory_format(config.dims)
        history: list[dict[str, float]] = []
        painted = self.painted
        guard = CollapseGuard(painted) if method.uses_unlabelled else None
        # The gate: after the burn-in, a class's pseudo labels enter the loss only once the
        # teacher's pseudo labels of it are plausible (inside the guard's bands), and alpha
        # ramps in from the first class let in: a teacher still far off when the burn-in ends
        # would otherwise have its errors locked in. On most runs checked the teacher was
        # plausible by then and the schedule is the ungated one; on the lungs (3D, K = 3,
        # seed 1) it gave both lungs to one class until about step 200, and holding both
        # classes back raised the run from 0.746 to 0.881 IoU (benchmarks/RESULTS.md (g)).
        # ``opened``: the step the ramp starts from (None: not yet).
        gate = None
        opened: int | None = config.burn_in_steps
        if guard is not None and config.gate:
            gate, opened = CollapseGuard(painted), None
            method.pseudo_classes = [False] * self.data.num_classes
        start = time.perf_counter()
        steps_done = 0

        def alpha_fn(step: int) -> float:
            if opened is None:
                return 0.0
            return alpha_at(step, config.alpha, config.warmup_steps, opened)

        scheduler = None
        if config.lr_schedule == "poly":  # the usual segmentation decay (1 - t/T)^0.9
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimiser, lambda step: (1.0 - step / config.steps) ** 0.9
            )

        try:
            for step in range(config.steps):
                if self._stop:
                    break
                t0 = time.perf_counter()
                x_l, y_l, mask = sampler.labelled_batch(config.batch)
                x_u = sampler.unlabelled_batch(n_unlabelled)
                batch = Batch(
                    self._tensor(x_l, fmt),
                    self._tensor(y_l, fmt),
                    None if mask is None else self._tensor(mask, None),
                    None if x_u is None else self._tensor(x_u, fmt),
                )
                if config.affine > 0:  # labelled slices seen moved, for every method alike
                    x_aug, y_aug = warp_labelled(batch.x_l, batch.y_l, config.affine)
                    batch.x_l = x_aug.contiguous(memory_format=fmt)
                    batch.y_l = y_aug.contiguous(memory_format=fmt)
                optimiser.zero_grad(set_to_none=True)
                with self._autocast():
                    out = method.compute_loss(batch, step, alpha_fn)
                out.loss.backward()
                lr = optimiser.param_groups[0]["lr"]
                optimiser.step()
                method.after_step()
                if scheduler is not None:
                    scheduler.step()
                steps_done = step + 1
                self.model.steps_done = steps_done
                history.append(out.logs)
                fg = None
                if out.pseudo is not None:
                    spatial = (0, *range(2, out.pseudo.ndim))
                    fg = out.pseudo.float().mean(dim=spatial).tolist()
                mu, sigma = out.threshold or (None, None)
                yield StepEvent(
                    steps_done,
                    config.steps,
                    out.logs,
                    lr,
                    time.perf_counter() - t0,
                    mu,
                    sigma,
                    fg,
                )
                if guard is not None and fg is not None and out.logs.get("alpha", 0.0) > 0:
                    yield from guard.update(steps_done, fg)
                if gate is not None and fg is not None and not all(method.pseudo_classes):
                    gate.track(fg)
                    if steps_done >= config.burn_in_steps:
                        allowed = gate.plausible_classes()
                        method.pseudo_classes = [
                            a or b for a, b in zip(method.pseudo_classes, allowed, strict=True)
                        ]
                        if opened is None and any(method.pseudo_classes):
                            opened = steps_done
                every = config.preview_every
                if every and method.uses_unlabelled and steps_done % every == 0:
                    yield self.preview(steps_done)
                    method.train()
        finally:
            stopped = steps_done < config.steps
            let_in = method.pseudo_classes or []
            method.pseudo_classes = None  # the gate belongs to this run only
            if steps_done:
                method.finish()
            final: list[CollapseWarning] = []
            try:  # the finished model on the slices it was given (yielded below: a generator
                # being closed may not yield)
                if not stopped:
                    final = self._check_labelled(steps_done, guard)
                    # (a run that ended inside its burn-in never meant to use them)
                    if gate is not None and steps_done > config.burn_in_steps:
                        final = self._gate_never_opened(steps_done, gate, let_in) + final
            finally:
                method.to(torch.device("cpu"))
                del optimiser, scheduler
                release_memory(self.device)
        yield from final
        yield FinishedEvent(steps_done, stopped, time.perf_counter() - start, history)

    @staticmethod
    def _gate_never_opened(
        step: int, gate: CollapseGuard, let_in: list[bool]
    ) -> list[CollapseWarning]:
        """A warning for each class whose pseudo labels never became plausible enough to use."""
        closed = [c for c, ok in enumerate(let_in, start=1) if not ok]
        found = gate.implausible()
        return [
            CollapseWarning(step, c, *found[c], "gate")  # type: ignore[arg-type]
            for c in closed
            if c in found
        ]

    def _check_labelled(self, step: int, guard: CollapseGuard | None) -> list[CollapseWarning]:
        """Warnings when the trained model predicts nothing or everything of a class on the
        labelled slices (at most 16 of them, so the check stays well under a second a slice)."""
        slices = self.data.labelled[:: max(1, -(-len(self.data.labelled) // 16))]
        predicted, painted = [], []
        for s in slices:
            prob = self._probabilities(s)
            predicted.append((prob > self.config.threshold).reshape(len(prob), -1).mean(axis=1))
            target = encode_target(self.data.labels[s], self.data.num_classes, self.data.nested)
            painted.append(target.reshape(len(target), -1).mean(axis=1))
        checker = guard or CollapseGuard([0.0] * self.data.num_classes)
        fractions = [float(f) for f in np.mean(predicted, axis=0)]
        return checker.check_model(step, fractions, [float(f) for f in np.mean(painted, axis=0)])

    def preview(self, step: int) -> PreviewEvent:
        """Pseudo labels of the whole preview slice, as the E-step would make them now."""
        from .inference import labels_from_probabilities

        s = int(self.preview_slice)
        prob = self._probabilities(s, e_step=True)
        labels = labels_from_probabilities(prob, self.config.threshold, self.config.nested)
        return PreviewEvent(step, s, labels, prob)

    def _probabilities(self, s: int, e_step: bool = False) -> np.ndarray:
        """(K, h, w) class probabilities of slice ``s`` of the labelled volume, in eval mode;
        ``e_step``: as the E-step sees them (with the intensity evidence, when on)."""
        method, config = self.model.method, self.config
        volume = self.data.image
        idx = stack_indices(s, volume.shape[0], config.dims)
        h, w = volume.shape[1:]
        image = pad_in_plane(volume[idx], 2**config.depth, float(volume.min()))
        x = torch.from_numpy(image[None] if config.dims == 3 else image)[None]
        method.train(False)
        with torch.no_grad(), self._autocast():
            x = x.to(self.device)
            logits = method.logits(x)
            if e_step:
                logits = method.e_step_logits(logits, x)
            prob = torch.sigmoid(logits.float())
        prob = prob[0, :, 1] if config.dims == 3 else prob[0]
        return prob[:, :h, :w].cpu().numpy()

    def _tensor(self, array: np.ndarray, fmt: torch.memory_format | None) -> torch.Tensor:
        tensor = torch.from_numpy(array).to(self.device, non_blocking=True)
        return tensor if fmt is None else tensor.contiguous(memory_format=fmt)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast on CUDA when ``amp`` is on (no gradient scaler needed for bf16)."""
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def train(config: TrainConfig, data: TrainingData) -> TrainedModel:
    """Run a whole training without events, for scripts and tests."""
    trainer = Trainer(config, data)
    for _ in trainer.run():
        pass
    return trainer.model
