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
from collections.abc import Callable, Iterator

import numpy as np
import torch

from .augment import warp_labelled
from .config import TrainConfig, choose_dims, one_thin_slice
from .decision import Decision, fit_decision
from .device import release_memory, resolve_device
from .guard import CollapseGuard, CollapseWarning, gate_never_opened, labelled_fractions
from .inference import label_dtype, labels_from_pseudo
from .intensity import IntensityEvidence
from .losses import alpha_at
from .methods import Batch, Method, get_method
from .model import TrainedModel
from .networks import memory_format
from .sampling import Sampler, TrainingData, check_in_plane, encode_target, slice_batch
from .trainer_events import Event, FillStopped, FinishedEvent, PreviewEvent, StepEvent


def seed_everything(seed: int) -> None:
    """Seed torch's generators (the initial weights); ``run`` makes the sampler's numpy
    generator from the same seed."""
    torch.manual_seed(seed)


#: The most painted voxels the label decision is fitted on (evenly spaced beyond it).
DECISION_VOXELS = 262_144


def evenly_spaced(slices: list[int], most: int) -> list[int]:
    """Every k-th of ``slices``, k as small as keeps at most ``most`` of them."""
    return slices[:: max(1, -(-len(slices) // most))]


class Trainer:
    """Runs one training configuration over prepared data; one ``run()`` per Trainer.

    ``model`` is the same object from construction to the end of the run, so a front end may
    hold it (and save it after a Stop). After the run (the model back on the CPU),
    ``pseudo_label_volume`` gives the E-step's pseudo labels of the whole volume.

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
        check_in_plane(data.image.shape[1:], config)
        self.config = config
        self.data = data
        self.device = resolve_device(config.device)
        seed_everything(config.seed)  # the seed fixes the initial weights...
        self.model = TrainedModel.new(config, data.num_classes)
        #: the run's optimiser steps (an ensemble's: every member's): size progress bars by it
        self.total_steps = self.model.method.total_steps()
        self._torch_state = torch.get_rng_state()  # ...and, from here on, the sampled thresholds
        self._stop = False
        self._running = False
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
        self._fit_evidence()
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
        # would otherwise have its errors locked in (benchmarks/RESULTS.md (g)).
        # ``opened``: the step the ramp starts from (None: not yet). Steps count from the start
        # of the run, or of each member's ``config.steps`` in an ensemble (its own gate, as if
        # trained alone: the ensemble hands its member the member's own step).
        def new_gate() -> tuple[CollapseGuard | None, int | None]:
            if guard is not None and config.gate:
                method.pseudo_classes = [False] * self.data.num_classes
                return CollapseGuard(painted), None
            return None, config.burn_in_steps

        gate, opened = new_gate()
        start = time.perf_counter()
        steps_done = 0

        def alpha_fn(step: int) -> float:
            if opened is None:
                return 0.0
            return alpha_at(step, config.alpha, config.warmup_steps, opened)

        self._running = True
        try:
            for step in range(self.total_steps):
                if self._stop:
                    break
                local = step % config.steps  # the member's own step in an ensemble
                if step and not local:
                    gate, opened = new_gate()
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
                    self.total_steps,
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
                    if local + 1 >= config.burn_in_steps:
                        allowed = gate.plausible_classes()
                        method.pseudo_classes = [
                            a or b for a, b in zip(method.pseudo_classes, allowed, strict=True)
                        ]
                        if opened is None and any(method.pseudo_classes):
                            opened = local + 1
                every = config.preview_every
                if every and method.uses_unlabelled and steps_done % every == 0:
                    yield self.preview(steps_done)
                    method.train()
        finally:
            stopped = steps_done < self.total_steps
            let_in = method.pseudo_classes or []
            method.pseudo_classes = None  # the gate belongs to this run only
            if steps_done:
                method.finish()
            final: list[CollapseWarning] = []
            seen: dict[int, np.ndarray] = {}  # painted slices predicted once for both uses
            try:  # the finished model on the slices it was given (yielded below: a generator
                # being closed may not yield)
                if steps_done:  # what a Stop leaves is exported too: it labels the same way
                    self.model.decision = self.fit_decision(seen=seen)
                if not stopped:
                    final = self._check_labelled(steps_done, guard, seen)
                    # (a run that ended inside its burn-in never meant to use them)
                    if gate is not None and steps_done > config.burn_in_steps:
                        final = gate_never_opened(steps_done, gate, let_in) + final
            finally:
                del optimiser
                self._to_cpu()  # the evidence too: kept for the fill after the run
                self._running = False
        yield from final
        yield FinishedEvent(steps_done, stopped, time.perf_counter() - start, history)

    def fit_decision(
        self, method: Method | None = None, seen: dict[int, np.ndarray] | None = None
    ) -> Decision | None:
        """The label decision fitted to the painted slices (``decision.py``) for the trained
        network, or for ``method`` (a finished copy: what a Stop now would leave); None for
        nested classes, which keep their own rule. Predicted on at most 16 evenly spaced
        painted slices (more where they are small) and fitted on at most ``DECISION_VOXELS``
        of their voxels, evenly spaced, so it takes seconds on a big scan painted through.
        ``seen`` (the trained network only) keeps each slice's probabilities for reuse."""
        labelled = self.data.labelled
        if self.config.nested or not labelled:
            return None
        fit_slices = max(16, DECISION_VOXELS // int(np.prod(self.data.image.shape[1:])))
        labelled = evenly_spaced(labelled, fit_slices)
        keep = seen if method is None else None  # a copy's probabilities are not the run's
        probs = [self._probabilities(s, method, keep) for s in labelled]
        prob = np.stack(probs, axis=1).reshape(len(probs[0]), -1)
        truth = np.stack([self.data.labels[s] for s in labelled]).reshape(-1)
        step = max(1, -(-truth.size // DECISION_VOXELS))
        return fit_decision(prob[:, ::step], truth[::step], self.config.threshold)

    def _check_labelled(
        self, step: int, guard: CollapseGuard | None, seen: dict[int, np.ndarray] | None = None
    ) -> list[CollapseWarning]:
        """Warnings when the trained model predicts nothing or everything of a class on the
        labelled slices (at most 16 of them, so the check stays well under a second a slice);
        ``seen``: probabilities already predicted (by ``fit_decision``)."""
        slices = evenly_spaced(self.data.labelled, 16)
        predicted, painted = [], []
        for s in slices:
            prob = self._probabilities(s, seen=seen)
            predicted.append((prob > self.config.threshold).reshape(len(prob), -1).mean(axis=1))
            target = encode_target(self.data.labels[s], self.data.num_classes, self.data.nested)
            painted.append(target.reshape(len(target), -1).mean(axis=1))
        checker = guard or CollapseGuard([0.0] * self.data.num_classes)
        fractions = [float(f) for f in np.mean(predicted, axis=0)]
        return checker.check_model(step, fractions, [float(f) for f in np.mean(painted, axis=0)])

    def preview(self, step: int) -> PreviewEvent:
        """The E-step's pseudo labels of the whole preview slice, as the loss would use them
        now (``Method.pseudo_labels``, the function the training step calls)."""
        s = int(self.preview_slice)
        prob, pseudo, t = self._e_step([s])
        labels = labels_from_pseudo(pseudo[0], prob[0], self.config.nested)
        if self.model.method.learns_threshold:
            threshold = [float(v) for v in t[0]]
            values = " / ".join(f"{v:.2f}" for v in threshold)
            note = f"T = head's mu for slice {s}: {values}"
        else:  # the configuration's value, not its float32 copy
            threshold = [float(self.config.threshold)] * len(t[0])
            note = f"T = {self.config.threshold:g} (fixed)"
        if not self.model.method.cuts_pseudo_labels:
            note += f"; {self.config.method} trains on no such labels: shown for comparison"
        return PreviewEvent(step, s, labels, prob[0], threshold, note)

    def pseudo_label_volume(
        self,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        batch_size: int = 8,
    ) -> np.ndarray:
        """The E-step's pseudo labels of every unlabelled slice of the training volume, as the
        preview shows them, on the original volume's array layout (the slicing axis back in
        place); labelled slices are 0. For the dock's fill after training (the model as it is
        now: after ``run()``, the trained one). ``progress(done, total)`` is called after each
        batch of slices; when ``should_stop()`` returns True, ``FillStopped`` is raised."""
        if self._running:
            raise RuntimeError("pseudo_label_volume is for after training; use the previews")
        data, method = self.data, self.model.method
        labelled = set(data.labelled)
        todo = [s for s in range(data.image.shape[0]) if s not in labelled]
        out = np.zeros(data.image.shape, label_dtype(data.num_classes))
        if method.evidence is None:  # kept from the run when there was one
            self._fit_evidence()
        else:
            method.evidence = method.evidence.to(self.device)
        method.to(self.device)
        try:
            for start in range(0, len(todo), batch_size):
                if should_stop is not None and should_stop():
                    raise FillStopped(f"pseudo labels stopped after {start} of {len(todo)} slices")
                chunk = todo[start : start + batch_size]
                prob, pseudo, _ = self._e_step(chunk)
                for i, s in enumerate(chunk):
                    out[s] = labels_from_pseudo(pseudo[i], prob[i], self.config.nested)
                if progress is not None:
                    progress(start + len(chunk), len(todo))
        finally:
            self._to_cpu()
        return np.ascontiguousarray(np.moveaxis(out, 0, self.config.axis))

    def _to_cpu(self) -> None:
        """The networks and the intensity evidence back on the CPU, and the device's cached
        memory released."""
        method = self.model.method
        method.to(torch.device("cpu"))
        if method.evidence is not None:
            method.evidence = method.evidence.to("cpu")
        release_memory(self.device)

    def _e_step(self, slices: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The E-step of whole slices of the training volume, in eval mode and without
        gradient: probabilities (B, K, h, w), boolean pseudo labels (B, K, h, w) and the
        thresholds (B, K) they were cut at (3D: the centre slice of each stack)."""
        x, (h, w) = self._slices(slices)
        method = self.model.method
        method.train(False)
        with torch.no_grad(), self._autocast():
            prob, pseudo, t = method.pseudo_labels(x.to(self.device))
        if self.config.dims == 3:
            prob, pseudo = prob[:, :, 1], pseudo[:, :, 1]
        crop = (..., slice(0, h), slice(0, w))
        return prob[crop].cpu().numpy(), pseudo[crop].cpu().numpy(), t.float().cpu().numpy()

    def _slices(self, slices: list[int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Whole slices (or 3-slice stacks) of the training volume as a network input, padded
        as the sampler pads (with the volume's minimum), and their in-plane size."""
        volume = self.data.image
        x = slice_batch(volume, slices, self.config.dims, self.config.depth)
        return torch.from_numpy(x), volume.shape[1:]

    def _fit_evidence(self) -> None:
        """The painted slices' intensity evidence for the E-step, when ``intensity`` is on."""
        method = self.model.method
        if self.config.intensity > 0 and method.uses_unlabelled:
            method.evidence = IntensityEvidence.from_painted(self.data).to(self.device)

    def _probabilities(
        self, s: int, method: Method | None = None, seen: dict[int, np.ndarray] | None = None
    ) -> np.ndarray:
        """(K, h, w) class probabilities of slice ``s`` of the training volume from the
        network being trained, or from ``method`` (what prediction would give), in eval mode;
        read from and kept in ``seen`` when given."""
        if seen is not None and s in seen:
            return seen[s]
        x, (h, w) = self._slices([s])
        method = self.model.method if method is None else method
        method.train(False)
        with torch.no_grad(), self._autocast():
            prob = torch.sigmoid(method.logits(x.to(self.device)).float())
        prob = prob[0, :, 1] if self.config.dims == 3 else prob[0]
        out = prob[:, :h, :w].cpu().numpy()
        if seen is not None:
            seen[s] = out
        return out

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
