"""benchmarks mc_brier: the (pp) table from compare results, on constructed files."""

from __future__ import annotations

import json

from benchmarks import mc_brier


def _results(path, runs):
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"runs": runs}))


def _vi(seed, iou, brier, brier_mc):
    return {"method": "segpl-vi", "seed": seed, "mean_iou": iou, "brier": brier, "ece": 0.01,
            "brier_mc": brier_mc, "ece_mc": 0.02}  # fmt: skip


def test_the_claim_and_the_reproduction_are_read_as_the_rule_says(tmp_path):
    stored, new = tmp_path / "stored", tmp_path / "new"
    _results(stored / mc_brier.STORED["lungs_ct"], [
        _vi(0, 0.9, 0.010, None), _vi(1, 0.8, 0.020, None),
        {"method": "ensemble", "seed": 0, "brier": 0.010},
        {"method": "ensemble", "seed": 1, "brier": 0.010},
    ])  # fmt: skip
    _results(stored / mc_brier.STORED["brain_tissue_mri"], [
        _vi(0, 0.9, 0.010, None), {"method": "ensemble", "seed": 0, "brier": 0.010},
    ])  # fmt: skip
    # lungs: MC Brier 0.0107 on average against 0.010: within 1.10 times; seed 1 not reproduced
    _results(new / "lungs_ct", [_vi(0, 0.9, 0.010, 0.010), _vi(1, 0.7, 0.020, 0.0114)])
    # brain: 0.012 against 0.010: beyond 1.10 times
    _results(new / "brain_tissue_mri", [_vi(0, 0.9004, 0.0102, 0.012)])
    records = mc_brier.rows([new], stored)
    assert [(r["dataset"], r["seed"]) for r in records] == [
        ("brain_tissue_mri", 0), ("lungs_ct", 0), ("lungs_ct", 1)
    ]  # fmt: skip
    text = mc_brier.table(records)
    lines = text.splitlines()
    assert lines[2].endswith("| yes |") and lines[3].endswith("| yes |")
    assert lines[4].endswith("| no |")  # IoU 0.7 against a stored 0.8
    assert "lungs_ct (2 seeds): MC Brier 0.0107" in text and "MC / ensemble 1.07" in text
    lungs = next(line for line in lines if line.startswith("- lungs_ct"))
    brain = next(line for line in lines if line.startswith("- brain_tissue_mri"))
    assert lungs.endswith("the paper's claim holds") and "+0.0000, -0.0086" in lungs
    assert brain.endswith("the paper's claim does not hold")


def test_a_volume_outside_the_stored_compares_brings_its_own_ensemble(tmp_path):
    new = tmp_path / "new"
    _results(new / "generated", [
        _vi(0, 0.3, 0.013, 0.014), {"method": "ensemble", "seed": 0, "brier": 0.0025},
    ])  # fmt: skip
    (record,) = mc_brier.rows([new], tmp_path / "stored")
    assert record["brier_ensemble"] == 0.0025 and record["iou_stored"] is None
    text = mc_brier.table([record])
    assert "MC / ensemble 5.60: the paper's claim does not hold" in text
    assert text.splitlines()[2].endswith("| 0.0025 | - |")  # nothing stored to reproduce
