"""Stopping when the pseudo labels have settled: the measures against hand examples, and the
trainer ending a run as finished (not stopped) when they say so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import FinishedEvent, StepEvent, TrainConfig, Trainer, prepare_data
from napari_segpl.engine import settle as settle_module
from napari_segpl.engine.config import ConfigError
from napari_segpl.engine.settle import (
    SettleEvent,
    SettleMonitor,
    label_change,
    loss_change,
    probe_slices,
)

SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "lr": 0.01, "preview_every": 0}
LABELLED = [5, 10, 15]


def test_label_change_counts_moves_over_the_foreground_of_either_cut():
    before = np.array([0, 1, 1, 0, 0])
    after = np.array([0, 1, 2, 1, 0])
    # foreground in either: positions 1, 2, 3; changed: 2 (class 1 -> 2) and 3 (0 -> 1)
    assert label_change(before, after) == pytest.approx(2 / 3)
    assert label_change(np.zeros(4), np.zeros(4)) == 0.0
    assert label_change(np.zeros(4), np.array([0, 0, 3, 0])) == 1.0


def test_loss_change_compares_the_last_two_windows():
    assert loss_change([1.0, 1.0, 2.0, 2.0], 2) == pytest.approx(1.0)
    assert loss_change([5.0, 4.0, 4.0, 3.0, 3.0], 2) == pytest.approx(0.25)  # 3 against 4
    assert loss_change([1.0, 1.0, 1.0], 2) is None


def test_probe_slices_spread_over_the_unlabelled_ones():
    unlabelled = list(range(0, 40, 2))  # 20 slices
    probes = probe_slices(unlabelled, 8)
    assert len(probes) == 8 and probes[0] == 0 and probes[-1] == 38
    assert set(probes) <= set(unlabelled) and probes == sorted(probes)
    assert probe_slices([7, 3, 3], 8) == [3, 7]


def test_monitor_settles_after_patience_passing_checks_and_resets_on_a_move():
    monitor = SettleMonitor(threshold=0.1, every=2)
    still, moved = np.ones(10), np.zeros(10)
    losses = [1.0] * 4
    assert monitor.due(4, 4) and not monitor.due(5, 4) and not monitor.due(4, None)
    assert not monitor.due(2, 4)
    first = monitor.check(4, still, losses)
    assert first.change is None and not first.settled  # nothing to compare with yet
    assert not monitor.check(6, moved, losses).settled  # everything moved
    assert not monitor.check(8, moved, losses).settled  # one pass of PATIENCE = 2
    noisy = losses + [2.0, 2.0]  # the loss doubled between the last two windows
    assert not monitor.check(10, moved, noisy).settled
    assert not monitor.check(12, moved, losses).settled
    done = monitor.check(14, moved, losses)
    assert done.settled and monitor.settled_at == 14
    assert monitor.check(16, still, losses).settled  # stays settled


def _data(volume, **config):
    image, labels = volume
    cfg = TrainConfig(**{**SMALL, **config})
    return cfg, prepare_data(image, labels, cfg, labelled=LABELLED)


def test_settle_must_be_a_share():
    with pytest.raises(ConfigError, match="settle"):
        TrainConfig(settle=1.5).validate()


@pytest.mark.parametrize("method", ["segpl", "supervised"])
def test_a_settled_run_ends_as_finished(toy_volume, monkeypatch, method):
    monkeypatch.setattr(settle_module, "LOSS_TOLERANCE", 10.0)  # the toy's loss still falls
    cfg, data = _data(toy_volume, method=method, steps=200, burn_in=0.1, warmup=0.1, settle=0.9)
    trainer = Trainer(cfg, data)
    events = list(trainer.run())
    checks = [e for e in events if isinstance(e, SettleEvent)]
    end = events[-1]
    assert isinstance(end, FinishedEvent) and not end.stopped
    assert checks and checks[-1].settled and end.steps_done == checks[-1].step < 200
    assert all(e.step % settle_module.SETTLE_EVERY == 0 for e in checks)
    assert checks[0].step >= 40  # not before the pseudo-label loss has ramped in (20 + 20)
    assert max(e.step for e in events if isinstance(e, StepEvent)) == end.steps_done
    assert trainer.model.method.finished


def test_checks_leave_the_run_as_it_was(toy_volume):
    """With ``stop_when_settled`` off, a run with checks trains the same weights as one
    without: what the settle benchmark sees is the default run."""
    weights = []
    for settle in (0.0, 0.9):
        cfg, data = _data(toy_volume, method="segpl", steps=60, burn_in=0.2, settle=settle)
        trainer = Trainer(cfg, data)
        trainer.stop_when_settled = False
        events = list(trainer.run())
        assert any(isinstance(e, SettleEvent) for e in events) == (settle > 0)
        assert events[-1].steps_done == 60
        weights.append(trainer.model.method.model.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_a_recorded_series_replays_through_the_monitor():
    from benchmarks.settle import would_stop

    checks = [[180, None, 0.3, False], [200, 0.03, 0.01, False], [220, 0.01, 0.2, False],
              [240, 0.01, 0.01, False], [260, 0.015, 0.04, False]]  # fmt: skip
    assert would_stop(checks, 0.02, 0.05) == 260  # 240 and 260 pass
    assert would_stop(checks, 0.05, 0.25) == 220  # 200 and 220 pass
    assert would_stop(checks, 0.005, 1.0) is None
