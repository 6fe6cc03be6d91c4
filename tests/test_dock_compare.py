"""The dock's Compare panel: it starts only with held-out and training slices, its table shows
the numbers of the result the engine returned, each run's prediction becomes a layer (replaced
on a re-run, the user's layers untouched), its curves plot the result's numbers as each run
finishes, Stop keeps the finished runs and their files, and training and a compare never run
together."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from qtpy.QtCore import Qt
from test_dock_layout import _settle, cut_off, docked  # noqa: F401 (docked: the fixture)
from test_dock_safeguard import dock as safeguard_dock  # noqa: F401 (the fixture, reused)

from napari_segpl.engine.compare import CompareResult, RunResult
from napari_segpl.gui.compare_panel import ComparePanel
from napari_segpl.gui.compare_runner import Step

pytestmark = pytest.mark.gui

METHODS = ["supervised", "segpl"]


@pytest.fixture
def dock(safeguard_dock):  # noqa: F811
    """The safeguard tests' tiny volume (slices 5, 10, 15 painted), 4 steps, two methods,
    two points per robustness curve and no HD95."""
    safeguard_dock.params.steps.value = 4
    safeguard_dock.params.safeguard.value = False
    panel: ComparePanel = safeguard_dock.compare
    for name, box in panel.method_boxes.items():
        box.setChecked(name in METHODS)
    panel.gammas, panel.epsilons = (0.0, 1.0), (0.0, 0.05)
    panel.hd95.setChecked(False)
    panel.expand()
    yield safeguard_dock
    assert panel.shutdown(30)


def _hold_out(dock, s: int) -> None:
    dock.viewer.dims.set_current_step(2, s)
    dock.data.toggle_held_out()


def _run(dock, qtbot) -> list[CompareResult | None]:
    """Start a compare and keep what it ends with."""
    panel, returned = dock.compare, []
    assert panel.compare_button.isEnabled()
    panel.runner.ended.connect(lambda result, error: returned.append(result))
    assert panel.start()
    return returned


def _dice(pred: np.ndarray, truth: np.ndarray, c: int) -> float:
    p, t = pred == c, truth == c
    return 2 * float((p & t).sum()) / float(p.sum() + t.sum()) if p.any() or t.any() else math.nan


def _mean(values) -> float:
    return float(np.nanmean([np.nan if v is None else v for v in values]))


def _plotted(panel: ComparePanel) -> dict[str, dict[str, tuple[list, list]]]:
    """The (x, y) of every line the panel's curves show, by plot and method."""
    return {
        plot: {m: (list(line.get_xdata()), list(line.get_ydata())) for m, line in lines.items()}
        for plot, lines in panel.plots.lines.items()
    }


def _assert_plots_show(panel: ComparePanel, result: CompareResult) -> None:
    """The curves are the result's runs (one seed each: the mean over seeds is the run's own
    numbers), drawn on the panel's axes, one line per method, named in the legend."""
    plots, shown = panel.plots, _plotted(panel)
    assert plots.isVisibleTo(panel) and set(shown) == {"ood", "adversarial", "reliability"}
    for plot in shown:
        assert list(shown[plot]) == result.methods
        assert all(line in plots.axes[plot].lines for line in plots.lines[plot].values())
    for run in result.runs:
        assert shown["ood"][run.method] == (result.gammas, run.ood)
        assert shown["adversarial"][run.method] == (result.epsilons, run.adversarial)
        cal = run.calibration
        filled = [i for i, c in enumerate(cal["count"]) if c]
        x, y = shown["reliability"][run.method]
        np.testing.assert_allclose(x, [cal["mean_p"][i] for i in filled], rtol=1e-12)
        np.testing.assert_allclose(y, [cal["freq"][i] for i in filled], rtol=1e-12)
    legend = plots.axes["key"].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == result.methods


