"""The held-out Dice curve in the dock: slices held out are scored every few steps of any run
(the safeguard off too), never trained on, and plotted; without them no curve appears."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_toy_volume
from test_dock_safeguard import _train
from test_dock_safeguard import dock as safeguard_dock  # noqa: F401 (the fixture, reused)

from napari_segpl.engine import GuardedTrainer, HeldoutEvent, TrainConfig, Trainer
from napari_segpl.gui import session

pytestmark = pytest.mark.gui

STEPS = 13


@pytest.fixture
def dock(safeguard_dock, monkeypatch):  # noqa: F811
    """The safeguard tests' tiny volume (slices 5, 10, 15 painted), 13 steps, the safeguard
    off and about 6 held-out points a run (every 2nd step and the last), shown on screen."""
    monkeypatch.setattr(session, "HELDOUT_POINTS", 5)
    safeguard_dock.params.steps.value = STEPS
    safeguard_dock.params.safeguard.value = False
    safeguard_dock.heldout = []
    safeguard_dock.state.heldout.connect(safeguard_dock.heldout.append)
    safeguard_dock.show()
    return safeguard_dock


def _hold_out(dock, s: int) -> None:
    dock.viewer.dims.set_current_step(2, s)
    dock.data.toggle_held_out()
    assert dock.data.held_out() == [s]


def test_the_curve_plots_every_held_out_score_with_the_safeguard_off(dock, qtbot):
    _hold_out(dock, 10)
    _train(dock, qtbot)
    (started,) = dock.events["started"]
    guarded = started.trainer
    assert isinstance(guarded.current, GuardedTrainer) and not guarded.active  # scored only
    assert guarded.holdout_every == STEPS // 5 == 2
    assert started.labelled == [5, 15]
    trained_on = guarded.trainer.data.labels  # the slicing axis first
    assert not trained_on[10].any() and trained_on[5].any() and trained_on[15].any()
    assert not dock.events["safeguard_step"] and not dock.events["safeguarded"]

    events = dock.heldout
    assert all(isinstance(e, HeldoutEvent) for e in events)
    assert [e.step for e in events] == [2, 4, 6, 8, 10, 12, 13]
    assert all(len(e.dice) == 2 and all(0 <= d <= 1 for d in e.dice) for e in events)
    plot = dock.plots.dice_plot
    assert plot.isVisibleTo(dock) and "slice 10" in plot.ax.get_title()
    assert plot.ax.get_xlim() == (0, STEPS)
    assert plot.steps == [e.step for e in events]
    for c, line in enumerate(plot.lines):  # what is drawn: the events' own values
        np.testing.assert_array_equal(line.get_xdata(), [e.step for e in events])
        np.testing.assert_array_equal(line.get_ydata(), [e.dice[c] for e in events])
        assert plot.key.get_texts()[c].get_text() == f"class {c + 1}  {events[-1].dice[c]:.3f}"
    assert plot.full_draws >= 1 and plot.full_draws + plot.blits >= 2
    assert len(dock.plots.loss_plot.steps) == STEPS


def test_a_supervised_run_without_held_out_slices_draws_no_curve(dock, qtbot):
    """A run with a held-out slice, then one without: the curve goes (it resets each run)."""
    dock.params.method.value = "supervised"
    dock.params.steps.value = 12
    _hold_out(dock, 10)
    _train(dock, qtbot)
    assert isinstance(dock.events["started"][-1].trainer.current, GuardedTrainer)
    assert [e.step for e in dock.heldout] == [2, 4, 6, 8, 10, 12]
    assert dock.plots.dice_plot.steps == [2, 4, 6, 8, 10, 12]
    dock.data.toggle_held_out()  # slice 10 trains again
    assert dock.data.held_out() == []
    dock.heldout.clear()
    _train(dock, qtbot)
    assert type(dock.events["started"][-1].trainer) is Trainer
    assert dock.heldout == []
    plot = dock.plots.dice_plot
    assert not plot.isVisibleTo(dock) and plot.steps == [] and plot.lines == []


def test_an_ensemble_scores_about_25_times_over_all_its_members_steps():
    """An ensemble of 2 x 50 steps runs 100: a point every 4 steps (only Started is taken)."""
    image, truth = make_toy_volume((32, 28, 20))
    labels = np.zeros_like(truth)
    labels[..., [5, 10, 15]] = truth[..., [5, 10, 15]]
    config = TrainConfig(
        method="ensemble", steps=50, patch=32, base_channels=4, device="cpu",
        extra={"members": 2},
    )  # fmt: skip
    events = session.training_events(
        image, labels, config, None, session.RunControl.new(), safeguard=True, holdout=[10]
    )
    started = next(events)
    events.close()
    assert started.trainer.total_steps == 100 and started.trainer.holdout_every == 4
    assert not started.trainer.active  # an ensemble is never checked, only scored
