"""The view is the user's: adding, removing or moving an unrelated layer keeps the zoom, the
pan and the slice; painting updates the slice list from the stroke's own slices, without
scanning the whole labels volume."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segpl.gui import SegPLDock
from napari_segpl.gui.slices import PaintedSlices, touched_slices

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    widget = SegPLDock(viewer)
    yield widget
    widget.shutdown()


def _view(viewer) -> tuple:
    camera = getattr(viewer, "scene", viewer).camera
    return (
        round(float(camera.zoom), 6),
        tuple(round(float(c), 6) for c in camera.center),
        tuple(round(float(p), 6) for p in viewer.dims.point),  # the slice, in world units
        tuple(viewer.dims.order),
    )


def test_unrelated_layers_keep_zoom_pan_and_slice(dock):
    viewer = dock.viewer
    camera = getattr(viewer, "scene", viewer).camera
    camera.zoom = 3.25
    camera.center = (0.0, 12.5, -30.0)
    viewer.dims.set_current_step(2, 7)
    before = _view(viewer)
    assert before[0] == 3.25 and viewer.dims.current_step[2] == 7
    image = viewer.layers["lungs_ct"]
    points = viewer.add_points(
        [[10.0, 10.0, 10.0]], scale=image.scale, translate=image.translate, name="marks"
    )
    other = viewer.add_labels(
        np.zeros(image.data.shape, np.uint8),
        scale=image.scale,
        translate=image.translate,
        name="scratch",
    )  # fmt: skip  (a Labels layer: the labels and export lists refresh too)
    viewer.layers.move(viewer.layers.index(points), 0)
    assert _view(viewer) == before
    viewer.layers.remove(points)
    viewer.layers.remove(other)
    assert _view(viewer) == before and viewer.dims.current_step[2] == 7
    assert dock.state.image is image and dock.state.labels is viewer.layers["lungs_ct labels"]


def test_choosing_another_axis_still_moves_the_view(dock):
    viewer = dock.viewer
    orientations = dock.view.orientations
    dock.data.axis_spin.setValue(0)
    assert dock.view.orientations == orientations + 1 and viewer.dims.order[0] == 0


def test_a_paint_stroke_updates_the_slice_list_without_a_full_scan(dock, qtbot):
    viewer = dock.viewer
    labels = viewer.layers["lungs_ct labels"]
    assert dock.data.labelled() == [13, 20, 26]
    scans = dock.data.painted.full_scans
    viewer.dims.set_current_step(2, 5)
    labels.brush_size = 3
    labels.paint((60, 60, 5), 1)  # a brush stroke on slice 5 (a masked history atom)
    qtbot.waitUntil(lambda: dock.data.labelled() == [5, 13, 20, 26], timeout=1000)
    assert dock.data.slice_list.count() == 4
    index = (np.array([3, 4]), np.array([3, 4]), np.array([30, 30]))
    labels.data_setitem(index, 2)  # as Accept writes (an index history atom)
    qtbot.waitUntil(lambda: dock.data.labelled() == [5, 13, 20, 26, 30], timeout=1000)
    labels.data_setitem(index, 0)  # erased again
    qtbot.waitUntil(lambda: dock.data.labelled() == [5, 13, 20, 26], timeout=1000)
    assert dock.data.painted.full_scans == scans
    labels.data = np.zeros_like(labels.data)  # replacing the data is a full rescan
    assert dock.data.painted.full_scans == scans + 1
    assert dock.data.labelled() == [13, 20, 26]  # still marked in the sample's metadata


def test_touched_slices_reads_both_kinds_of_history_atom():
    class Masked:  # napari's masked atom: a bounding box
        slice_key = (slice(0, 4), slice(2, 9), slice(6, 8))

    atoms = [Masked(), ((np.array([1, 1]), np.array([0, 3]), np.array([9, 9])), None, 1)]
    assert touched_slices(atoms, 2, 12) == {6, 7, 9}
    assert touched_slices(atoms, 0, 12) == {0, 1, 2, 3}


def test_painted_slices_checks_only_what_it_is_told():
    data = np.zeros((4, 5, 6), np.uint8)
    data[1, 2, 3] = 1
    painted = PaintedSlices()
    painted.rescan(data, 2)
    assert painted.slices == {3}
    data[0, 0, 5] = 2
    assert not painted.check(data, 2, [4])  # slice 5 was not named: not looked at
    assert painted.check(data, 2, [5]) and painted.slices == {3, 5}
    data[1, 2, 3] = 0
    assert painted.check(data, 2, [3, 99]) and painted.slices == {5}  # 99: out of range