def test_compare_needs_a_held_out_and_a_training_slice(dock):
    panel = dock.compare
    assert panel.methods() == METHODS
    assert not panel.compare_button.isEnabled() and "Hold out" in panel.hint.text()
    _hold_out(dock, 10)
    assert panel.compare_button.isEnabled()
    assert panel.hint.text().startswith("2 runs") and "slice 10" in panel.hint.text()
    for s in (5, 15):
        _hold_out(dock, s)
    assert not panel.compare_button.isEnabled() and "Every labelled slice" in panel.hint.text()
    _hold_out(dock, 15)  # trains again
    for box in panel.method_boxes.values():
        box.setChecked(False)
    assert not panel.compare_button.isEnabled() and "Tick" in panel.hint.text()
    panel.method_boxes["segpl"].setChecked(True)
    assert panel.compare_button.isEnabled()
    dock.state.set_busy(training=True)  # no compare while training runs
    assert not panel.compare_button.isEnabled() and "running" in panel.hint.text()
    assert not panel.start()
    dock.state.set_busy(training=False)
    assert panel.compare_button.isEnabled()


def test_train_and_compare_refuse_labels_on_another_grid_with_the_same_words(dock, monkeypatch):
    """One preflight (gui/preflight.py) for both: labels of another shape start nothing and
    both buttons say the same thing, the labels' and the image's shapes included."""
    from napari_segpl.gui import notify

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    image = dock.state.image
    wrong = dock.viewer.add_labels(np.zeros(image.data.shape[:2] + (7,), np.uint8))
    wrong.data[:, :, [3, 5]] = 1
    dock.state.labels = wrong
    _hold_out(dock, 5)
    assert dock.compare.why_not() == ""  # the panel's own checks pass: the preflight refuses
    assert not dock.runner.start_training([3])
    assert not dock.compare.start()
    assert not dock.state.busy and not dock.state.comparing
    assert len(errors) == 2
    train, compare = (e.split(": ", 1) for e in errors)
    assert (train[0], compare[0]) == ("SegPL", "Compare") and train[1] == compare[1]
    assert str(wrong.data.shape) in train[1] and str(image.data.shape) in train[1]
    assert wrong.data.sum() == 2 * wrong.data[:, :, 3].size  # untouched


