"""One configuration dataclass shared by the command line, the dock and saved checkpoints.

Keeping every knob in one flat, JSON-friendly dataclass means a checkpoint can store the whole
run (and be loaded with ``torch.load(weights_only=True)``), and a new front end never needs its
own copy of the defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

#: The paper's recipe with every lever beyond it switched off, so ``--preset paper`` reproduces
#: the paper whatever the engine's defaults become.
_PAPER_BASE: dict[str, Any] = {
    "batch": 2,
    "warmup": 0.1,
    "threshold": 0.5,
    "loss": "dice",
    "patch": 176,
    "normalisation": "zscore",
    "ct_window": (40.0, 400.0),
    "burn_in": 0.0,
    "unsup_dice": "image",
    "confidence": 0.0,
    "ema": 0.0,
    "threshold_signal": "kl",
    "perturb": 0.0,
    "warp": 0.0,
    "affine": 0.0,
    "near": 0.0,
    "mix": 0.0,
    "gate": False,
    "exclusive": False,
    "intensity": 0.0,
}

#: ``paper-mri`` (alias ``paper``) is the paper's BRATS setting (appendix table 1: 2D, lr 0.03,
#: U/L 5, alpha 0.05, prior N(0.5, 0.1), 200 steps); ``paper-ct`` its CARVE one (3-slice 3D,
#: lr 0.01, U/L 4, alpha 1.0, prior N(0.4, 0.1), 800 steps). ``mri`` and ``ct`` are the
#: engine's recipe (the dataclass defaults) for each modality; ``suggest_preset`` picks one of
#: the two from the intensities, so a user who only paints and presses Train gets the right one.
PRESETS: dict[str, dict[str, Any]] = {
    # dims 0: the network chosen from the painted slices (``choose_dims``). MRI adds CutMix on
    # the unlabelled images, the painted slices' intensities in the E-step (``intensity.py``)
    # and 600 steps: each gained on the brain (benchmarks/RESULTS.md (m), (n), (o)). On CT the
    # intensity evidence gained on the lungs but lost on the abdominal organs ((xx)); CutMix
    # and 600 steps were not measured there.
    "mri": {"dims": 0, "mix": 0.5, "intensity": 2.0, "steps": 600},
    # No affine maps of the labelled slices: they helped the brain but cost the lungs and the
    # vessels (RESULTS.md (c)).
    "ct": {"dims": 0, "normalisation": "ct", "affine": 0.0},
    "paper-mri": {
        **_PAPER_BASE,
        "dims": 2,
        "lr": 0.03,
        "ratio": 5,
        "alpha": 0.05,
        "prior_mu": 0.5,
        "prior_sigma": 0.1,
        "steps": 200,
    },
    "paper-ct": {
        **_PAPER_BASE,
        "dims": 3,
        "lr": 0.01,
        "ratio": 4,
        "alpha": 1.0,
        "prior_mu": 0.4,
        "prior_sigma": 0.1,
        "steps": 800,
    },
}
PRESETS["paper"] = PRESETS["paper-mri"]


def suggest_preset(volume: Any) -> str:
    """``ct`` for a volume in Hounsfield units (air near -1000 somewhere), else ``mri``.

    MRI intensities are never far below zero, while every CT of a body holds air; the 0.1st
    percentile is used rather than the minimum so one odd voxel decides nothing."""
    import numpy as np

    data = np.asarray(volume)
    sample = data.ravel()[:: max(1, data.size // 1_000_000)]
    return "ct" if float(np.percentile(sample, 0.1)) < -500 else "mri"


def resolve_preset(name: str | None, volume: Any | None) -> str:
    """A preset name as the user gave it; None or "auto" means: suggested by the volume (or
    ``mri`` when there is none to look at)."""
    if name not in (None, "auto"):
        return name
    return "mri" if volume is None else suggest_preset(volume)


#: Below this foreground fraction of the labelled slices, in any class, a structure counts as
#: thin and ``choose_dims`` picks the 2D U-net: the abdominal vessels paint 0.22 % and 0.23 %,
#: the lungs 9 % and more, the brain's tissues 14 % and more.
THIN_STRUCTURE = 0.01


def choose_dims(painted: list[float]) -> int:
    """The network for ``dims`` 0: 2 (2D U-net) when a painted class covers less than
    ``THIN_STRUCTURE`` of the labelled slices, else 3 (3-slice 3D): 3D gained on the lungs and
    the brain and cost SegPL 18 IoU points on the thin abdominal vessels (benchmarks/RESULTS.md
    (c''), (g))."""
    present = [f for f in painted if f > 0]
    return 2 if present and min(present) < THIN_STRUCTURE else 3


#: With ``dims`` 0, one painted slice of a thin structure (``choose_dims`` picked 2D) trains
#: with random affine maps of the labelled slice, CutMix on the unlabelled images and twice
#: the steps (supervised training: the affine maps only, since it sees no unlabelled images).
#: Measured on the abdominal vessels only (benchmarks/RESULTS.md (i)).
ONE_THIN_SLICE = {"affine": 0.2, "mix": 0.5, "steps_factor": 2}


def one_thin_slice(config: TrainConfig, uses_unlabelled: bool) -> TrainConfig:
    """The recipe for one painted slice of a thin structure (see ``ONE_THIN_SLICE``); values
    already stronger than the recipe's are kept."""
    values: dict[str, Any] = {"affine": max(config.affine, ONE_THIN_SLICE["affine"])}
    if uses_unlabelled:
        values["mix"] = max(config.mix, ONE_THIN_SLICE["mix"])
        values["steps"] = config.steps * ONE_THIN_SLICE["steps_factor"]
    return dataclasses.replace(config, **values)


