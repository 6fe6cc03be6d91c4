"""The next-slice simulation (issue 25) on a tiny generated volume: one row per rule, each
rule's slice added to the painted ones, every row scored without any rule's added slice, the
uncertainty rule's slice the dock's, resumable rows and the paired table."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import make_toy_volume

from benchmarks import accuracy, suggest_sim
from napari_segpl.engine.suggest import RANDOM, RULES, UNCERTAINTY, slice_scores, suggest_next
from napari_segpl.engine.uncertainty import TTA, uncertainty_volume

AXIS = 2
ARGV = ["--datasets", "toy", "--k0", "1", "--seeds", "0", "--steps", "2", "--threads", "1"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A generated volume written as a dataset (``accuracy.DATA`` points at it), the
    predictions each training made, in order, and the rows of one run."""
    folder = tmp_path_factory.mktemp("data")
    image, truth = make_toy_volume((40, 40, 16))
    truth[..., -2:] = 0  # empty slices at one end: the exported score includes them
    nib.save(nib.Nifti1Image(image.astype(np.float32), np.eye(4)), folder / "toy_image.nii.gz")
    nib.save(nib.Nifti1Image(truth, np.eye(4)), folder / "toy_label.nii.gz")
    predictions = []
    real_predict = suggest_sim.predict_volume

    def recording(*args, **kwargs):
        predictions.append(real_predict(*args, **kwargs))
        return predictions[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accuracy, "DATA", folder)
        patch.setattr(suggest_sim, "DATASETS", {"toy": AXIS})
        patch.setattr(suggest_sim, "predict_volume", recording)
        out = folder / "rows.json"
        assert suggest_sim.main([*ARGV, "--out", str(out)]) == 0
        yield {"truth": truth, "out": out, "predictions": predictions}


def _rows(toy) -> dict[str, dict]:
    return {r["rule"]: r for r in json.loads(toy["out"].read_text())}


def test_one_row_per_rule_each_adding_an_unpainted_slice(toy):
    rows = _rows(toy)
    assert sorted(rows) == sorted([suggest_sim.BASE, *RULES])
    painted = rows[suggest_sim.BASE]["painted"]
    assert painted == accuracy.spread_slices(toy["truth"], AXIS, 1)
    for rule in RULES:
        row = rows[rule]
        assert row["added"] == rows[suggest_sim.BASE]["suggested"][rule]
        assert row["added"] not in painted
        assert row["painted"] == sorted([*painted, row["added"]])
        assert row["config"]["steps"] == 2 and row["config"]["method"] == "segpl-vi"
    random = suggest_next(toy["truth"].shape[AXIS], painted, RANDOM, seed=0).slice
    assert rows[RANDOM]["added"] == random  # seeded with the run's seed


def test_every_row_is_scored_without_any_added_slice(toy):
    rows, truth = _rows(toy), toy["truth"]
    suggested = set(rows[suggest_sim.BASE]["suggested"].values())
    excluded = sorted(set(rows[suggest_sim.BASE]["painted"]) | suggested)
    trained = [r for r in rows.values() if not r.get("same_as")]  # in training order
    assert len(toy["predictions"]) == len(trained)
    for row, pred in zip(trained, toy["predictions"], strict=True):
        assert row["excluded"] == excluded
        keep = [s for s in range(truth.shape[AXIS]) if s not in excluded]
        assert row["scored_slices"] == len(keep) < truth.shape[AXIS] - 1
        p, t = pred.labels[..., keep], truth[..., keep]
        for c in (1, 2):
            union = np.logical_or(p == c, t == c).sum()
            iou = np.logical_and(p == c, t == c).sum() / union
            assert row["iou"][str(c)] == pytest.approx(iou)
        assert row["mean_iou"] == pytest.approx(np.mean(list(row["iou"].values())))


