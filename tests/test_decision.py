"""The label decision fitted to the paint (engine/decision.py): it starts as the threshold rule,
fits the painted voxels where two class channels are both on, is saved with the model, and is
what every prediction of a trained model labels with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_toy_volume

from napari_segpl.engine import TrainConfig, predict_volume, prepare_data
from napari_segpl.engine.decision import Decision, fit_decision
from napari_segpl.engine.inference import labels_from_probabilities
from napari_segpl.engine.model import CheckpointError, TrainedModel
from napari_segpl.engine.trainer import Trainer

SMALL = {"base_channels": 4, "depth": 2, "axis": 2, "patch": 32, "lr": 0.01, "preview_every": 0}
LABELLED = [5, 10, 15]


@pytest.mark.parametrize("classes", [1, 2, 4])
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_the_unfitted_decision_is_the_threshold_rule(classes, threshold):
    prob = np.random.default_rng(classes).uniform(0, 1, (classes, 40, 30)).astype(np.float32)
    rule = labels_from_probabilities(prob, threshold, nested=False)
    assert np.array_equal(Decision.identity(classes, threshold).labels(prob), rule)


def _overlap_case(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Painted voxels where class 1's channel also covers class 2 (the liver's channel over
    the spleen): p = (p1, p2) per voxel, and the painted labels."""
    rng = np.random.default_rng(0)
    kinds = [((0.02, 0.02), 0), ((0.95, 0.01), 1), ((0.95, 0.85), 2)]
    prob = np.concatenate([np.tile(p, (n, 1)) for p, _ in kinds]).T
    prob = np.clip(prob + rng.normal(0, 0.01, prob.shape), 0.001, 0.999)
    truth = np.repeat([k for _, k in kinds], n)
    return prob, truth


def _mean_cross_entropy(decision: Decision, prob: np.ndarray, truth: np.ndarray) -> float:
    """The fit's data term, computed apart from it (numpy, log-sum-exp by hand)."""
    z = np.log(prob) - np.log1p(-prob)
    s = decision.weight @ z + decision.bias[:, None]
    log_norm = s.max(0) + np.log(np.exp(s - s.max(0)).sum(0))
    return float(np.mean(log_norm - s[truth, np.arange(truth.size)]))


def test_where_two_channels_are_on_the_paint_decides():
    prob, truth = _overlap_case()
    rule = Decision.identity(2).labels(prob)
    assert (rule[truth == 2] == 1).all()  # the most probable channel takes the spleen
    fitted = fit_decision(prob, truth)
    assert np.array_equal(fitted.labels(prob), truth)
    assert _mean_cross_entropy(fitted, prob, truth) < _mean_cross_entropy(
        Decision.identity(2), prob, truth
    )


def test_the_fit_is_a_minimum_of_its_objective():
    prob, truth = _overlap_case()
    lam = 0.01
    fitted, start = fit_decision(prob, truth, lam=lam), Decision.identity(2)

    def objective(w: np.ndarray, b: np.ndarray) -> float:
        d = Decision(w, b)
        penalty = ((w - start.weight) ** 2).sum() + ((b - start.bias) ** 2).sum()
        return _mean_cross_entropy(d, prob, truth) + 0.5 * lam * penalty

    best = objective(fitted.weight, fitted.bias)
    rng = np.random.default_rng(1)
    for _ in range(20):  # no small step anywhere does better
        dw, db = rng.normal(0, 0.05, fitted.weight.shape), rng.normal(0, 0.05, fitted.bias.shape)
        assert objective(fitted.weight + dw, fitted.bias + db) >= best - 1e-7


def test_painted_labels_the_rule_already_gets_stay_as_they_are():
    prob, truth = _overlap_case()
    keep = truth != 2  # no overlap left: the rule labels every painted voxel right
    fitted = fit_decision(prob[:, keep], truth[keep])
    assert np.array_equal(fitted.labels(prob[:, keep]), truth[keep])


def test_painted_labels_out_of_range_are_refused():
    prob, truth = _overlap_case(5)
    with pytest.raises(ValueError, match="0..2"):
        fit_decision(prob, truth + 1)