def one_thin_slice_note(config: TrainConfig, mixes: bool) -> str:
    """What ``one_thin_slice`` changed in ``config``, for front ends to show; CutMix only for a
    method that ``mixes`` (SegPL, SegPL-VI): the others never read ``mix``, even where the
    recipe or the preset sets it."""
    parts = ["affine maps"] + (["CutMix"] if mixes and config.mix > 0 else [])
    return f"one thin slice: {' and '.join(parts)}"


#: The most classes a network (and a labels file) may have: one byte of labels.
MAX_CLASSES = 255

#: The segmentation losses (see ``losses.segmentation_loss``), for validation and front ends.
LOSSES = ("dice", "dice+bce", "bce")

#: What SegPL-VI's threshold head learns from besides the KL (``methods/segpl_vi.py``): nothing
#: (the paper) or the labelled slices. A third, the labelled slices moved as the student sees
#: unlabelled ones ("augmented"), left mu at the prior and was removed (RESULTS.md (H2)).
THRESHOLD_SIGNALS = ("kl", "labelled")
#: threshold_signal values removed: an older model file holding one is refused by name
REMOVED_THRESHOLD_SIGNALS = ("augmented",)


#: Levers removed because the recorded results show they did nothing or did harm
#: (benchmarks/RESULTS.md), with the value that meant "off": older model files saved them.
REMOVED: dict[str, Any] = {
    "skip_empty": False,
    "augment": False,
    "lr_schedule": "constant",
    "unsup_loss": "",
    "span": 1.0,
    "threshold_weight": 1.0,
    "threshold_fit": "dice",
    "settle": 0.0,
    "parts_every": 0,
    "flat": False,
    "compete": 0.0,
    "rescue": 0.0,
    "cap": 0.0,
}


