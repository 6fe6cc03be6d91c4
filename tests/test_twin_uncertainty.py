"""The TTA std pooled over a safeguarded run's two models (RESULTS.md (I2)): against torch's
std over both models' maps predicted one by one, and where the kind is offered."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_toy_volume

from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
from napari_segpl.engine.uncertainty import (
    ENTROPY,
    TTA,
    TWIN,
    TTATransform,
    kinds_in,
    layer_name,
    predict_with_twin,
    resolve_kind,
    uncertainty_maps,
)

SHAPE = (24, 20, 6)
FLIPS = [TTATransform(), TTATransform(False, True), TTATransform(True, False),
         TTATransform(True, True)]  # fmt: skip


def _model(seed: int, method: str = "segpl") -> TrainedModel:
    torch.manual_seed(seed)
    config = TrainConfig(method=method, dims=2, base_channels=4, depth=2, axis=2).validate()
    return TrainedModel.new(config, 2)


def _flipped_probs(model: TrainedModel, image: np.ndarray) -> list[np.ndarray]:
    """Each flipped volume predicted whole and flipped back."""
    out = []
    for t in FLIPS:
        axes = [ax for ax, on in ((0, t.flip_rows), (1, t.flip_cols)) if on]
        flipped = np.ascontiguousarray(np.flip(image, axes)) if axes else image
        p = predict_volume(model, flipped).probabilities
        out.append(np.flip(p, [a + 1 for a in axes]) if axes else p)
    return out


def test_the_twin_std_is_torch_std_over_both_models_maps():
    image, _ = make_toy_volume(SHAPE)
    model, twin = _model(0), _model(1, "supervised")
    seen: list[tuple[int, int]] = []
    pred = predict_with_twin(
        model, twin, image, tta=FLIPS, batch_size=4, progress=lambda d, t: seen.append((d, t))
    )
    maps = _flipped_probs(model, image) + _flipped_probs(twin, image)
    expected = torch.std(torch.from_numpy(np.stack(maps)), dim=0, unbiased=False).numpy()
    np.testing.assert_allclose(pred.tta_twin_std, expected, atol=1e-5)
    own = torch.std(torch.from_numpy(np.stack(maps[:4])), dim=0, unbiased=False).numpy()
    assert np.abs(pred.tta_twin_std - own).max() > 1e-3  # the twin counts
    plain = predict_volume(model, image)
    np.testing.assert_array_equal(pred.labels, plain.labels)  # the model's labels, unchanged
    np.testing.assert_allclose(pred.tta_std, own, atol=1e-5)
    assert pred.tta_mean is None
    totals = {t for _, t in seen}
    assert totals == {2 * SHAPE[2]} and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1][0] == 2 * SHAPE[2]
    assert kinds_in(pred) == [ENTROPY, TTA, TWIN]
    assert uncertainty_maps(pred, TWIN) is pred.tta_twin_std
    assert layer_name(TWIN) == "uncertainty: TTA std with twin"


def test_the_twin_kind_needs_a_run_with_the_safeguard():
    pred = predict_volume(_model(0), make_toy_volume(SHAPE)[0], tta_samples=2)
    assert TWIN not in kinds_in(pred)
    with pytest.raises(ValueError, match="no twin in this prediction.*safeguard"):
        uncertainty_maps(pred, TWIN)
    with pytest.raises(ValueError, match="needs the safeguard's two models"):
        resolve_kind("segpl", TWIN)
