"""The training parameter form: main parameters in view, the rest under "Advanced".

Built with magicgui widgets from ``TrainConfig``'s own defaults, so the dock never keeps a second
copy of them, and the method list comes from the engine's registry, so a new method appears here
without any GUI change.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from qtpy.QtWidgets import QComboBox, QVBoxLayout, QWidget
from superqt import QCollapsible

from ..engine import METHODS, TrainConfig, available_devices
from ..engine.config import LOSSES, resolve_preset
from ..engine.safeguard import BAND
from .method_params import MethodParams

DEFAULTS = TrainConfig()

#: (label, value) of the preset list; "auto" resolves to ``ct`` or ``mri`` from the image.
PRESET_CHOICES = [
    ("auto (CT or MRI)", "auto"),
    ("CT", "ct"),
    ("MRI", "mri"),
    ("paper (2D, BRATS)", "paper-mri"),
    ("paper (3D, CARVE)", "paper-ct"),
]
#: Form fields a preset fills in (the levers without a widget come from the preset directly;
#: the network and the steps have a "from the preset" choice, since auto's CT and MRI recipes
#: differ in them).
PRESET_FIELDS = (
    "lr", "alpha", "ratio", "prior_mu", "prior_sigma", "batch", "warmup",
    "threshold", "loss", "patch",
)  # fmt: skip


def let_shrink(combo: QComboBox, characters: int = 6) -> None:
    """Let a combo box be narrower than its longest item (its list still shows them whole),
    so a long choice or layer name never makes the dock wider than napari's dock area."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(characters)


def device_choices() -> list[tuple[str, str]]:
    """(label, value) for auto, the CPU and every accelerator kind; absent ones are marked."""
    present = set(available_devices())
    choices = [("auto", "auto"), ("cpu", "cpu")]
    cudas = sorted(d for d in present if d.startswith("cuda"))
    choices += [(d, d) for d in cudas] or [("cuda (not available)", "cuda")]
    choices.append(("mps", "mps") if "mps" in present else ("mps (not available)", "mps"))
    return choices