class ConfigError(ValueError):
    """A parameter outside its valid range; the message names the parameter."""


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data.

    The defaults are the engine's own recipe (benchmarks/RESULTS.md says how it was chosen and
    what it gains): the paper's SegPL with a supervised burn-in, pseudo labels from an
    exponential moving average of the weights on clean images while the network learns from
    intensity-perturbed and geometrically moved ones (the pseudo labels moved alike), unlabelled
    slices drawn mostly near the labelled ones, one Dice over the unlabelled batch, labelled
    slices moved by random affine maps (off in the ``ct`` preset), and (SegPL-VI) a threshold
    head fitted on the labelled slices as well as the KL. The ``ct`` and ``mri`` presets choose
    the network from the painted slices (``dims`` 0: ``choose_dims``, 3-slice 3D unless a
    structure is thin; one painted slice of a thin structure adds ``one_thin_slice``), and
    ``mri`` mixes the unlabelled images (CutMix) and weighs the painted slices' intensities in
    the E-step (``intensity``). The paper's own settings are the ``paper`` presets.
    ``base_channels`` of 0 means the paper's backbone width for the chosen ``dims`` (16 for the
    2D U-net, 8 for the 3D one).
    """

    method: str = "segpl"
    dims: int = 2
    axis: int = 2
    steps: int = 300
    lr: float = 0.003
    batch: int = 2
    ratio: int = 2
    alpha: float = 1.0
    warmup: float = 0.2
    threshold: float = 0.5
    prior_mu: float = 0.5
    #: 0.05, not the paper's 0.1: draws of T as low as 0.3 fed over-growth and a swap of the
    #: lungs; with 0.05 SegPL-VI gained on both the tuning and the validation volumes
    #: (benchmarks/RESULTS.md (cc)). The paper presets keep 0.1.
    prior_sigma: float = 0.05
    loss: str = "dice"
    nested: bool = False
    num_classes: int = 0
    patch: int = 176
    base_channels: int = 0
    depth: int = 4
    normalisation: str = "zscore"
    ct_window: tuple[float, float] = (-300.0, 1600.0)
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    preview_every: int = 10
    # Levers beyond the paper (the paper presets switch every one of them off).
    burn_in: float = 0.4
    unsup_dice: str = "batch"
    confidence: float = 0.3
    ema: float = 0.99
    threshold_signal: str = "labelled"
    perturb: float = 0.2
    warp: float = 0.2
    affine: float = 0.2
    near: float = 0.15
    #: probability that an unlabelled image takes a CutMix box from another (methods/segpl.py)
    mix: float = 0.0
    #: after the burn-in, wait until the teacher's pseudo labels are inside the collapse
    #: guard's bands before the pseudo-label loss ramps in
    gate: bool = True
    #: exclusive (not nested) classes: a pixel's pseudo label is at most one class, the most
    #: probable above the threshold, as inference labels it, instead of one independent
    #: threshold per class channel (which let both lungs' channels cover both lungs)
    exclusive: bool = True
    #: weight of the painted slices' intensity evidence in the E-step (``intensity.py``): the
    #: log-likelihood ratio of each class, times this, added to the teacher's logits before
    #: the pseudo labels are cut (0: the network alone)
    intensity: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """The first encoder's width: the paper's 16 (2D) or 8 (3D) unless set."""
        if not self.dims:
            raise ConfigError("dims 0 is chosen from the data first: use choose_dims")
        if self.base_channels:
            return self.base_channels
        return 16 if self.dims == 2 else 8

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup * self.steps))

    @property
    def burn_in_steps(self) -> int:
        return int(round(self.burn_in * self.steps))

    def validate(self) -> TrainConfig:
        """Raise ConfigError for a value no run can use; return self for chaining."""
        for f in dataclasses.fields(self):  # inf or NaN would train, and the model not load
            value = getattr(self, f.name)
            numbers = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
        checks = [
            (self.dims in (0, 2, 3), "dims must be 2, 3 or 0 (from the painted slices)"),
            (self.axis in (0, 1, 2), "axis must be 0, 1 or 2"),
            (self.steps >= 1, "steps must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (self.batch >= 1, "batch must be at least 1"),
            (self.ratio >= 0, "ratio must be 0 or more"),
            (self.alpha >= 0, "alpha must be 0 or more"),
            (0 <= self.warmup <= 1, "warmup is a fraction of the steps, between 0 and 1"),
            (0 < self.threshold < 1, "threshold must lie inside (0, 1)"),
            (0 < self.prior_mu < 1, "prior_mu must lie inside (0, 1)"),
            (self.prior_sigma > 0, "prior_sigma must be positive"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (  # the U-net halves the patch depth times; a crop of another size cannot rejoin
                self.patch >= 2**self.depth and self.patch % 2**self.depth == 0,
                f"patch must be a multiple of {2**self.depth} (2 to the depth)",
            ),
            (self.depth >= 1, "depth must be at least 1"),
            (self.normalisation in ("zscore", "ct"), "normalisation must be 'zscore' or 'ct'"),
            (self.ct_window[1] > 0, "ct_window width must be positive"),
            (self.preview_every >= 0, "preview_every must be 0 (off) or more"),
            (self.num_classes >= 0, "num_classes must be 0 (from the labels) or more"),
            (0 <= self.burn_in < 1, "burn_in is a fraction of the steps, in [0, 1)"),
            (self.unsup_dice in ("image", "batch"), "unsup_dice must be 'image' or 'batch'"),
            (0 <= self.confidence < 0.5, "confidence band must lie in [0, 0.5)"),
            (0 <= self.ema < 1, "ema decay must lie in [0, 1)"),
            (0 <= self.perturb <= 1, "perturb strength must lie in [0, 1]"),
            (0 <= self.warp <= 1, "warp strength must lie in [0, 1]"),
            (0 <= self.affine <= 1, "affine strength must lie in [0, 1]"),
            (self.near >= 0, "near must be 0 (uniform) or a positive fraction of the slice count"),
            (0 <= self.mix <= 1, "mix is a probability, in [0, 1]"),
            (self.intensity >= 0, "intensity must be 0 (off) or more"),
            (
                self.threshold_signal in THRESHOLD_SIGNALS,
                "threshold_signal must be 'kl' (paper) or 'labelled'",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        from .methods import METHODS  # here: the methods import this module

        if self.method in METHODS:  # an unknown name is get_method's error, which lists them
            METHODS[self.method].check_params(self.extra)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so that checkpoints load with ``weights_only=True``."""
        data = dataclasses.asdict(self)
        data["ct_window"] = list(self.ct_window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error rather than silently lost.

        A lever since removed (``REMOVED``) is dropped when it holds the value that meant
        "off", so older model files still load; any other value is refused, since this
        program can no longer train or reproduce what it did."""
        values = dict(data)
        for key, off in REMOVED.items():
            if key in values and values[key] != off:
                raise ConfigError(
                    f"{key} = {values[key]!r}: a removed lever (only {off!r}, off, is accepted)"
                )
            values.pop(key, None)
        if values.get("threshold_signal") in REMOVED_THRESHOLD_SIGNALS:
            raise ConfigError(
                f"threshold_signal = {values['threshold_signal']!r}: a removed lever (only "
                f"{' or '.join(map(repr, THRESHOLD_SIGNALS))} are accepted)"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown configuration keys: {sorted(unknown)}")
        if "ct_window" in values:
            values["ct_window"] = tuple(float(v) for v in values["ct_window"])
        return cls(**values)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """A preset's values, then the caller's overrides (None means keep the preset)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)
