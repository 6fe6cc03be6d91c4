"""Presets: the paper's recipe stays reproducible whatever the defaults become, and the CT/MRI
choice is made from the intensities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_segpl.engine import StepEvent, TrainConfig, Trainer, prepare_data
from napari_segpl.engine import trainer as trainer_module
from napari_segpl.engine.config import choose_dims, one_thin_slice_note, suggest_preset
from napari_segpl.engine.guard import run_dims
from napari_segpl.engine.methods import segpl as segpl_module

#: The paper's recipes (appendix table 1: batch, learning rate, steps, alpha, U/L; section 3
#: and the method notes: priors N(0.5, 0.1) MRI and N(0.4, 0.1) CT, 176 x 176 patches, the
#: backbone's 16 (2D) or 8 (3D) first channels, Dice, case-wise z-scores, T = 0.5), written out
#: independently of config.py.
PAPER_2D = {
    "dims": 2, "lr": 0.03, "batch": 2, "ratio": 5, "alpha": 0.05, "threshold": 0.5,
    "prior_mu": 0.5, "prior_sigma": 0.1, "steps": 200, "loss": "dice", "patch": 176,
    "normalisation": "zscore", "channels": 16,
}  # fmt: skip
PAPER_CT = {
    **PAPER_2D, "dims": 3, "lr": 0.01, "ratio": 4, "alpha": 1.0, "prior_mu": 0.4, "steps": 800,
    "channels": 8,
}  # fmt: skip
#: What "off" means for each lever beyond the paper (the paper does none of these things).
LEVERS_OFF = {
    "burn_in": 0.0, "unsup_dice": "image", "confidence": 0.0, "skip_empty": False, "ema": 0.0,
    "augment": False, "lr_schedule": "constant", "threshold_signal": "kl", "perturb": 0.0,
    "unsup_loss": "", "warp": 0.0, "affine": 0.0, "near": 0.0, "span": 1.0, "mix": 0.0,
    "gate": False, "exclusive": False, "intensity": 0.0, "settle": 0.0, "compete": 0.0,
}  # fmt: skip
#: Fields that are no part of a recipe (the data, the run, the architecture's depth, a CT
#: window the z-score ignores, the warm-up, which the paper leaves open, a weight unused while
#: the threshold signal is the KL alone).
NOT_RECIPE = {
    "method", "axis", "nested", "num_classes", "seed", "device", "amp", "preview_every",
    "extra", "base_channels", "depth", "ct_window", "warmup", "threshold_weight",
}  # fmt: skip
FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _levers_off() -> dict[str, object]:
    """LEVERS_OFF for the levers the configuration still has (removed ones cannot be on)."""
    return {k: v for k, v in LEVERS_OFF.items() if k in FIELDS}


@pytest.mark.parametrize(("name", "paper"), [("paper", PAPER_2D), ("paper-mri", PAPER_2D),
                                             ("paper-ct", PAPER_CT)])  # fmt: skip
def test_paper_presets_are_the_paper_with_every_lever_off(name, paper):
    cfg = TrainConfig.from_preset(name)
    for key, value in {**paper, **_levers_off()}.items():
        assert getattr(cfg, key) == value, key


def test_every_field_is_a_paper_setting_a_lever_or_no_part_of_a_recipe():
    """A new lever that defaults to on would silently change the paper presets: each field must
    be one whose paper value or whose "off" is written above."""
    known = set(PAPER_2D) | set(LEVERS_OFF) | NOT_RECIPE
    assert FIELDS - known == set(), "say what the paper presets do with these fields"


def _spy(monkeypatch, module, name: str) -> list[int]:
    """Count the calls of ``module.name`` (the function stays the same)."""
    calls: list[int] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


@pytest.mark.parametrize("name", ["default", "ct", "mri"])
def test_what_each_preset_does_in_a_run(monkeypatch, name):
    """What the engine's recipe does, watched in two steps of a run: the ct preset cuts the
    intensities at its window and leaves the labelled slices unmoved; the mri preset mixes the
    unlabelled images (CutMix) and fits the painted slices' intensity evidence; both choose the
    network from the painted slices (a 12 x 12 block of a 32 x 32 slice: 3D). (Their step
    counts and strengths are measured choices, benchmarks/RESULTS.md: not restated here.)"""
    moved = _spy(monkeypatch, trainer_module, "warp_labelled")
    mixed = _spy(monkeypatch, segpl_module, "random_boxes")
    small = {"axis": 0, "steps": 2, "patch": 32, "depth": 2, "preview_every": 0}
    cfg = TrainConfig(**small) if name == "default" else TrainConfig.from_preset(name, **small)
    trainer = _small_trainer(cfg, [2, 4], 12, 12)
    list(trainer.run())
    assert trainer.config.dims == (2 if name == "default" else 3)
    assert bool(moved) == (name != "ct")
    assert bool(mixed) == (name == "mri")
    assert (trainer.model.method.evidence is not None) == (name == "mri")
    # 2000 HU (bone) and 3000 HU (metal) both lie above the ct preset's window (level -300,
    # width 1600: up to 500 HU), so they normalise alike there and apart elsewhere
    image = np.full((6, 32, 32), 40.0, np.float32)
    image[:, 0, 1], image[:, 0, 2] = 2000.0, 3000.0
    labels = np.zeros(image.shape, np.uint8)
    labels[2, 8:20, 8:20] = 1
    data = prepare_data(image, labels, cfg)
    bone, metal = data.image[0, 0, 1], data.image[0, 0, 2]
    assert (bone == metal) == (name == "ct")


def test_caller_overrides_win_over_the_preset():
    cfg = TrainConfig.from_preset("paper", lr=0.001, ema=None)
    assert cfg.lr == 0.001 and cfg.ema == 0.0  # None keeps the preset's value


def test_suggest_preset_from_intensities():
    rng = np.random.default_rng(0)
    ct = rng.normal(40, 30, (20, 20, 20))
    ct[:, :3] = -1000  # air around the body
    mri = rng.uniform(0, 255, (20, 20, 20))
    assert suggest_preset(ct) == "ct"
    assert suggest_preset(mri) == "mri"
    assert suggest_preset(mri - 100) == "mri"  # a shifted MRI is still not in Hounsfield units


@pytest.mark.parametrize(
    ("painted", "dims"),
    [
        ([0.0023, 0.0022], 2),  # the abdominal vessels' labelled slices: thin, 2D
        ([0.107, 0.093], 3),  # the lungs: 3D
        ([0.24, 0.14], 3),  # the brain's tissues: 3D
        ([0.30, 0.005], 2),  # one thin class is enough for 2D
        ([0.0, 0.05], 3),  # a class not painted is no evidence of thinness
    ],
)
def test_choose_dims_from_the_painted_fractions(painted, dims):
    assert choose_dims(painted) == dims


def _small_trainer(cfg: TrainConfig, labelled: list[int], height: int = 8, width: int = 1):
    """A trainer on a 6 x 32 x 32 noise volume whose ``labelled`` slices each hold one
    ``height`` x ``width`` block of class 1 (8 x 1: 0.8 % of a slice, a thin structure)."""
    image = np.random.default_rng(0).normal(size=(6, 32, 32)).astype(np.float32)
    labels = np.zeros((6, 32, 32), np.uint8)
    labels[labelled, 8 : 8 + height, 8 : 8 + width] = 1
    return Trainer(cfg, prepare_data(image, labels, cfg, labelled=labelled))


def test_trainer_resolves_dims_zero_from_the_painted_slices():
    # a 12 x 12 block: 14 % of the 32 x 32 slice, 3D; a 1 x 8 line: 0.8 %, thin, 2D
    for (height, width), expected in (((12, 12), 3), ((8, 1), 2)):
        cfg = TrainConfig(dims=0, axis=0, steps=1, patch=32, depth=2, preview_every=0)
        trainer = _small_trainer(cfg, [2], height, width)
        assert trainer.config.dims == expected
        assert trainer.model.config.dims == expected  # what a checkpoint stores
        # the dock's preflight asks the same from the labels alone, before a thread starts
        assert run_dims(trainer.data.labels, cfg, [2]) == expected  # axis 0: the labels as given
        fixed = dataclasses.replace(cfg, dims=5 - expected)  # a network set: kept as it is
        assert run_dims(trainer.data.labels, fixed, [2]) == 5 - expected
    with pytest.raises(ValueError, match="choose_dims"):
        _ = cfg.channels  # an unresolved config cannot build a network


@pytest.mark.parametrize(
    ("method", "labelled", "recipe"),
    [("segpl", [2], True), ("segpl-vi", [2], True), ("supervised", [2], True),
     ("mean-teacher", [2], True), ("segpl", [1, 2], False)],  # two slices: the preset as is
)  # fmt: skip
def test_one_thin_slice_recipe(monkeypatch, method, labelled, recipe):
    """One painted slice of a thin structure (an 8 x 1 line): the labelled slice is moved by
    affine maps (the ct preset alone never moves it), and a method that uses unlabelled images
    also mixes them (CutMix) and trains twice the steps; supervised training sees no unlabelled
    images and gets the affine maps only. Watched in the run, not read off the configuration."""
    moved = _spy(monkeypatch, trainer_module, "warp_labelled")
    mixed = _spy(monkeypatch, segpl_module, "random_boxes")
    cfg = TrainConfig.from_preset(
        "ct", method=method, axis=0, steps=4, patch=32, depth=2, preview_every=0
    )
    trainer = _small_trainer(cfg, labelled)
    steps = [e for e in trainer.run() if isinstance(e, StepEvent)]
    uses_unlabelled = trainer.model.method.uses_unlabelled
    assert trainer.config.dims == 2
    assert trainer.one_thin_slice == recipe
    assert bool(moved) == recipe
    assert bool(mixed) == (recipe and trainer.model.method.mixes)
    assert len(steps) == (8 if recipe and uses_unlabelled else 4)
    assert trainer.model.config.steps == len(steps)  # what a checkpoint stores
    # what the dock and the CLI show: CutMix named only where it is on
    note = one_thin_slice_note(trainer.config, trainer.model.method.mixes)
    assert ("CutMix" in note) == bool(mixed)


def test_one_thin_slice_note_never_names_cutmix_for_supervised_training():
    """The mri preset sets ``mix`` for every method; supervised training still never mixes."""
    cfg = TrainConfig.from_preset(
        "mri", method="supervised", axis=0, steps=4, patch=32, depth=2, preview_every=0
    )
    trainer = _small_trainer(cfg, [2])  # an 8 x 1 line: thin
    assert trainer.one_thin_slice and trainer.config.mix == 0.5
    assert one_thin_slice_note(trainer.config, False) == "one thin slice: affine maps"
    segpl = dataclasses.replace(trainer.config, method="segpl")
    assert one_thin_slice_note(segpl, True) == "one thin slice: affine maps and CutMix"


def test_one_thin_slice_recipe_needs_dims_from_the_data():
    """An explicit network (the paper presets, or a user's choice) keeps its recipe."""
    cfg = TrainConfig.from_preset("ct", dims=2, axis=0, steps=4, patch=32, depth=2)
    trainer = _small_trainer(cfg, [2])
    assert trainer.config == cfg  # nothing changed
    assert not trainer.one_thin_slice


def test_cli_help_names_each_presets_own_lever_values():
    """`segpl train --help` prints a lever's default; where the ct or mri preset sets another
    value, the help must name it (it once said 0.2 for --affine, which ct sets to 0)."""
    from napari_segpl.cli import build_parser
    from napari_segpl.engine.config import PRESETS

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: a.help or "" for a in train._actions}
    default = TrainConfig()
    for preset in ("ct", "mri"):
        for key, value in PRESETS[preset].items():
            if key in helps and isinstance(value, float) and value != getattr(default, key):
                assert f"{preset} {value:g}" in helps[key], (preset, key, helps[key])


@pytest.mark.parametrize(
    ("method", "uses"),
    [("supervised", False), ("mean-teacher", False), ("cct", False), ("segpl", True),
     ("fixmatch", True), ("cps", True), ("selfloop", True)],
)  # fmt: skip
def test_the_preview_says_when_the_method_trains_on_no_pseudo_labels(method, uses):
    """The dock's "pseudo labels" of supervised training or a consistency method are shown
    for comparison only: the note says so, and only for them."""
    cfg = TrainConfig(method=method, dims=2, axis=0, steps=1, patch=32, depth=2,
                      base_channels=4, preview_every=0)  # fmt: skip
    trainer = _small_trainer(cfg, [2], height=12, width=12)
    note = trainer.preview(0).threshold_note
    assert note.startswith("T = 0.5 (fixed)")
    assert ("trains on no such labels" in note) == (not uses)
