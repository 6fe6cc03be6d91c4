"""A deep ensemble: M independently seeded members of one method, their probabilities averaged.

Reference: Lakshminarayanan et al., *Simple and Scalable Predictive Uncertainty Estimation using
Deep Ensembles* (NeurIPS 2017), the uncertainty baseline of the SegPL paper: M networks trained
alone from different random initialisations (and batch orders); the ensemble's probability is
the mean of the members' and their disagreement is its uncertainty.

How it runs here: the ensemble holds M member methods (``member``, default supervised, any
registered method but itself) and trains them one after another in one run of M x ``steps``
steps (``total_steps``): member i during steps [i * steps, (i + 1) * steps), with its own step
count, warm-up and EMA, so the trainer's one progress bar covers every member. The trainer's
single Adam optimiser holds every member's weights, but only the member in training receives
gradients, and Adam leaves weights without a gradient untouched, so each member trains as it
would alone. Member 0 is built from the run's seed exactly as a single model of its method
would be (and sees the same first batches): it *is* the model that method trains with this
seed. Member i > 0 is initialised from seed ``seed + 1000 i`` (so the ensembles of seeds 0 to
999 share no member) and draws the batches that follow. ``modules()`` holds every member's
networks (under ``member<i>.<name>``) and which members trained, so one model file saves and
loads them all; after a Stop, members that never trained are left out of the average.

Where ours differs: sigmoid channels (the mean is taken per class channel, and ``logits``
returns the logit of that mean so inference needs no change); our U-nets and step counts; the
members' spread is the standard deviation of their probabilities (``spread``), not the
paper's predictive entropy. Parameters of the member method are given as the ensemble's own
(``--param tau=0.9`` for an ensemble of FixMatch). Unlike its members, the ensemble is not
checked by the safeguard, and the one-thin-slice recipe treats it as a supervised method,
since both look at the registered class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..intensity import IntensityEvidence
from .base import METHODS, Batch, Method, Param, StepOutput, get_method, per_channel, register

#: Member i > 0 is initialised from the run's seed plus this times i.
SEED_STRIDE = 1000


def member_choices() -> list[str]:
    """Every registered method that can be a member (all but the ensemble itself)."""
    return [name for name in METHODS if name != "ensemble"]


def logit_of_mean(z: torch.Tensor) -> torch.Tensor:
    """logit(mean_m sigmoid(z_m)) over axis 0, as log(mean p) - log(mean (1 - p)) by
    log-sum-exp: no clamp, so FGSM on an ensemble gets a gradient where its mean probability
    saturates (clamping the mean at 1e-6 zeroed it there)."""
    return torch.logsumexp(F.logsigmoid(z), 0) - torch.logsumexp(F.logsigmoid(-z), 0)


class _Trained(nn.Module):
    """Which members trained at least one step: a buffer, so the model file keeps it."""

    def __init__(self, members: int) -> None:
        super().__init__()
        self.register_buffer("trained", torch.zeros(members, dtype=torch.bool))


@register
class Ensemble(Method):
    """M members of one method trained one after another; probabilities averaged."""

    name = "ensemble"
    title = "Deep ensemble"
    params = {
        "members": Param(5, "number of independently seeded members (M)", 2, 20),
        "member": Param("supervised", "the method each member trains with", choices=member_choices),
    }

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        values = self.check_params(config.extra)
        # Not Method.__init__: the ensemble has no backbone of its own, only its members'.
        self.config, self.num_classes = config, num_classes
        self.teacher = None
        self._ema_updates, self.finished = 0, False
        member_cls = get_method(str(values["member"]))
        own = {k: v for k, v in config.extra.items() if k not in self.params}
        member_config = dataclasses.replace(config, method=member_cls.name, extra=own)
        self.members: list[Method] = [member_cls(member_config, num_classes)]  # as alone
        for i in range(1, int(values["members"])):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed + SEED_STRIDE * i)
                self.members.append(member_cls(member_config, num_classes))
        #: the trainer reads this to decide whether batches hold unlabelled images
        self.uses_unlabelled = member_cls.uses_unlabelled
        self.mixes = member_cls.mixes
        self.cuts_pseudo_labels = member_cls.cuts_pseudo_labels
        self.model = self.members[0].model
        self._trained = _Trained(len(self.members))
        self._current, self._local_step = 0, 0

    @classmethod
    def check_params(cls, extra: dict) -> dict[str, float | int | str]:
        """The ensemble's own parameters, then the member method's from what is left."""
        own = {k: v for k, v in extra.items() if k in cls.params}
        values = super().check_params(own)
        rest = {k: v for k, v in extra.items() if k not in cls.params}
        return {**values, **get_method(str(values["member"])).check_params(rest)}

    # The trainer sets these on the method it runs; every member uses them.
    @property
    def evidence(self) -> IntensityEvidence | None:
        return self.members[0].evidence

    @evidence.setter
    def evidence(self, value: IntensityEvidence | None) -> None:
        for member in self.members:
            member.evidence = value

    @property
    def pseudo_classes(self) -> list[bool] | None:
        return self.members[self._current].pseudo_classes

    @pseudo_classes.setter
    def pseudo_classes(self, value: list[bool] | None) -> None:
        for member in self.members:
            member.pseudo_classes = value

    @property
    def trained(self) -> torch.Tensor:
        """(M,) booleans: the members that trained at least one step."""
        return self._trained.trained

    def total_steps(self) -> int:
        return len(self.members) * self.config.steps

    def modules(self) -> dict[str, nn.Module]:
        nets = {
            f"member{i}.{key}": module
            for i, member in enumerate(self.members)
            for key, module in member.modules().items()
        }
        return {**nets, "ensemble": self._trained}

    def to(self, device: torch.device) -> Ensemble:
        for member in self.members:
            member.to(device)
        self._trained.to(device)
        return self

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        super().load_state_dict(state)
        for member in self.members:
            member.finished = True

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        """Member ``step // steps``'s loss at its own step count (its warm-up starts again)."""
        steps = self.config.steps
        self._current = min(step // steps, len(self.members) - 1)
        self._local_step = step - self._current * steps
        self.trained[self._current] = True
        return self.members[self._current].compute_loss(batch, self._local_step, alpha_fn)

    def after_step(self) -> None:
        """The member's own EMA; at its last step it finishes (the EMA becomes its weights)."""
        member = self.members[self._current]
        member.after_step()
        if self._local_step + 1 == self.config.steps:
            member.finish()

    def finish(self) -> None:
        """Finish members a Stop interrupted (those that trained)."""
        for member, trained in zip(self.members, self.trained.tolist(), strict=True):
            if trained and not member.finished:
                member.finish()
        self.finished = True

    def _active(self) -> list[Method]:
        """The members that predict: those that trained (all, when none has)."""
        flags = self.trained.tolist()
        return [m for m, t in zip(self.members, flags, strict=True) if t] or self.members

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, K, ...) float32 sigmoid probabilities of each member that trained."""
        return torch.stack([torch.sigmoid(m.logits(x).float()) for m in self._active()])

    def spread(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the members' probabilities: the ensemble's probability and its
        uncertainty (population standard deviation over the members)."""
        p = self.member_probabilities(x)
        return p.mean(0), p.std(0, unbiased=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The logit of the mean of the members' probabilities, so that a sigmoid downstream
        gives that mean (``logit_of_mean``: exact and with a gradient where it saturates)."""
        return logit_of_mean(torch.stack([m.logits(x).float() for m in self._active()]))

    def e_step_probabilities(
        self, x: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """During training: the member in training's; afterwards: the members' mean."""
        if not self.finished:
            return self.members[self._current].e_step_probabilities(x, logits)
        return torch.stack([m.e_step_probabilities(x) for m in self._active()]).mean(0)

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The dock's preview: the member in training's pseudo labels; after training, the
        members' mean E-step probabilities cut at the fixed threshold."""
        if not self.finished:
            return self.members[self._current].pseudo_labels(x)
        fixed = float(self.config.threshold)
        t = torch.full((x.shape[0], self.num_classes), fixed, device=x.device)
        p = self.e_step_probabilities(x)
        return p, self.cut(p, per_channel(t, p.ndim)), t
