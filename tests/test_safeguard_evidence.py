"""The safeguard reads the image: a mask grown onto tissue unlike the painted class loses."""

from __future__ import annotations

import numpy as np
import torch

from napari_segpl.engine import FinishedEvent, TrainConfig, prepare_data
from napari_segpl.engine import safeguard as safeguard_module
from napari_segpl.engine.label_evidence import MARGIN, LabelEvidence
from napari_segpl.engine.safeguard import GuardedTrainer, SafeguardEvent, decide

SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "ratio": 2, "lr": 0.01, "preview_every": 0}
PAINTED = [3, 8, 13]


def test_decide_reads_the_evidence_only_when_the_volumes_pass_and_nothing_is_held_out():
    against, weak = LabelEvidence(MARGIN - 0.5, 900), LabelEvidence(MARGIN + 0.5, 900)
    kept, reason = decide("segpl", [1.2, 0.9], evidence=against)
    assert kept == "supervised" and "900 voxels" in reason and f"{MARGIN - 0.5:+.2f}" in reason
    kept, reason = decide("segpl", [1.2, 0.9], evidence=weak)
    assert kept == "segpl" and f"{MARGIN + 0.5:+.2f} nats" in reason and "none below" in reason
    assert decide("segpl", [1.2, 0.9], evidence=LabelEvidence(0.0, 0)) == decide(
        "segpl", [1.2, 0.9]
    )  # no voxel differs: nothing to say
    lost, _ = decide("segpl", [0.2, 0.9], evidence=LabelEvidence(3.0, 900))
    assert lost == "supervised"  # a lost class is lost whatever the intensities
    heldout = {"segpl": [0.9, 0.9], "supervised": [0.9, 0.9]}
    assert decide("segpl", [1.0, 1.0], heldout=heldout, evidence=against)[0] == "segpl"


def _disc_volume() -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (5 noise sigmas above the background) whose radius varies along axis 2."""
    rng = np.random.default_rng(0)
    shape = (40, 40, 16)
    image = rng.normal(0.0, 1.0, shape)
    x, y, z = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    labels = ((x - 20) ** 2 + (y - 18) ** 2 < (6 + 4 * np.sin(z / 5.0)) ** 2).astype(np.uint8)
    image[labels == 1] += 5.0
    return (image * 40.0 + 100.0).astype(np.float32), labels


def _guarded_with_growth(bias: float) -> tuple[list, GuardedTrainer]:
    image, labels = _disc_volume()
    cfg = TrainConfig(**{**SMALL, "method": "segpl", "dims": 2, "steps": 30})
    guarded = GuardedTrainer(cfg, prepare_data(image, labels, cfg, labelled=PAINTED), image)
    inner = guarded.trainer.run

    def run_then_grow():  # after training the disc's channel is pushed up: it grows outwards
        for event in inner():
            if isinstance(event, FinishedEvent):
                with torch.no_grad():
                    guarded.trainer.model.method.model.head.bias[0] += bias
            yield event

    guarded.trainer.run = run_then_grow
    return list(guarded.run()), guarded


def test_growth_onto_background_intensities_keeps_the_twin():
    events, guarded = _guarded_with_growth(8.0)
    verdict = next(e for e in events if isinstance(e, SafeguardEvent))
    assert verdict.ratios[0] > 2  # grown, not lost: the volumes alone would keep SegPL
    assert decide("segpl", verdict.ratios)[0] == "segpl"
    assert verdict.kept == "supervised" and "nats a voxel" in verdict.reason
    assert guarded.model is guarded.twin.model


def test_a_run_the_image_supports_is_kept(monkeypatch):
    seen = []

    def evidence(*args):
        seen.append(args)
        return LabelEvidence(0.4, 120)

    monkeypatch.setattr(safeguard_module, "label_evidence", evidence)
    events, guarded = _guarded_with_growth(0.0)
    verdict = next(e for e in events if isinstance(e, SafeguardEvent))
    assert verdict.kept == "segpl" and "+0.40 nats" in verdict.reason
    assert guarded.model is guarded.trainer.model
    image, semi, sup, painted, slices, axis = seen[0]  # the training volume, slices first
    assert image.shape == semi.shape == sup.shape == painted.shape == (16, 40, 40)
    assert list(slices) == PAINTED and axis == 0