class ParameterForm(QWidget):
    """Main and advanced training parameters; ``config()`` returns a validated TrainConfig."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        d = DEFAULTS
        self.preset = ComboBox(label="preset", choices=PRESET_CHOICES, value="auto")
        self.preset.tooltip = "auto: the CT or the MRI recipe, chosen from the image's intensities"
        self.method = ComboBox(
            label="method",
            choices=[(cls.title, name) for name, cls in METHODS.items()],
            value=d.method,
        )
        #: not a TrainConfig field: it chooses the trainer (``session.training_events``)
        #: on by default (benchmarks/RESULTS.md (r)), as in segpl train
        self.safeguard = CheckBox(label="safeguard", value=True)
        self.safeguard.tooltip = (
            "after a method that trains on pseudo labels, a supervised model is trained on the "
            f"same slices and kept instead when a class's volume is below 1/{BAND:g} of its own "
            "(a class lost; or it scores better on held-out slices); costs a supervised run"
        )
        #: 0: the preset's network (ct and mri: 3-slice 3D, 2D for thin structures)
        self.dims = ComboBox(
            label="network",
            choices=[("from the preset", 0), ("2D U-net", 2), ("3D (3 slices)", 3)],
            value=0,
        )
        self.dims.tooltip = (
            "from the preset: CT and MRI train the 3D network (3 slices), or the 2D U-net when "
            "a painted class covers under 1 % of its slices (thin structures such as vessels); "
            "the paper presets as in the paper. With one painted slice of a thin structure, "
            "every method moves that slice by affine maps, every method that trains on "
            "unlabelled images trains twice the steps, and SegPL and SegPL-VI also mix boxes "
            "between unlabelled images (CutMix)"
        )
        #: 0: the preset's steps (auto's CT and MRI recipes differ in them)
        self.steps = SpinBox(label="steps (0 = preset)", value=0, min=0, max=100_000, step=50)
        self.steps.tooltip = (
            f"optimiser steps; 0: the preset's (auto: {TrainConfig.from_preset('ct').steps} "
            f"for CT, {TrainConfig.from_preset('mri').steps} for MRI). Methods that train on "
            "unlabelled images double them when the network comes from the preset and one "
            "slice of a thin structure is painted (the status line says so)"
        )
        self.lr = FloatSpinBox(label="learning rate", value=d.lr, min=1e-5, max=1.0, step=0.005)
        self.lr.native.setDecimals(4)
        self.alpha = FloatSpinBox(label="alpha", value=d.alpha, min=0.0, max=10.0, step=0.01)
        self.alpha.native.setDecimals(3)
        self.ratio = SpinBox(label="unlabelled / labelled", value=d.ratio, min=0, max=20)
        self.prior_mu = FloatSpinBox(label="prior mean", value=d.prior_mu, min=0.01, max=0.99)
        self.prior_sigma = FloatSpinBox(
            label="prior sigma", value=d.prior_sigma, min=0.001, max=1.0, step=0.01
        )
        self.prior_sigma.native.setDecimals(3)
        self.device = ComboBox(label="device", choices=device_choices(), value="auto")
        present = {"auto", "cpu", *available_devices()}
        model = self.device.native.model()
        for i, (_, value) in enumerate(device_choices()):
            if value not in present:
                model.item(i).setEnabled(False)  # shown, so users know it exists, but disabled

        self.batch = SpinBox(label="labelled batch", value=d.batch, min=1, max=64)
        self.warmup = FloatSpinBox(label="alpha warm-up", value=d.warmup, min=0.0, max=1.0)
        self.threshold = FloatSpinBox(label="threshold T", value=d.threshold, min=0.01, max=0.99)
        self.loss = ComboBox(label="loss", choices=list(LOSSES), value=d.loss)
        self.normalisation = ComboBox(
            label="normalisation",
            choices=[("from the preset", "preset"), ("z-score", "zscore"), ("CT window", "ct")],
            value="preset",
        )
        self.ct_level = FloatSpinBox(
            label="CT level", value=d.ct_window[0], min=-2000, max=4000, step=10
        )
        self.ct_width = FloatSpinBox(
            label="CT width", value=d.ct_window[1], min=1, max=6000, step=50
        )
        self.patch = SpinBox(label="patch", value=d.patch, min=32, max=1024, step=16)
        self.channels = SpinBox(label="channels (0 = paper)", value=0, min=0, max=128)
        self.nested = CheckBox(label="nested classes", value=d.nested)
        self.seed = SpinBox(label="seed", value=d.seed, min=0, max=2**31 - 1)
        #: not a TrainConfig field either: on, a run whose mask contradicts the paint is made
        #: once more at seed + 1 (engine/retry.py; benchmarks/RESULTS.md (V2)), as in segpl train
        self.retry = CheckBox(label="retry on paint mismatch", value=True)
        self.retry.tooltip = (
            "when a painted class is missing from the mask or matches your paint on the painted "
            "slices with a Dice under 0.5, train once more at seed + 1 and keep the mask that "
            "matches your paint better; costs a second run then"
        )
        self.amp = CheckBox(label="mixed precision (CUDA)", value=d.amp)
        self.preview_every = SpinBox(label="preview every", value=5, min=1, max=1000)

        self.main = Container(
            widgets=[
                self.preset, self.method, self.safeguard, self.dims, self.steps, self.lr,
                self.alpha, self.ratio, self.prior_mu, self.prior_sigma, self.device,
            ]
        )  # fmt: skip
        self.advanced = Container(
            widgets=[
                self.batch, self.warmup, self.threshold, self.loss, self.normalisation,
                self.ct_level, self.ct_width, self.patch, self.channels, self.nested, self.seed,
                self.retry, self.amp, self.preview_every,
            ]
        )  # fmt: skip
        # Narrow enough for napari's dock area: combo boxes may clip their text, and the group
        # box around the form already gives the side margins.
        combos = (self.preset, self.method, self.dims, self.device, self.loss, self.normalisation)
        for combo in combos:
            let_shrink(combo.native)
        for container in (self.main, self.advanced):
            _, top, _, bottom = container.margins
            container.margins = (0, top, 0, bottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.main.native)
        #: the chosen method's own parameters (``TrainConfig.extra``), rebuilt with the method
        self.method_params = MethodParams(self)
        layout.addWidget(self.method_params)
        self.collapsible = QCollapsible("Advanced", self)
        self.collapsible.addWidget(self.advanced.native)
        layout.addWidget(self.collapsible)
        self.method.changed.connect(self._method_changed)
        self.method_params.rebuilt.connect(self._method_applies)
        self.normalisation.changed.connect(self._method_applies)
        self.preset.changed.connect(self._preset_changed)
        self._method_changed()

    def _preset_changed(self, *_: object) -> None:
        """Fill the form with the preset's values (auto: those shared by CT and MRI).

        The method and its own parameters are left as they are: presets are recipes for the
        shared fields (no preset sets a method's parameters), so a preset switch never undoes
        what the user set for the method."""
        name = self.preset.value
        values = TrainConfig.from_preset("mri" if name == "auto" else name)
        for field in PRESET_FIELDS:
            getattr(self, field).value = getattr(values, field)
        self.dims.value = 0 if name == "auto" else values.dims
        self.steps.value = 0 if name == "auto" else values.steps
        self.ct_level.value, self.ct_width.value = values.ct_window
        self.normalisation.value = "preset"

    def _method_changed(self, *_: object) -> None:
        """Show the method's own parameters (their group's rebuild calls ``_method_applies``)."""
        self.method_params.show_method(self.method.value)

    def _method_applies(self, *_: object) -> None:
        """Show only what applies: the prior for SegPL-VI, unlabelled knobs for SSL methods,
        following an ensemble's member method (each member trains as that method alone)."""
        cls = METHODS[self.method.value]
        runs = METHODS[self.method_params.runs_as() or self.method.value]
        self.prior_mu.visible = self.prior_sigma.visible = runs.learns_threshold
        self.alpha.enabled = self.ratio.enabled = runs.uses_unlabelled
        # supervised runs are not checked, nor is an ensemble (it is not SegPL's class): the
        # box then shows unticked, and the user's own choice comes back with a method it fits
        if not cls.uses_unlabelled and self.safeguard.enabled:
            self._safeguard_wanted = self.safeguard.value
            self.safeguard.value = False
        elif cls.uses_unlabelled and not self.safeguard.enabled:
            self.safeguard.value = getattr(self, "_safeguard_wanted", True)
        self.safeguard.enabled = cls.uses_unlabelled
        self.ct_level.enabled = self.ct_width.enabled = self.normalisation.value == "ct"

    def preset_for(self, image: object | None) -> str:
        """The chosen preset, with "auto" decided by the image's intensities."""
        return resolve_preset(self.preset.value, image)

    def config(self, axis: int, image: object | None = None) -> TrainConfig:
        """The preset's values (levers included), overridden by what the form shows."""
        normalisation = self.normalisation.value
        return TrainConfig.from_preset(
            self.preset_for(image),
            method=self.method.value,
            dims=self.dims.value or None,
            axis=axis,
            steps=self.steps.value or None,
            lr=self.lr.value,
            batch=self.batch.value,
            ratio=self.ratio.value,
            alpha=self.alpha.value,
            warmup=self.warmup.value,
            threshold=self.threshold.value,
            prior_mu=self.prior_mu.value,
            prior_sigma=self.prior_sigma.value,
            loss=self.loss.value,
            nested=self.nested.value,
            patch=self.patch.value,
            base_channels=self.channels.value,
            normalisation=None if normalisation == "preset" else normalisation,
            ct_window=(self.ct_level.value, self.ct_width.value),
            seed=self.seed.value,
            device=self.device.value,
            amp=self.amp.value,
            preview_every=self.preview_every.value,
            extra=self.method_params.values(),  # the chosen method's own names only
        ).validate()
