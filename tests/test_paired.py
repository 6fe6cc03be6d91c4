"""benchmarks/paired.py: a lever paired with the recorded default by cell and seed, and the
counts a decision rule reads, on hand-made rows."""

from __future__ import annotations

import json

import pytest

from benchmarks import paired


def row(dataset: str, k: int, seed: int, method: str, recipe: str, ious: list[float]) -> dict:
    return {
        "dataset": dataset,
        "k": k,
        "seed": seed,
        "method": method,
        "recipe": recipe,
        "whole_iou": {str(i + 1): v for i, v in enumerate(ious)},
        "volume_ratio": {str(i + 1): 1.0 for i in range(len(ious))},
    }


ROWS = [
    row("lungs_ct", 1, 1, "supervised", "default", [0.6, 0.7]),  # mean 0.65
    row("lungs_ct", 1, 1, "segpl-vi", "default", [0.5, 0.5]),  # 15 below supervised
    row("lungs_ct", 1, 1, "segpl-vi", "lever", [0.7, 0.7]),
    row("lungs_ct", 1, 1, "segpl-vi", "lever", [0.1, 0.1]),  # a repeat: the first counts
    row("abdomen_vessels_ct", 3, 0, "segpl-vi", "default", [0.3, 0.3]),  # no supervised run
    row("abdomen_vessels_ct", 3, 0, "segpl-vi", "lever", [0.2, 0.2]),
    row("abdomen_organs_ct", 3, 2, "supervised", "default", [0.4]),
    row("abdomen_organs_ct", 3, 2, "segpl-vi", "default", [0.41]),
    row("abdomen_organs_ct", 3, 2, "segpl-vi", "lever", [0.37]),  # 3 below supervised
    row("abdomen_organs_mri", 1, 0, "segpl", "lever", [0.9]),  # another method: ignored
]


def test_cells_pair_by_dataset_k_and_seed() -> None:
    cells = paired.paired_rows(ROWS, "segpl-vi", "lever", "default")
    got = {(c["dataset"], c["k"], c["seed"]): c for c in cells}
    assert set(got) == {
        ("lungs_ct", 1, 1),
        ("abdomen_vessels_ct", 3, 0),
        ("abdomen_organs_ct", 3, 2),
    }
    lungs = got[("lungs_ct", 1, 1)]
    assert lungs["new"] == pytest.approx(0.7)
    assert lungs["base"] == pytest.approx(0.5)
    assert lungs["supervised"] == pytest.approx(0.65)
    assert got[("abdomen_vessels_ct", 3, 0)]["supervised"] is None


def test_summary_counts_losses_per_set() -> None:
    lines = paired.summary(paired.paired_rows(ROWS, "segpl-vi", "lever", "default"))
    tuning, validation = lines
    # tuning: +20 (lungs) and -10 (vessels) points, mean +5; only the lungs have a supervised
    # run, where the base lost 15 points and the lever did not
    assert tuning.startswith("- tuning: 2 paired runs, new - base +5.0")
    assert "worst -10.0" in tuning
    assert "new 0, base 1 (of 1 with a supervised run)" in tuning
    # validation: the lever 3 points below supervised, the base 1 above
    assert "new - base -4.0" in validation
    assert "new 1, base 0 (of 1" in validation


def test_main_prints_the_table(tmp_path, capsys) -> None:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    assert paired.main([str(path), "--recipe", "lever"]) == 0
    out = capsys.readouterr().out
    assert "| lungs_ct | 1 | 1 | 0.650 | 0.500 | 0.700 | +20.0 | +5.0 | 1.0, 1.0 |" in out
    assert paired.main([str(path), "--recipe", "nothing"]) == 1


def test_safeguard_keeps_the_twin_where_a_class_is_lost() -> None:
    """Hand example of the loss-only rule: outside the painted slice 1, class 1 has 10 voxels
    against the twin's 40 (with a painted area of 2: 12 / 42 < 1/2), so the twin is kept;
    class 2 grown fourfold is no reason."""
    semi = row("lungs_ct", 1, 0, "segpl", "default", [0.2, 0.9])
    twin = row("lungs_ct", 1, 0, "supervised", "default", [0.5, 0.5])
    semi["labelled"] = twin["labelled"] = [1]
    semi["slice_voxels"] = [[10, 40], [999, 999], [0, 0]]
    twin["slice_voxels"] = [[20, 10], [999, 999], [20, 0]]
    assert paired.kept_iou(semi, twin, [2.0, 2.0]) == (pytest.approx(0.5), "supervised")
    semi["slice_voxels"] = [[25, 40], [0, 0], [0, 0]]  # 27 / 42: kept
    assert paired.kept_iou(semi, twin, [2.0, 2.0]) == (pytest.approx(0.55), "segpl")
