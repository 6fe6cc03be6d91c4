"""``segpl suggest`` ranks slices as the dock does, and ``segpl train`` ends by printing what
SegPL-VI's threshold head learnt; both checked against computations made here another way."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_segpl.cli import main
from napari_segpl.engine import TrainedModel, painted_slices, predict_volume
from napari_segpl.engine.learnt_threshold import spread_slices
from napari_segpl.engine.uncertainty import binary_entropy

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
CT = RESOURCES / "lungs_ct_image.nii.gz"
CT_SPARSE = RESOURCES / "lungs_ct_label_sparse.nii.gz"
FAST = ["--steps", "6", "--patch", "64", "--channels", "4", "--ratio", "1", "--quiet"]
FAST += ["--no-safeguard", "--normalisation", "ct", "--ct-window", "-600", "1500"]


def _train(out: Path, method: str) -> Path:
    model = out / f"{method}.pt"
    assert main(["train", str(CT), str(CT_SPARSE), "--method", method, "--model", str(model),
                 *FAST]) == 0  # fmt: skip
    return model


@pytest.fixture(scope="module")
def segpl(tmp_path_factory) -> Path:
    """A SegPL model trained a few steps (its training output is not under test)."""
    return _train(tmp_path_factory.mktemp("suggest"), "segpl")


@pytest.fixture(scope="module")
def painted() -> list[int]:
    sparse = np.asarray(nib.load(CT_SPARSE).dataobj)
    return [s for s in range(sparse.shape[2]) if sparse[..., s].any()]


def test_train_prints_segpl_vi_threshold_per_class_and_segpl_none(tmp_path, capsys):
    model_path = _train(tmp_path, "segpl-vi")
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("learnt threshold"))
    model = TrainedModel.load(model_path)
    n = nib.load(CT).shape[model.config.axis]
    slices = spread_slices(n)
    assert f"mean over {len(slices)} slices" in line and "prior N(0.5, 0.05)" in line
    printed = [float(p.split(" sigma")[0]) for p in line.split(" mu ")[1:]]
    sigmas = [float(p.split(",")[0].split(" ")[0]) for p in line.split(" sigma ")[1:]]
    assert len(printed) == len(sigmas) == 2  # the lungs: two classes
    # the same head read through the export's path (predict_volume's cut at mu, raw image)
    image = np.asarray(nib.load(CT).dataobj, dtype=np.float32)
    pred = predict_volume(model, image, cut="mu", probabilities=False)
    np.testing.assert_allclose(printed, pred.mu[:, slices].mean(axis=1), atol=6e-4)
    assert all(0 < s < 2 for s in sigmas)
    _train(tmp_path, "segpl")
    assert "learnt threshold" not in capsys.readouterr().out  # a fixed threshold learns nothing


def _scores_by_hand(unc: np.ndarray, labels: np.ndarray, radius: int = 3) -> np.ndarray:
    """Per slice along axis 2: mean of ``unc`` over labels > 0 dilated in-plane by a square."""
    square = np.ones((2 * radius + 1, 2 * radius + 1), bool)
    scores = np.full(unc.shape[2], np.nan)
    for s in range(unc.shape[2]):
        region = ndimage.binary_dilation(labels[..., s] > 0, square)
        if region.any():
            scores[s] = unc[..., s][region].mean()
    return scores


def test_suggest_ranks_the_unlabelled_slices_by_the_docks_score(segpl, capsys, painted):
    model_path = segpl
    args = ["suggest", str(model_path), str(CT), "--labelled-slices",
            ",".join(map(str, painted)), "--uncertainty-kind", "entropy", "--rule",
            "uncertainty", "--json", "--quiet"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    model = TrainedModel.load(model_path)
    image = np.asarray(nib.load(CT).dataobj, dtype=np.float32)
    pred = predict_volume(model, image, probabilities=True)
    scores = _scores_by_hand(binary_entropy(pred.probabilities).max(axis=0), pred.labels)
    expected = sorted(
        (s for s in range(len(scores)) if s not in painted and np.isfinite(scores[s])),
        key=lambda s: (-scores[s], s),
    )
    assert expected, "the model predicts some structure"
    assert [r["slice"] for r in report["ranked"]] == expected
    np.testing.assert_allclose([r["score"] for r in report["ranked"]], scores[expected], 1e-5)
    assert report["suggested"]["slice"] == expected[0] and report["labelled"] == painted
    nearest = min(painted, key=lambda m: (abs(m - expected[0]), m))
    assert report["suggested"]["distance"] == abs(nearest - expected[0])

    # the default (the dock's TTA and gap-middle rule), as text
    assert main(["suggest", str(model_path), str(CT), "--labelled-slices", "10,20",
                 "--quiet"]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "TTA" in text and "suggested (gap-middle): slice 27" in text  # the gap 21-33
    assert "slice   10 " not in text and "slice   20 " not in text


def test_suggest_with_the_paint_scores_the_structure_the_dock_shows(segpl, capsys, painted):
    """--paint: the structure scored keeps only the parts touching the paint, as Predict with
    the dock's box on; the entropy itself is the network's."""
    args = ["suggest", str(segpl), str(CT), "--labelled-slices", ",".join(map(str, painted)),
            "--uncertainty-kind", "entropy", "--rule", "uncertainty", "--json", "--quiet",
            "--paint", str(CT_SPARSE)]  # fmt: skip
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    model = TrainedModel.load(segpl)
    image = np.asarray(nib.load(CT).dataobj, dtype=np.float32)
    sparse = np.asarray(nib.load(CT_SPARSE).dataobj)
    pred = predict_volume(model, image, paint=painted_slices(sparse, painted, 2))
    assert pred.removed is not None and any(pred.removed.values())  # parts were removed
    scores = _scores_by_hand(binary_entropy(pred.probabilities).max(axis=0), pred.labels)
    expected = sorted(
        (s for s in range(len(scores)) if s not in painted and np.isfinite(scores[s])),
        key=lambda s: (-scores[s], s),
    )
    assert [r["slice"] for r in report["ranked"]] == expected
    np.testing.assert_allclose([r["score"] for r in report["ranked"]], scores[expected], 1e-5)


def test_suggest_errors_are_one_line_and_status_2(segpl, tmp_path, capsys):
    assert main(["suggest", str(tmp_path / "none.pt"), str(CT)]) == 2
    assert "model file not found" in capsys.readouterr().err
    model_path = segpl
    assert main(["suggest", str(model_path), str(CT), "--labelled-slices", "3,99"]) == 2
    err = capsys.readouterr().err
    assert "[99]" in err and "slices 0-33" in err and "Traceback" not in err
    assert main(["suggest", str(model_path), str(CT), "--uncertainty-kind", "mc"]) == 2
    assert "needs a learnt threshold" in capsys.readouterr().err
