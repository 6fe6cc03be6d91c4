"""The dock fits napari's right dock area: at its minimum width (where napari's default window
leaves it) nothing is cut at the right edge and no wrapped text is cut at the bottom, with the
long texts the dock can show (an empty labels layer, the Advanced section, collapse warnings,
the progress of a long run)."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QLabel, QScrollArea
from test_dock import provoke_collapse, quick_params

from napari_segpl.engine import CollapseWarning, StepEvent
from napari_segpl.gui import SegPLDock, notify

pytestmark = pytest.mark.gui

# The two kinds of collapse warning, with wide numbers.
WARNINGS = (
    CollapseWarning(12_345, 12, "everything", 0.9999, 0.0262),
    CollapseWarning(12_345, 12, "nothing", 0.0001, 0.9999, "trained model"),
)


@pytest.fixture
def docked(make_napari_viewer, qtbot):
    """The dock in a shown viewer with the CT sample, at its minimum width."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    dock_widget = viewer.window.add_dock_widget(dock, name="SegPL")
    window = viewer.window._qt_window
    window.resize(1280, 800)
    _settle(qtbot)
    window.resizeDocks([dock_widget], [dock.minimumWidth()], Qt.Horizontal)
    _settle(qtbot)
    yield dock
    dock.shutdown()


def _settle(qtbot) -> None:
    for _ in range(5):
        QApplication.processEvents()
        qtbot.wait(20)


def _idle(dock) -> bool:
    return not dock.state.busy and dock.state.predict_queued is None


def cut_off(dock: SegPLDock) -> list[str]:
    """What the dock does not show in full: a horizontal overflow, wrapped text taller than
    its label, or a progress text wider than the bar."""
    scroll = dock.findChild(QScrollArea)
    inner, viewport = scroll.widget(), scroll.viewport()
    problems = []
    if scroll.horizontalScrollBar().maximum() > 0 or inner.width() > viewport.width():
        problems.append(
            f"content {inner.width()} px (at least {inner.minimumSizeHint().width()}) "
            f"in a {viewport.width()} px viewport: "
            f"horizontal scroll maximum {scroll.horizontalScrollBar().maximum()}"
        )
    for label in dock.findChildren(QLabel):  # the scrolling part and the training part
        if label.isVisible() and label.wordWrap() and label.text():
            needed = label.heightForWidth(label.width())
            if label.height() < needed:
                problems.append(f"{label.text()!r}: {label.height()} px of {needed}")
    bar = dock.training.progress
    text_width = bar.fontMetrics().horizontalAdvance(bar.text())
    if text_width > bar.contentsRect().width():
        problems.append(f"{bar.text()!r}: {text_width} px in {bar.contentsRect().width()}")
    return problems


def test_dock_is_at_its_minimum_width_with_a_vertical_scroll_bar(docked):
    assert docked.width() == docked.minimumWidth()
    assert docked.findChild(QScrollArea).verticalScrollBar().isVisible()  # narrowest viewport


def test_nothing_is_cut_at_the_minimum_width(docked, qtbot):
    assert cut_off(docked) == []
    docked.data.new_labels()  # an empty labels layer: the long "no labelled slice yet" hint
    docked.params.collapsible.expand(animate=False)
    _settle(qtbot)
    assert "no labelled slice yet" in docked.data.slice_summary.text()
    assert cut_off(docked) == []


def test_progress_of_a_long_run_fits(docked, qtbot):
    docked.training.progress.setRange(0, 3000)
    docked.state.step.emit(StepEvent(1200, 3000, {"sup": 0.5}, 0.003, seconds_per_step=12.52))
    _settle(qtbot)
    assert docked.training.progress.text().endswith("12.52 s/step · 6 h 15 min left")
    assert cut_off(docked) == []
    docked.training._twin_after = True  # the safeguard's twin trains after the run
    docked.state.step.emit(StepEvent(1200, 3000, {"sup": 0.5}, 0.003, seconds_per_step=12.52))
    _settle(qtbot)
    assert docked.training.progress.text().endswith("12.52 s/step · 6 h 15 min + check")
    assert cut_off(docked) == []


