"""Presets: the paper's recipe stays reproducible whatever the defaults become, and the CT/MRI
choice is made from the intensities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_segpl.engine import PRESETS, TrainConfig
from napari_segpl.engine.config import suggest_preset

#: The paper's 2D recipe (appendix table 1, BRATS), written out independently of config.py.
PAPER_2D = {
    "dims": 2, "lr": 0.03, "batch": 2, "ratio": 5, "alpha": 0.05, "warmup": 0.1,
    "threshold": 0.5, "prior_mu": 0.5, "prior_sigma": 0.1, "steps": 200, "loss": "dice",
    "patch": 176, "normalisation": "zscore",
}  # fmt: skip
LEVERS_OFF = {
    "burn_in": 0.0, "unsup_dice": "image", "confidence": 0.0, "skip_empty": False, "ema": 0.0,
    "augment": False, "lr_schedule": "constant", "threshold_signal": "kl", "perturb": 0.0,
    "unsup_loss": "", "warp": 0.0, "affine": 0.0, "near": 0.0, "gate": False,
    "exclusive": False,
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


def test_ct_and_mri_presets_are_the_default_recipe_but_for_window_affine_and_dims():
    default, ct, mri = TrainConfig(), TrainConfig.from_preset("ct"), TrainConfig.from_preset("mri")
    assert _differences(mri, default) == {"dims"}
    assert _differences(ct, default) == {"normalisation", "affine"}
    assert (default.affine, ct.affine, mri.affine) == (0.2, 0.0, 0.2)  # helps MRI, hurts CT
    assert (ct.dims, mri.dims) == (2, 3)  # measured: 3D helps the brain, hurts the vessels
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
