"""A method's own parameters in the dock: one widget each, within the parameter's range, into
``config.extra``; the ensemble's member passes its method's through; presets keep them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_toy_volume
from test_dock import quick_params

from napari_segpl.engine import METHODS
from napari_segpl.engine.methods.ensemble import member_choices
from napari_segpl.gui import SegPLDock, notify
from napari_segpl.gui.params import ParameterForm

pytestmark = pytest.mark.gui


@pytest.fixture
def form(qtbot) -> ParameterForm:
    widget = ParameterForm()
    qtbot.addWidget(widget)
    return widget


def titles(form: ParameterForm) -> list[str]:
    return [group.title() for group in form.method_params.groups]


def test_fixmatch_shows_tau_and_segpl_shows_nothing(form):
    assert form.method.value == "segpl" and titles(form) == []
    assert not form.method_params.isVisibleTo(form)  # no empty group box
    form.method.value = "fixmatch"
    assert titles(form) == ["FixMatch parameters"] and form.method_params.isVisibleTo(form)
    tau = form.method_params.widget("tau")
    params = METHODS["fixmatch"].params
    assert tau.value == 0.95 and tau.tooltip.startswith(params["tau"].help)
    tau.value = 0.8
    extra = form.config(axis=2).extra
    assert extra == {"tau": 0.8, "weight": 1.0, "cutmix": 0.5}
    assert all(type(v) is float for v in extra.values())
    form.method.value = "segpl"
    assert titles(form) == [] and not form.method_params.isVisibleTo(form)
    assert form.config(axis=2).extra == {}


def test_every_method_gets_one_widget_a_parameter_within_its_range(form):
    """Also the methods still arriving (cct, cps): the form reads the registry."""
    for name, cls in METHODS.items():
        form.method.value = name
        shown = form.method_params.groups[0].widgets if cls.params else {}
        assert list(shown) == list(cls.params), name
        for key, widget in shown.items():
            param = cls.params[key]
            assert widget.value == param.default, (name, key)
            if isinstance(param.default, str):
                assert tuple(widget.choices) == param.options()  # values: method names
            else:
                assert param.low <= widget.min and widget.max <= param.high, (name, key)
                assert type(widget.value) is type(param.default), (name, key)
        assert form.config(axis=2).method == name  # validated, defaults included


def test_ensemble_shows_its_member_and_passes_the_member_parameters(form):
    form.method.value = "ensemble"
    assert titles(form) == ["Deep ensemble parameters"]
    members = form.method_params.widget("members")
    member = form.method_params.widget("member")
    assert members.value == 5 and member.value == "supervised"
    assert tuple(member.choices) == tuple(member_choices()) and "ensemble" not in member.choices
    assert not form.ratio.enabled  # supervised members draw no unlabelled images
    members.value = 3
    member.value = "fixmatch"
    assert titles(form) == ["Deep ensemble parameters", "FixMatch parameters (each member)"]
    assert form.method_params.widget("members") is members  # only the member's group is new
    assert form.ratio.enabled  # FixMatch members use unlabelled images
    form.method_params.widget("tau").value = 0.9
    config = form.config(axis=2)
    assert config.extra == {
        "members": 3, "member": "fixmatch", "tau": 0.9, "weight": 1.0, "cutmix": 0.5,
    }  # fmt: skip
    assert type(config.extra["members"]) is int
    member.value = "supervised"
    assert titles(form) == ["Deep ensemble parameters"]
    assert form.config(axis=2).extra == {"members": 3, "member": "supervised"}


def test_out_of_range_values_cannot_be_entered(form, qtbot):
    form.method.value = "fixmatch"
    tau = form.method_params.widget("tau")
    tau.native.setValue(1.5)  # what the spin box does with a value out of range
    assert tau.value == 1.0
    with pytest.raises(ValueError):
        tau.value = -0.5
    line = tau.native.lineEdit()
    line.selectAll()
    qtbot.keyClicks(line, "7")  # "7" is out of [0, 1]: the spin box refuses it
    tau.native.interpretText()
    assert tau.value == 1.0  # unchanged
    assert form.config(axis=2).extra["tau"] == tau.value
    form.method.value = "ensemble"
    members = form.method_params.widget("members")
    members.native.setValue(99)
    assert members.value == 20  # the parameter's high
    form.method.value = "mean-teacher"
    decay = form.method_params.widget("decay")
    decay.native.setValue(1.0)
    assert decay.value == 0.9999  # four decimals, so the high is exact
    assert form.config(axis=2).extra["decay"] == 0.9999


def test_presets_and_method_switches_keep_what_the_user_set(form):
    form.method.value = "fixmatch"
    form.method_params.widget("tau").value = 0.8
    for preset in ("paper-ct", "ct", "auto"):
        form.preset.value = preset
        assert form.method_params.widget("tau").value == 0.8, preset
    form.method.value = "segpl"
    form.method.value = "ensemble"
    form.method_params.widget("member").value = "fixmatch"
    assert form.method_params.widget("tau").value == 0.8  # FixMatch's, alone or as a member
    form.method.value = "fixmatch"
    assert form.config(axis=2).extra["tau"] == 0.8
    form.method_params.groups[0].defaults.click()
    assert form.config(axis=2).extra == {"tau": 0.95, "weight": 1.0, "cutmix": 0.5}
    form.method.value = "ensemble"
    assert form.method_params.widget("member").value == "fixmatch"  # remembered too


def test_a_tiny_run_trains_with_the_extra(make_napari_viewer, qtbot, monkeypatch):
    """The form's extra reaches the trainer: an ensemble of two FixMatch members, 2 steps
    each, and the trained model's configuration holds what the dock showed."""
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    image, truth = make_toy_volume((32, 28, 12))
    labels = np.zeros_like(truth)
    labels[..., [3, 8]] = truth[..., [3, 8]]
    viewer.add_image(image, name="toy")
    viewer.add_labels(labels, name="toy labels")
    dock = SegPLDock(viewer)
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    p = dock.params
    quick_params(p)
    p.dims.value, p.steps.value, p.patch.value, p.safeguard.value = 2, 2, 32, False
    p.method.value = "ensemble"
    p.method_params.widget("members").value = 2
    p.method_params.widget("member").value = "fixmatch"
    p.method_params.widget("tau").value = 0.7
    try:
        assert dock.start_training()
        qtbot.waitUntil(
            lambda: not dock.state.busy and dock.state.predict_queued is None, timeout=120_000
        )
        assert not errors, errors
        assert dock.model is not None and dock.model.config.extra == {
            "members": 2, "member": "fixmatch", "tau": 0.7, "weight": 1.0, "cutmix": 0.5,
        }  # fmt: skip
        assert dock.model.steps_done == 4  # two members of two steps
    finally:
        dock.shutdown()