def test_the_safeguards_check_shows_its_own_time_left(docked, qtbot, monkeypatch):
    """The twin's rate, measured over its own steps: 10 steps in 5 s, 89 to go, 44 s."""
    from types import SimpleNamespace

    from napari_segpl.engine import SafeguardProgress
    from napari_segpl.gui import training_panel

    clock = iter([100.0, 105.0])
    monkeypatch.setattr(training_panel, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    docked.state.safeguard_step.emit(SafeguardProgress(1, 100))
    assert docked.training.progress.text() == "safeguard: supervised check, step 1/100"
    docked.state.safeguard_step.emit(SafeguardProgress(11, 100))
    _settle(qtbot)
    assert docked.training.progress.text().endswith("step 11/100 · 44 s left")
    assert cut_off(docked) == []


@pytest.mark.parametrize("warning", WARNINGS, ids=lambda w: w.source)
def test_collapse_warning_is_shown_in_full(docked, qtbot, monkeypatch, warning):
    monkeypatch.setattr(notify, "show_warning", lambda message: None)
    docked.runner._on_event(warning)  # the way the training worker delivers it
    _settle(qtbot)
    assert docked.training.warning_label.text().endswith(warning.message)
    assert docked.training.warning_label.isVisible()
    assert cut_off(docked) == []


def test_collapse_warning_of_a_real_run_is_shown_in_full(docked, qtbot, monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(notify, "show_warning", warned.append)
    quick_params(docked.params)
    provoke_collapse(docked.params)
    assert docked.start_training()
    qtbot.waitUntil(lambda: _idle(docked), timeout=120_000)
    _settle(qtbot)
    assert warned and "everything" in docked.training.warning_label.text()
    assert cut_off(docked) == []


def _wholly_visible(widget) -> bool:
    """On screen in full: shown, and no scroll area or parent clips any part of it."""
    region = widget.visibleRegion().boundingRect()
    return widget.isVisible() and region == widget.rect()


def _long_run_at_1600_by_1000(make_napari_viewer) -> SegPLDock:
    """The dock in a 1600 x 1000 window over the CT sample, set for a long SegPL-VI run."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock, name="SegPL")
    viewer.window._qt_window.resize(1600, 1000)
    quick_params(dock.params)
    dock.params.method.value = "segpl-vi"
    dock.params.steps.value = 10_000
    return dock


def test_plots_are_in_view_while_training_at_1600_by_1000(make_napari_viewer, qtbot):
    """The loss and threshold plots of a SegPL-VI run are seen in full, without scrolling,
    in a 1600 x 1000 window (they were below the fold, only their titles in view)."""
    dock = _long_run_at_1600_by_1000(make_napari_viewer)
    try:
        assert dock.start_training()
        qtbot.waitUntil(lambda: dock.training.progress.value() >= 2, timeout=60_000)
        _settle(qtbot)
        scroll = dock.findChild(QScrollArea)
        assert scroll.verticalScrollBar().value() == 0  # nothing was scrolled
        plots = (dock.plots.loss_plot, dock.plots.threshold_plot, dock.training.progress)
        # once the layout has caught up with the run's texts (on a loaded machine Qt lays out
        # a moment after the texts change): a plot still cut after 3 s is below the fold
        try:
            qtbot.waitUntil(lambda: all(_wholly_visible(p) for p in plots), timeout=3000)
        except qtbot.TimeoutError:
            cut = [(p.visibleRegion().boundingRect(), p.rect()) for p in plots]
            raise AssertionError(f"not in full view: {cut}") from None
    finally:
        dock.shutdown()


def test_the_docks_sample_counts_are_the_commands_defaults(docked):
    """The same uncertainty in the dock as from `segpl predict` and `segpl suggest` (the dock
    drew 8 thresholds, the commands 5)."""
    from napari_segpl.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("train", "predict", "suggest"):
        defaults = {a.dest: a.default for a in commands[name]._actions}
        assert defaults["mc_samples"] == docked.results.mc_spin.value() == 5, name
        assert defaults["tta_samples"] == docked.results.tta_spin.value() == 8, name


def test_the_first_preview_moves_nothing(make_napari_viewer, qtbot):
    """The preview's note ("pseudo labels of slice N at step M: T = ...") has its two lines
    from the start: when it first shows, the Stop button the user may be reaching for and the
    plots stay where they were."""
    dock = _long_run_at_1600_by_1000(make_napari_viewer)
    watched = (dock.training.stop_button, dock.plots.loss_plot, dock.plots.threshold_plot)

    def places() -> list[tuple[int, int]]:
        return [(w.mapTo(dock, w.rect().topLeft()).y(), w.height()) for w in watched]

    try:
        assert dock.start_training()
        qtbot.waitUntil(lambda: bool(dock.training.status.text()), timeout=60_000)
        _settle(qtbot)
        assert not dock.training.preview_note.text()  # no preview yet (one every 2 steps)
        before = places()
        qtbot.waitUntil(lambda: bool(dock.training.preview_note.text()), timeout=60_000)
        _settle(qtbot)
        assert places() == before
    finally:
        dock.shutdown()
