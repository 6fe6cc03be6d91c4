"""The training generator: events, stopping, seeding, devices, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segpl.engine import (
    FinishedEvent,
    PreviewEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    overlap_scores,
    predict_volume,
    prepare_data,
    train,
)
from napari_segpl.engine.device import DeviceError, available_devices, resolve_device

LABELLED = [5, 10, 15]
SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "ratio": 2, "lr": 0.01}


#: The paper's recipe as the preset gives it, minus what the tests set themselves.
PAPER = {k: v for k, v in TrainConfig.from_preset("paper").to_dict().items() if k in (
    "lr", "ratio", "alpha", "warmup", "burn_in", "unsup_dice", "ema", "perturb",
    "threshold_signal", "warp", "near",
)}  # fmt: skip


def _data(volume, **config):
    image, labels = volume
    cfg = TrainConfig(**{**SMALL, **config})
    return cfg, prepare_data(image, labels, cfg, labelled=LABELLED)


@pytest.mark.parametrize("dims", [2, 3])
def test_events_in_order_with_previews(toy_volume, dims):
    cfg, data = _data(toy_volume, method="segpl-vi", dims=dims, steps=6, preview_every=3)
    trainer = Trainer(cfg, data)
    # every output of the threshold head, in order with the events
    seen: list = []
    trainer.model.method.head.register_forward_hook(
        lambda m, a, out: seen.append((a[0].shape[0], *(v.detach() for v in out)))
    )
    for event in trainer.run():
        seen.append(event)
    events = [e for e in seen if not isinstance(e, tuple)]
    steps = [e for e in events if isinstance(e, StepEvent)]
    previews = [e for e in events if isinstance(e, PreviewEvent)]
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6]
    assert all(e.total == 6 and e.seconds_per_step > 0 and e.lr == 0.01 for e in steps)
    # A step's mu and sigma are the means of the head's output on that step's 4 unlabelled
    # images (batch 2, ratio 2), not on its 2 labelled ones (the fit of T); a preview's
    # threshold is the head's mu on its one slice.
    calls: list[tuple] = []
    for item in seen:
        if isinstance(item, tuple):
            calls.append(item)
        elif isinstance(item, StepEvent):
            assert sorted(c[0] for c in calls) == [2, 4]
            _, mu, sigma = next(c for c in calls if c[0] == 4)
            assert mu.shape == sigma.shape == (4, 2)
            assert item.mu == pytest.approx(mu.mean().item(), rel=1e-6)
            assert item.sigma == pytest.approx(sigma.mean().item(), rel=1e-6)
            calls = []
        elif isinstance(item, PreviewEvent):
            assert [c[0] for c in calls] == [1]
            assert item.threshold == pytest.approx(calls[0][1][0].tolist(), rel=1e-6)
            calls = []
    assert steps[0].mu == pytest.approx(0.5)  # the head starts at mu = 0.5...
    assert steps[-1].mu != pytest.approx(0.5, abs=1e-6)  # ...and learns
    assert all(len(e.fg_fraction) == 2 for e in steps)
    assert {"loss", "sup", "unsup", "kl", "alpha"} <= set(steps[-1].losses)
    assert [e.step for e in previews] == [3, 6]
    image = toy_volume[0]
    assert previews[0].labels.shape == image.shape[:2]  # a whole slice in its own shape
    assert previews[0].probabilities.shape == (2, *image.shape[:2])
    assert previews[0].slice_index not in LABELLED
    assert isinstance(events[-1], FinishedEvent) and not events[-1].stopped
    assert len(events[-1].history) == 6


def test_stop_between_steps_keeps_the_model(toy_volume):
    cfg, data = _data(toy_volume, steps=50, preview_every=0)
    trainer = Trainer(cfg, data)
    events = []
    for event in trainer.run():
        events.append(event)
        if isinstance(event, StepEvent) and event.step == 3:
            trainer.stop()
    assert isinstance(events[-1], FinishedEvent)
    assert events[-1].stopped and events[-1].steps_done == 3
    assert trainer.model.steps_done == 3
    param = next(trainer.model.method.parameters())
    assert param.device.type == "cpu"


def test_closing_the_generator_ends_cleanly(toy_volume):
    cfg, data = _data(toy_volume, steps=50, preview_every=0)
    trainer = Trainer(cfg, data)
    run = trainer.run()
    next(run)
    next(run)
    run.close()
    assert trainer.model.steps_done == 2
    assert next(trainer.model.method.parameters()).device.type == "cpu"


def _weights(model):
    return [p.detach().clone() for p in model.method.parameters()]


def test_same_seed_same_model_on_cpu(toy_volume):
    cfg, data = _data(toy_volume, method="segpl-vi", steps=4, preview_every=2, seed=7)
    a, b = _weights(train(cfg, data)), _weights(train(cfg, data))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    cfg.seed = 8
    c = _weights(train(cfg, data))
    assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("method", ["segpl", "segpl-vi"])
def test_previews_do_not_change_the_run(toy_volume, method):
    # the dock previews every 5 steps, the CLI every 10: the same seed must train the same model
    runs = []
    for every in (0, 1, 3):
        cfg, data = _data(toy_volume, method=method, steps=4, preview_every=every, seed=5)
        runs.append(_weights(train(cfg, data)))
    for other in runs[1:]:
        assert all(torch.equal(x, y) for x, y in zip(runs[0], other, strict=True))


def test_devices():
    assert "cpu" in available_devices()
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == available_devices()[0].split(":")[0]
    with pytest.raises(DeviceError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(DeviceError):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")


def test_bad_config_is_refused(toy_volume):
    with pytest.raises(ValueError, match="threshold"):
        _data(toy_volume, threshold=1.5)[0].validate()


def _intensity_rule(image: np.ndarray) -> np.ndarray:
    """The best per-voxel guess without neighbours: the toy's classes sit 0, 1.5 and 3 noise
    sigmas above the background (``make_toy_volume``), so cut at the midpoints."""
    z = (image - 100.0) / 40.0
    return np.where(z > 2.25, 2, np.where(z > 0.75, 1, 0)).astype(np.uint8)


@pytest.mark.parametrize(("method", "dims"), [("segpl", 2), ("segpl", 3), ("supervised", 2)])
def test_training_learns_held_out_slices(toy_volume, method, dims):
    """The bar, 0.6 IoU per class on slices never labelled, is above what the per-voxel
    intensity rule scores on either class (the noise overlaps the classes' brightness), so
    passing needs what the network learnt from neighbouring voxels; untrained, the network
    scores below that rule on every class."""
    image, labels = toy_volume
    cfg, data = _data(
        toy_volume, method=method, dims=dims, steps=40, base_channels=8, depth=3, preview_every=0,
        **PAPER,  # 40 steps: the default recipe is tuned for 300 (RESULTS.md: on this volume
    )  # fmt: skip  # its 3D SegPL locks seed 0's early class mix-up in; measured, not hidden)
    held_out = [s for s in range(image.shape[2]) if s not in LABELLED]

    def iou(pred: np.ndarray) -> dict[int, float]:
        scores = overlap_scores(pred, labels, classes=[1, 2], axis=2, slices=held_out)
        return {c: s["iou"] for c, s in scores.items()}

    rule = iou(_intensity_rule(image))
    assert max(rule.values()) < 0.6, rule  # the bar cannot be met voxel by voxel
    untrained = iou(predict_volume(Trainer(cfg, data).model, image).labels)
    assert all(untrained[c] < rule[c] for c in rule), (untrained, rule)
    trained = iou(predict_volume(train(cfg, data), image).labels)
    assert min(trained.values()) > 0.6, trained
