"""Presets: the paper's recipe stays reproducible whatever the defaults become, and the CT/MRI
choice is made from the intensities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_segpl.engine import PRESETS, TrainConfig
from napari_segpl.engine.config import choose_dims, one_thin_slice_note, suggest_preset

#: The paper's 2D recipe (appendix table 1, BRATS), written out independently of config.py.
PAPER_2D = {
    "dims": 2, "lr": 0.03, "batch": 2, "ratio": 5, "alpha": 0.05, "warmup": 0.1,
    "threshold": 0.5, "prior_mu": 0.5, "prior_sigma": 0.1, "steps": 200, "loss": "dice",
    "patch": 176, "normalisation": "zscore",
}  # fmt: skip
LEVERS_OFF = {
    "burn_in": 0.0, "unsup_dice": "image", "confidence": 0.0, "skip_empty": False, "ema": 0.0,
    "augment": False, "lr_schedule": "constant", "threshold_signal": "kl", "perturb": 0.0,
    "unsup_loss": "", "warp": 0.0, "affine": 0.0, "near": 0.0, "span": 1.0, "gate": False,
    "exclusive": False, "intensity": 0.0,
}  # fmt: skip


@pytest.mark.parametrize("name", ["paper", "paper-mri"])
def test_paper_preset_is_the_paper_with_every_lever_off(name):
    cfg = TrainConfig.from_preset(name)
    for key, value in {**PAPER_2D, **LEVERS_OFF}.items():
        assert getattr(cfg, key) == value, key


def test_paper_ct_preset():
    cfg = TrainConfig.from_preset("paper-ct")
    assert (cfg.dims, cfg.lr, cfg.ratio, cfg.alpha, cfg.prior_mu, cfg.steps) == (
        3, 0.01, 4, 1.0, 0.4, 800,
    )  # fmt: skip
    assert all(getattr(cfg, k) == v for k, v in LEVERS_OFF.items())


def _differences(a: TrainConfig, b: TrainConfig) -> set[str]:
    return {
        f.name for f in dataclasses.fields(TrainConfig) if getattr(a, f.name) != getattr(b, f.name)
    }


def test_ct_and_mri_presets_are_the_default_recipe_but_for_window_affine_dims_and_mri_levers():
    default, ct, mri = TrainConfig(), TrainConfig.from_preset("ct"), TrainConfig.from_preset("mri")
    assert _differences(mri, default) == {"dims", "mix", "intensity", "steps"}
    assert (default.steps, ct.steps, mri.steps) == (300, 300, 600)  # measured on the brain
    assert (default.mix, ct.mix, mri.mix) == (0.0, 0.0, 0.5)  # CutMix: measured on the brain
    # the painted slices' intensity evidence in the E-step: measured on the brain only
    assert (default.intensity, ct.intensity, mri.intensity) == (0.0, 0.0, 2.0)
    assert _differences(ct, default) == {"normalisation", "affine", "dims"}
    assert (default.affine, ct.affine, mri.affine) == (0.2, 0.0, 0.2)  # helps MRI, hurts CT
    assert (ct.dims, mri.dims) == (0, 0)  # chosen from the painted slices
    assert any(getattr(default, k) != v for k, v in LEVERS_OFF.items())  # levers are on
    assert set(PRESETS) == {"ct", "mri", "paper", "paper-mri", "paper-ct"}


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
    from napari_segpl.engine import Trainer, prepare_data

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
    with pytest.raises(ValueError, match="choose_dims"):
        _ = cfg.channels  # an unresolved config cannot build a network


@pytest.mark.parametrize(
    ("method", "labelled", "expected"),
    [
        # one painted slice of a thin structure: affine maps, CutMix and twice the steps
        ("segpl", [2], {"affine": 0.2, "mix": 0.5, "steps": 8}),
        ("segpl-vi", [2], {"affine": 0.2, "mix": 0.5, "steps": 8}),
        # supervised training sees no unlabelled images: the affine maps only
        ("supervised", [2], {"affine": 0.2, "mix": 0.0, "steps": 4}),
        # two slices: the preset as it is
        ("segpl", [1, 2], {"affine": 0.0, "mix": 0.0, "steps": 4}),
    ],
)
def test_one_thin_slice_recipe(method, labelled, expected):
    cfg = TrainConfig.from_preset(
        "ct", method=method, axis=0, steps=4, patch=32, depth=2, preview_every=0
    )
    trainer = _small_trainer(cfg, labelled)  # an 8 x 1 line: thin
    got = {k: getattr(trainer.config, k) for k in expected}
    assert trainer.config.dims == 2
    assert got == expected
    assert trainer.one_thin_slice == (len(labelled) == 1)
    assert trainer.model.config.steps == expected["steps"]  # what a checkpoint stores
    # what the dock and the CLI show: CutMix named only where it is on
    uses_unlabelled = trainer.model.method.uses_unlabelled
    assert ("CutMix" in one_thin_slice_note(trainer.config, uses_unlabelled)) == (
        expected["mix"] > 0
    )


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
    assert (trainer.config.affine, trainer.config.mix, trainer.config.steps) == (0.0, 0.0, 4)
    assert not trainer.one_thin_slice