def test_the_uncertainty_rule_picks_the_docks_slice_on_the_same_prediction(toy):
    base = _rows(toy)[suggest_sim.BASE]
    first = toy["predictions"][0]  # the K0 model's prediction
    assert base["kind"] == TTA  # the dock's default uncertainty
    assert first.tta_std is not None
    scores = slice_scores(uncertainty_volume(first, base["kind"]), first.labels, AXIS)
    n = toy["truth"].shape[AXIS]
    assert (
        base["suggested"][UNCERTAINTY]
        == suggest_next(n, base["painted"], UNCERTAINTY, scores).slice
    )
    stored = np.array([np.nan if v is None else v for v in base["slice_scores"]])
    np.testing.assert_allclose(stored, scores, atol=1e-5)


def test_a_rerun_skips_finished_rows_and_runs_only_missing_ones(toy, capsys):
    out, predictions = toy["out"], toy["predictions"]
    before = len(predictions)
    rows = json.loads(out.read_text())
    assert suggest_sim.main([*ARGV, "--out", str(out)]) == 0
    assert len(predictions) == before and json.loads(out.read_text()) == rows
    dropped = next(r for r in rows if r["rule"] == RANDOM)
    out.write_text(json.dumps([r for r in rows if r["rule"] != RANDOM]))
    capsys.readouterr()
    assert suggest_sim.main([*ARGV, "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert len(again) == len(rows) and again[-1]["rule"] == RANDOM
    assert again[-1]["added"] == dropped["added"]
    expected_runs = 0 if dropped.get("same_as") else 1  # only the missing rule trains
    assert len(predictions) == before + expected_runs
    assert "toy K0=1 seed=0 random" in capsys.readouterr().out


def test_a_rule_picking_another_rules_slice_reuses_its_training(toy, tmp_path, monkeypatch):
    real = suggest_sim.suggest_next

    def random_as_gap(n, labelled, rule, scores=None, seed=None):
        return real(n, labelled, "gap-middle" if rule == RANDOM else rule, scores, seed)

    before = len(toy["predictions"])
    monkeypatch.setattr(suggest_sim, "suggest_next", random_as_gap)
    out = tmp_path / "rows.json"
    assert suggest_sim.main([*ARGV, "--out", str(out)]) == 0
    rows = {r["rule"]: r for r in json.loads(out.read_text())}
    assert rows[RANDOM]["same_as"] == "gap-middle" and rows[RANDOM]["train_seconds"] == 0
    assert rows[RANDOM]["added"] == rows["gap-middle"]["added"]
    assert rows[RANDOM]["iou"] == rows["gap-middle"]["iou"]
    assert len(toy["predictions"]) == before + 3  # base, gap-middle, uncertainty


def test_the_table_prints_paired_differences_per_seed(tmp_path, capsys):
    rng = np.random.default_rng(3)
    rows, ious = [], {}
    for seed in (0, 1, 2):
        for rule in (suggest_sim.BASE, *RULES):
            ious[rule, seed] = float(rng.uniform(0.2, 0.8))
            rows.append({
                "dataset": "toy", "k0": 2, "seed": seed, "method": "segpl-vi", "steps": None,
                "rule": rule, "mean_iou": ious[rule, seed], "suggested": dict.fromkeys(RULES, 5),
            })  # fmt: skip
    out = tmp_path / "rows.json"
    out.write_text(json.dumps(rows))
    assert suggest_sim.main(["--table", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for other in ("gap-middle", RANDOM):
        diffs = [ious[UNCERTAINTY, s] - ious[other, s] for s in (0, 1, 2)]
        text = ", ".join(f"{d:+.3f}" for d in diffs)
        assert f"{text} (mean {np.mean(diffs):+.3f})" in printed
    unc = [ious[UNCERTAINTY, s] for s in (0, 1, 2)]
    assert f"{np.mean(unc):.3f} ± {np.std(unc, ddof=1):.3f}" in printed
    assert "| toy | 2 | segpl-vi | preset | 3 |" in printed