def test_a_compare_fills_a_row_per_method_with_the_engine_numbers(dock, qtbot, tmp_path):
    panel, viewer = dock.compare, dock.viewer
    user = viewer.add_labels(np.full((32, 28, 20), 3, np.uint8), name="compare: segpl s0")
    _hold_out(dock, 10)
    painted = viewer.layers["toy labels"].data.copy()
    assert not panel.plots.isVisibleTo(dock) and panel.plots.lines == {}
    after_run: list[dict] = []  # what the curves show after each run (the panel's slot is first)
    panel.runner.scored.connect(lambda _done: after_run.append(_plotted(panel)))
    returned = _run(dock, qtbot)
    assert dock.state.comparing and dock.state.busy
    assert not dock.training.train_button.isEnabled() and not dock.start_training()
    assert panel.stop_button.isEnabled() and not panel.compare_button.isEnabled()
    qtbot.waitUntil(lambda: not dock.state.comparing, timeout=60_000)
    assert not dock.seen["error"], dock.seen["error"]
    (result,) = returned
    assert result is panel.result and result.methods == METHODS and result.holdout == [10]
    assert [(r.method, r.seed, r.steps) for r in result.runs] == [
        ("supervised", 0, 4), ("segpl", 0, 4),
    ]  # fmt: skip
    assert result.gammas == [0.0, 1.0] and result.epsilons == [0.0, 0.05]
    assert all(r.hd95 is None and len(r.ood) == 2 for r in result.runs)
    sup = result.runs[0].seconds_per_step
    table = panel.table
    assert table.rowCount() == 2 and table.isVisibleTo(dock) and table.isColumnHidden(2)
    # the toy layer has napari's scale 1 and no mm units: distances are voxels, said so
    assert result.hd95_unit == "voxels" and table.horizontalHeaderItem(2).text() == "HD95\nvoxels"
    for i, run in enumerate(result.runs):
        cells = [table.item(i, c).text() for c in range(table.columnCount())]
        assert cells[0] == run.method
        assert cells[1] == f"{_mean(run.dice):.3f}"
        assert cells[3] == f"{run.ece:.3f}"
        assert cells[4] == f"{run.seconds_per_step / sup:.2f}" and run.cost_ratio is not None
    _assert_plots_show(panel, result)
    assert [list(shown["ood"]) for shown in after_run] == [["supervised"], METHODS]
    assert after_run[-1] == _plotted(panel)
    lines = panel.progress.text().splitlines()
    assert lines[0].startswith("supervised seed 0: 4 steps, Dice ")
    assert lines[-1].startswith("done: 2 runs finished")
    assert dock.training.train_button.isEnabled() and panel.compare_button.isEnabled()
    # one engine call, as the CLI makes it, trains and scores the same
    from napari_segpl.engine.compare import compare

    labels = dock.viewer.layers["toy labels"].data
    image = dock.viewer.layers["toy"].data
    config = dock.params.config(2, image)
    cli = compare(image, labels, config, METHODS, [10], labelled=[5, 10, 15],
                  gammas=(0.0, 1.0), epsilons=(0.0, 0.05), surface=False)  # fmt: skip
    for ours, theirs in zip(result.runs, cli.runs, strict=True):
        assert (ours.dice, ours.ece, ours.ood) == (theirs.dice, theirs.ece, theirs.ood)
    # the CLI's files, from its own writers
    written = panel.save(tmp_path / "out")
    assert {"table.md", "table.csv", "results.json", "ood.png"} <= set(written)
    data = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in data["summary"]] == METHODS
    assert math.isclose(data["runs"][1]["ece"], result.runs[1].ece)
    assert "| segpl |" in (tmp_path / "out" / "table.md").read_text(encoding="utf-8")
    assert "HD95 1 (voxels)" in (tmp_path / "out" / "table.csv").read_text(encoding="utf-8")
    # each run's prediction is a layer: the one it was scored on (its held-out Dice), on the
    # image's grid; the user's layer of the same name and the painted labels are untouched
    ours = {run.method: viewer.layers[f"compare: {run.method} s0" + (" [1]" if run.method ==
            "segpl" else "")] for run in result.runs}  # fmt: skip
    for run in result.runs:
        layer = ours[run.method]
        assert layer.data.shape == image.shape and layer.scale.tolist() == [1.0, 1.0, 1.0]
        got = [_dice(layer.data[..., 10], dock.truth[..., 10], c) for c in (1, 2)]
        np.testing.assert_allclose(got, run.dice)
    assert ours["segpl"].visible and not ours["supervised"].visible  # the latest shown
    assert (user.data == 3).all() and user.name == "compare: segpl s0"
    assert np.array_equal(viewer.layers["toy labels"].data, painted)
    assert viewer.layers.selection.active is not ours["segpl"]
    # a re-run replaces the layers' data instead of adding layers
    count, first = len(viewer.layers), ours["segpl"].data.copy()
    for layer in ours.values():
        layer.data = np.zeros_like(layer.data)
    returned = _run(dock, qtbot)
    qtbot.waitUntil(lambda: not dock.state.comparing, timeout=60_000)
    assert returned[0] is not None and len(viewer.layers) == count
    assert all(layer in viewer.layers for layer in ours.values())
    assert np.array_equal(ours["segpl"].data, first)  # the same seed, the same prediction
    assert ours["supervised"].data.any() and (user.data == 3).all()


