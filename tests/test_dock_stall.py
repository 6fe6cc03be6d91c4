"""What the dock does on the GUI thread when the user slices or works the slice list (the
stalls of benchmarks/dock_stall.py): Mark / Unmark / Hold out redraw only the slice-score
curve's labelled ticks over its saved figure, never the whole figure and never a scan of the
labels; stepping through the slices draws and scans nothing. Mechanics only, no timing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import add_toy_layers

from napari_segpl.gui import SegPLDock

pytestmark = pytest.mark.gui

PAINTED = [3, 10]


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    add_toy_layers(viewer, (48, 40, 20), PAINTED)
    widget = SegPLDock(viewer)
    widget.show()
    widget.suggest.scores = np.linspace(0.1, 1.0, 20).astype(np.float32)  # as a prediction
    widget.suggest.redraw()
    plot = widget.suggest.plot
    qtbot.waitUntil(lambda: plot.full_draws >= 1 and plot._background is not None)
    yield widget
    widget.shutdown()


def _pixels(plot) -> np.ndarray:
    return np.asarray(plot.buffer_rgba()).copy()


def _draws(plot) -> tuple[int, int]:
    return plot.full_draws, plot.mark_draws


def test_the_slice_list_redraws_only_the_ticks(dock, qtbot):
    data, plot = dock.data, dock.suggest.plot
    assert plot.labelled == PAINTED
    before, whole = _pixels(plot), plot.full_draws
    scans, checks = data.painted.full_scans, []
    data.painted.check = lambda *a: checks.append(a)  # any re-check of the labels is seen

    dock.viewer.dims.set_current_step(2, 15)
    data.mark_button.click()
    assert plot.labelled == [3, 10, 15] and plot.mark_draws > 0
    np.testing.assert_array_equal(plot.ticks.get_xdata(), [3, 10, 15])
    marked = _pixels(plot)
    changed = np.argwhere((marked != before).any(axis=2))
    assert len(changed), "the new tick was not drawn"
    x15 = plot.ax.transData.transform((15, 0))[0]  # Agg's pixels
    assert abs(np.median(changed[:, 1]) - x15) < 6  # drawn where slice 15 is

    data.hold_button.click()  # held out: still a labelled slice for the curve
    assert data.held_out() == [15] and plot.labelled == [3, 10, 15]
    data.hold_button.click()
    data.unmark_button.click()
    assert plot.labelled == PAINTED
    np.testing.assert_array_equal(_pixels(plot), before)  # the ticks' own pixels went again
    assert plot.full_draws == whole  # never the whole figure
    assert data.painted.full_scans == scans and not checks

    data.mark_button.click()
    blitted = _pixels(plot)
    plot.draw()  # a whole draw of the same state gives the same picture
    assert plot.full_draws == whole + 1
    np.testing.assert_array_equal(_pixels(plot), blitted)


def test_slicing_draws_and_scans_nothing(dock, qtbot):
    data, plot = dock.data, dock.suggest.plot
    draws, scans = _draws(plot), data.painted.full_scans
    for s in [*range(20), 7, 0, 19]:
        dock.viewer.dims.set_current_step(2, s)
        qtbot.wait(1)
    assert _draws(plot) == draws and data.painted.full_scans == scans
    assert data.hold_button.text() == "Hold out"
    dock.viewer.dims.set_current_step(2, 10)
    data.hold_button.click()
    dock.viewer.dims.set_current_step(2, 11)
    assert data.hold_button.text() == "Hold out"  # the button follows the slice
    dock.viewer.dims.set_current_step(2, 10)
    assert data.hold_button.text() == "Train on it"


def test_a_resized_curve_is_drawn_whole_before_ticks_go_on_it(dock, qtbot):
    plot = dock.suggest.plot
    whole = plot.full_draws
    plot.resize(plot.width() + 40, plot.height())
    dock.viewer.dims.set_current_step(2, 5)
    dock.data.mark_button.click()  # the saved figure has the old size: a whole draw instead
    qtbot.waitUntil(lambda: plot.full_draws > whole)
    assert plot.labelled == [3, 5, 10]
    np.testing.assert_array_equal(plot.ticks.get_xdata(), [3, 5, 10])


def test_an_undo_off_screen_updates_the_slice_list(dock, qtbot):
    """Undo and redo send no paint event: the slices they change come from napari's history,
    wherever the view is, and a plain slice change checks none of them."""
    viewer, data = dock.viewer, dock.data
    labels = viewer.layers["toy labels"]
    viewer.dims.set_current_step(2, 5)
    labels.brush_size = 3
    labels.paint((20, 20, 5), 1)
    qtbot.waitUntil(lambda: data.labelled() == [3, 5, 10], timeout=1000)
    viewer.dims.set_current_step(2, 15)  # away from slice 5
    qtbot.wait(300)  # the pause's re-check of slice 15 (empty) changes nothing
    checked: list[set[int]] = []
    check = data.painted.check
    data.painted.check = lambda d, a, s: checked.append(set(s)) or check(d, a, s)
    labels.undo()
    qtbot.waitUntil(lambda: data.labelled() == PAINTED, timeout=1000)
    assert {5} in checked
    labels.redo()
    qtbot.waitUntil(lambda: data.labelled() == [3, 5, 10], timeout=1000)
    checked.clear()
    for s in (16, 17, 18):
        viewer.dims.set_current_step(2, s)
    qtbot.wait(400)
    assert checked == [{18}]  # only the slice on screen, once, after the pause
