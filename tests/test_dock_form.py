"""The parameter form alone: the method list follows the registry, and the presets (auto
included) fill the form and decide the config."""

from __future__ import annotations

import numpy as np

from napari_segpl.engine import METHODS, TrainConfig
from napari_segpl.engine.config import PRESETS
from napari_segpl.gui.params import ParameterForm


def test_method_list_follows_the_registry(qtbot, monkeypatch):
    class Dummy(METHODS["supervised"]):
        name = "dummy"
        title = "Dummy baseline"

    monkeypatch.setitem(METHODS, "dummy", Dummy)
    form = ParameterForm()
    qtbot.addWidget(form)
    assert set(form.method.choices) >= set(METHODS)
    form.method.value = "dummy"
    assert form.config(axis=1).method == "dummy"


def test_presets_fill_the_form_and_auto_follows_the_image(qtbot):
    form = ParameterForm()
    qtbot.addWidget(form)
    ct = np.full((8, 8, 4), 40.0)
    ct[:2] = -1000.0  # air
    mri = np.random.default_rng(0).uniform(0, 255, (8, 8, 4))
    assert form.preset.value == "auto"
    assert form.config(2, ct).normalisation == "ct"
    assert form.config(2, mri).normalisation == "zscore"
    assert form.config(2, ct) == TrainConfig.from_preset("ct", axis=2, preview_every=5)
    assert form.config(2, mri) == TrainConfig.from_preset("mri", axis=2, preview_every=5)
    form.dims.value = 2  # a user's own network wins over auto's
    assert form.config(2, mri).dims == 2 != PRESETS["mri"]["dims"]
    form.preset.value = "paper-ct"
    assert form.dims.value == PRESETS["paper-ct"]["dims"]  # an explicit preset shows its network
    form.preset.value = "auto"
    assert form.dims.value == 0 and form.config(2, mri).dims == 0
    assert form.steps.value == 0  # auto: the steps come from the preset the image picks
    # auto passes the picked preset's own steps through (the default where it sets none)
    for volume, picked in ((ct, "ct"), (mri, "mri")):
        assert form.config(2, volume).steps == PRESETS[picked].get("steps", TrainConfig().steps)
    form.steps.value = 50  # a user's own steps win over auto's
    assert (form.config(2, ct).steps, form.config(2, mri).steps) == (50, 50)
    form.preset.value = "paper-mri"
    shown = {"lr": form.lr.value, "alpha": form.alpha.value, "ratio": form.ratio.value}
    shown["steps"] = form.steps.value
    assert shown == {k: PRESETS["paper-mri"][k] for k in shown}  # the form shows the preset
    paper = form.config(2, ct)  # an explicit preset: the image does not change it
    assert paper == TrainConfig.from_preset("paper", axis=2, preview_every=5)
    assert form.config(2, ct).dims == 2
    form.normalisation.value = "ct"  # a user's own choice still wins
    assert form.config(2, mri).normalisation == "ct"
