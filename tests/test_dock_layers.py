"""The dock never modifies or removes a layer it did not make: a user's layers named like its
results ("prediction", "probability", "pseudo labels", "uncertainty"), of any type and shape,
come out of Train and Predict untouched, and the dock's own results get free names."""

from __future__ import annotations

import numpy as np
import pytest
from test_dock import quick_params

from napari_segpl.gui import SegPLDock, notify
from napari_segpl.gui.result_layers import PREDICTION, PROBABILITY, PSEUDO, UNCERTAINTY, role_of

pytestmark = pytest.mark.gui

SHAPE = (128, 128, 34)  # the CT sample's


def user_layer(viewer, kind: str, name: str, rng: np.random.Generator):
    """A user's layer of one kind, with data the dock must leave exactly as it is."""
    if kind == "labels same shape":
        return viewer.add_labels(rng.integers(0, 3, SHAPE).astype(np.uint8), name=name)
    if kind == "labels other shape":
        return viewer.add_labels(rng.integers(0, 3, (20, 30, 10)).astype(np.uint8), name=name)
    if kind == "image":
        return viewer.add_image(rng.random(SHAPE).astype(np.float32), name=name)
    return viewer.add_points(rng.uniform(0, 30, (5, 3)), name=name)


KINDS = ("labels same shape", "labels other shape", "image", "points")
NAMES = (PREDICTION, PROBABILITY, PSEUDO, UNCERTAINTY)


@pytest.mark.parametrize("shift", [0, 2], ids=lambda s: f"rotation{s}")
def test_user_layers_named_like_results_survive_train_and_predict(
    make_napari_viewer, qtbot, monkeypatch, shift
):
    """Each run holds a user layer of every kind, each under one of the result names; the two
    runs give every name two kinds (the Points layers used to vanish, a same-shape Labels
    layer called "prediction" was zeroed and overwritten)."""
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    rng = np.random.default_rng(shift)
    users = {}
    for i, name in enumerate(NAMES):
        kind = KINDS[(i + shift) % len(KINDS)]
        layer = user_layer(viewer, kind, name, rng)
        users[name] = (layer, kind, np.array(layer.data, copy=True))
    dock = SegPLDock(viewer)
    quick_params(dock.params)
    dock.params.method.value = "segpl-vi"  # so Predict makes the uncertainty layer too
    dock.params.steps.value = 2
    try:
        assert dock.state.image is viewer.layers["lungs_ct"]
        assert dock.state.labels is viewer.layers["lungs_ct labels"]
        assert dock.start_training()
        qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
        dock.results.mc_spin.setValue(2)
        assert dock.start_prediction()
        qtbot.waitUntil(lambda: not dock.state.busy, timeout=120_000)
    finally:
        dock.shutdown()
    assert not errors
    for name, (layer, kind, before) in users.items():
        assert layer in viewer.layers, f"the user's {kind} layer {name!r} was removed"
        assert layer.name == name
        np.testing.assert_array_equal(layer.data, before, err_msg=f"{name!r} ({kind}) changed")
        assert role_of(layer, dock.state.owner) is None
    for role in NAMES:
        own = dock.layers.get(role)
        assert own is not None and all(own is not u for u, _, _ in users.values())
        assert own.name != role and own.name.startswith(role)  # "prediction [1]" or the like
        assert own.data.shape == SHAPE and own.metadata["segpl_role"] == role
    assert dock.layers.get(PSEUDO).data.any()  # filled, not left empty


def test_a_second_dock_leaves_the_first_docks_layers_alone(make_napari_viewer):
    """Ownership is per dock: layers another dock made are a user's layers to this one."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    first, second = SegPLDock(viewer), SegPLDock(viewer)
    image = viewer.layers["lungs_ct"]
    mine = first.layers.ensure(PREDICTION, image)
    mine.data[0, 0, 0] = 2
    theirs = second.layers.ensure(PREDICTION, image)
    assert theirs is not mine and mine in viewer.layers and mine.data[0, 0, 0] == 2
    assert second.layers.get(PREDICTION) is theirs and first.layers.get(PREDICTION) is mine
    again = first.layers.ensure(PREDICTION, image)  # its own layer: reused and cleared
    assert again is mine and not mine.data.any()


def test_a_duplicate_of_a_result_and_a_result_trained_on_are_the_users(make_napari_viewer):
    """napari's Duplicate copies the metadata that marks a result layer; the copy is still the
    user's. And a result layer the user chose as the labels to train on (their corrections of
    the pseudo labels) is theirs from then on: the dock makes a new one."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    image = viewer.layers["lungs_ct"]
    pred = dock.layers.ensure(PREDICTION, image)
    copy = viewer.add_labels(np.full(SHAPE, 2, np.uint8), metadata=dict(pred.metadata))
    assert role_of(copy, dock.state.owner) == PREDICTION  # marked alike, as Duplicate does
    assert dock.layers.get(PREDICTION) is pred and not dock.layers.is_own(copy)
    again = dock.layers.ensure(PREDICTION, image)
    assert again is pred and (copy.data == 2).all() and copy.name != PREDICTION
    pseudo = dock.layers.ensure(PSEUDO, image)
    pseudo.data[5, 5, 5] = 1  # the user corrects it, and trains on it
    dock.state.labels = pseudo
    assert dock.layers.get(PSEUDO) is None  # a preview of a run going on must not write on it
    fresh = dock.layers.ensure(PSEUDO, image)
    assert fresh is not pseudo and pseudo in viewer.layers and pseudo.data[5, 5, 5] == 1
    assert role_of(pseudo, dock.state.owner) is None and dock.layers.get(PSEUDO) is fresh
    dock.shutdown()