def test_stop_keeps_the_finished_runs_and_the_dock_usable(dock, qtbot, tmp_path):
    panel = dock.compare
    dock.params.steps.value = 80  # segpl is stopped at its first step, supervised is not
    _hold_out(dock, 10)

    def stop_at_segpl(event: Step) -> None:
        assert event.runs == 2 and event.run == (1 if event.method == "supervised" else 2)
        if event.method == "segpl":
            panel.stop()

    panel.runner.stepped.connect(stop_at_segpl)
    returned = _run(dock, qtbot)
    qtbot.waitUntil(lambda: not dock.state.comparing, timeout=30_000)
    (result,) = returned
    assert [r.method for r in result.runs] == ["supervised"] and result.methods == ["supervised"]
    assert result.stopped and result.runs[0].steps == 80
    assert panel.table.rowCount() == 1 and panel.table.item(0, 0).text() == "supervised"
    _assert_plots_show(panel, result)
    assert panel.progress.text().splitlines()[-1].startswith("stopped: 1 run finished")
    assert panel.compare_button.isEnabled() and not panel.stop_button.isEnabled()
    assert panel.save_button.isEnabled()
    names = [layer.name for layer in dock.viewer.layers]
    assert "compare: supervised s0" in names and "compare: segpl s0" not in names
    # the files of the finished run, whole: nothing of segpl, no temporary file left
    written = panel.save(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(written)
    data = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert data["stopped"] is True and data["methods"] == ["supervised"]
    assert [r["method"] for r in data["runs"]] == ["supervised"]
    table = (tmp_path / "out" / "table.md").read_text(encoding="utf-8")
    assert "| supervised |" in table and "segpl |" not in table and "Stopped" in table
    assert (tmp_path / "out" / "table.csv").read_text(encoding="utf-8").count("\n") == 2
    for png in ("ood.png", "adversarial.png", "reliability.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dock.params.steps.value = 2  # training starts (and ends) as usual afterwards
    assert dock.start_training()
    assert not panel.compare_button.isEnabled()
    qtbot.waitUntil(lambda: not dock.state.busy, timeout=60_000)
    assert not dock.seen["error"], dock.seen["error"]
    assert dock.model is not None and dock.model.steps_done == 2


def test_shutting_the_dock_down_stops_a_compare(dock, qtbot):
    panel = dock.compare
    dock.params.steps.value = 400  # far longer than the wait below
    _hold_out(dock, 10)
    _run(dock, qtbot)
    # in the compare's own thread, at each step: was the stop asked by then?
    steps: list[bool] = []
    stepped = panel.runner.stepped
    stepped.connect(lambda step: steps.append(panel.runner.stopping), Qt.DirectConnection)
    qtbot.waitUntil(lambda: bool(steps), timeout=10_000)  # training has begun
    assert True not in steps
    assert dock.shutdown(timeout=30)
    assert panel.runner.stopping
    # the run under way ended after its step under way: not the 400 steps
    assert steps.count(True) <= 1 and len(steps) < 400
    ended = len(steps)
    qtbot.wait(50)
    assert len(steps) == ended  # and no step ran after shutdown returned


def _made_up(methods: list[str]) -> CompareResult:
    """A result with one run per method and numbers no run would give (no training)."""
    mean_p = np.linspace(0.05, 0.95, 15)
    runs = [
        RunResult(m, 0, [0.8, 0.7], [0.9, 0.8], 0.02, 0.03, 0.1 * (i + 1), 10.0, 100, 1000,
                  [0.9 - 0.1 * i, 0.5, 0.2], [0.9, 0.6 - 0.1 * i],
                  {"count": [0, *[100] * 14], "mean_p": mean_p.tolist(),
                   "freq": (mean_p ** (1 + i)).tolist()}, [5.0, 6.0])
        for i, m in enumerate(methods)
    ]  # fmt: skip
    return CompareResult(runs, methods, [0], [13], 2, 2, [0.0, 0.5, 1.0], [0.0, 0.1], {}, 0.1,
                         False)  # fmt: skip


def test_curves_of_every_method_fit_the_dock_at_its_minimum_width(docked, qtbot):  # noqa: F811
    """The table and the curves of all nine methods, shown in the dock at its narrowest: nothing
    cut at the right edge, every method in the legend."""
    from napari_segpl.engine import METHODS as ALL

    panel = docked.compare
    panel.expand()
    result = _made_up(list(ALL))
    panel._show_table(result)  # as each finished run does
    _settle(qtbot)
    docked.scroll_area.ensureWidgetVisible(panel.plots)
    _settle(qtbot)
    assert cut_off(docked) == []
    assert panel.plots.isVisible() and panel.plots.width() <= docked.scroll_area.viewport().width()
    _assert_plots_show(panel, result)
    panel._show_table(None)  # a new compare starts: no curves until its first run
    assert not panel.plots.isVisible() and panel.plots.lines == {}


@pytest.mark.parametrize("on", [True, False])
def test_compare_scores_the_masks_the_box_says(dock, monkeypatch, on):
    """The Compare panel scores the export's masks: parts touching the paint with the box on,
    every part with it off (the engine's ``parts``)."""
    started: list[dict] = []
    monkeypatch.setattr(dock.compare.runner, "start", lambda *a, **k: started.append(k))
    _hold_out(dock, 10)
    dock.state.painted_parts = on
    assert dock.compare.start()
    assert started and started[0]["parts"] is on