def _trained(toy_volume, **overrides) -> TrainedModel:
    image, truth = toy_volume
    sparse = np.zeros_like(truth)
    sparse[..., LABELLED] = truth[..., LABELLED]
    config = TrainConfig(**{**SMALL, "method": "supervised", "steps": 6, **overrides})
    trainer = Trainer(config, prepare_data(image, sparse, config, labelled=LABELLED))
    for _ in trainer.run():
        pass
    return trainer.model


def test_a_run_ends_with_a_decision_and_predictions_label_with_it(toy_volume):
    model = _trained(toy_volume)
    assert model.decision is not None
    image = toy_volume[0]
    pred = predict_volume(model, image, keep_parts=False)
    assert np.array_equal(pred.labels, model.decision.labels(pred.probabilities))
    assert "decision fitted to the paint" in pred.threshold_note
    # a decision that labels everything class 2 is obeyed: predictions do not cut p themselves
    k = model.num_classes
    model.decision = Decision(np.zeros((k + 1, k)), np.eye(k + 1)[2])
    assert (predict_volume(model, image, keep_parts=False).labels == 2).all()


def test_nested_classes_keep_their_own_rule(toy_volume):
    assert _trained(toy_volume, nested=True, exclusive=False).decision is None


def test_the_decision_is_saved_with_the_model(toy_volume, tmp_path):
    model = _trained(toy_volume)
    path = model.save(tmp_path / "m.pt")
    loaded = TrainedModel.load(path)
    assert np.array_equal(loaded.decision.weight, model.decision.weight)
    assert np.array_equal(loaded.decision.bias, model.decision.bias)
    payload = torch.load(path, weights_only=True)
    del payload["decision"]  # a file from before the decision: labels by the threshold rule
    torch.save(payload, path)
    assert TrainedModel.load(path).decision is None
    payload["decision"] = {"weight": torch.zeros(2, 2), "bias": torch.zeros(3)}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="label decision's weight"):
        TrainedModel.load(path)
    payload["decision"] = {"weight": torch.full((3, 2), float("nan")), "bias": torch.zeros(3)}
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not finite"):
        TrainedModel.load(path)


def test_many_painted_slices_are_fitted_on_a_few(monkeypatch):
    """Not every labelled slice of a scan painted through is predicted again for the fit: 16
    evenly spaced ones are (more only where DECISION_VOXELS holds more)."""
    from napari_segpl.engine import trainer as trainer_module

    image, truth = make_toy_volume((48, 40, 40))  # 40 slices along axis 2
    config = TrainConfig(**{**SMALL, "method": "supervised", "steps": 1})
    every = list(range(truth.shape[2]))
    trainer = Trainer(config, prepare_data(image, truth, config, labelled=every))
    monkeypatch.setattr(trainer_module, "DECISION_VOXELS", 48 * 40 * 4)
    seen: list[int] = []
    real = Trainer._probabilities
    monkeypatch.setattr(
        Trainer, "_probabilities", lambda self, s, *a: seen.append(s) or real(self, s, *a)
    )
    assert trainer.fit_decision() is not None
    assert len(seen) == 14 and seen == sorted(seen) and seen[-1] - seen[0] >= 36  # every 3rd


def test_the_end_of_a_run_predicts_each_painted_slice_once(monkeypatch):
    """The fit of the decision and the collapse check read the same painted slices: the
    network sees each of them once after the last step, and the check's numbers are those of
    a fresh prediction."""
    image, truth = make_toy_volume((48, 40, 24))
    config = TrainConfig(**{**SMALL, "method": "supervised", "steps": 2})
    trainer = Trainer(config, prepare_data(image, truth, config, labelled=LABELLED))
    passes: list[list[int]] = []
    real = Trainer._slices
    monkeypatch.setattr(
        Trainer, "_slices", lambda self, slices: passes.append(list(slices)) or real(self, slices)
    )
    list(trainer.run())
    assert sorted(passes) == [[s] for s in LABELLED]  # training samples crops, not slices
    seen: dict[int, np.ndarray] = {}
    trainer.fit_decision(seen=seen)
    assert sorted(seen) == LABELLED
    fresh = {s: Trainer._probabilities(trainer, s) for s in LABELLED}
    assert all(np.array_equal(seen[s], fresh[s]) for s in LABELLED)
