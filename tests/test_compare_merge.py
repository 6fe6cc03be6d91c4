"""compare_merge: several one-method compares become one table, only when they scored and
trained alike; duplicate runs that disagree are reported; each run keeps its own cost ratio."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks import compare_merge
from napari_segpl.engine.compare import CompareResult, RunResult


def _run(method: str, iou: float, ratio: float) -> RunResult:
    return RunResult(
        method=method, seed=0, iou=[iou, iou / 2], dice=[iou, iou], brier=0.01, ece=0.02,
        seconds_per_step=ratio, seconds=10.0, steps=5, params=100, ood=[iou, iou],
        adversarial=[iou, iou], calibration={"count": [1, 1], "mean_p": [0.2, 0.8],
        "freq": [0.1, 0.9]}, hd95=[1.0, 2.0], hd95_slices=[1, 1], cost_ratio=ratio,
    )  # fmt: skip


def _folder(tmp_path, name: str, runs: list[RunResult], **change) -> dict:
    result = CompareResult(
        runs, [r.method for r in runs], [0], [1, 2, 3], 2, 2, [0.0, 1.0], [0.0, 0.1],
        {"method": runs[-1].method, "steps": 5, "extra": {}, "lr": 0.01}, 1.0, False,
    )  # fmt: skip
    data = result.to_json()
    for key, value in change.items():
        if key in data:
            data[key] = value
        else:
            data["config"][key] = value
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(data), encoding="utf-8")
    return data


def test_two_folders_merge_into_one_table_with_each_runs_own_ratio(tmp_path):
    a = _folder(tmp_path, "a", [_run("supervised", 0.6, 1.0), _run("segpl", 0.9, 3.0)])
    b = _folder(tmp_path, "b", [_run("supervised", 0.6, 1.0), _run("cps", 0.8, 5.0)])
    merged, notes = compare_merge.merge([a, b])
    assert merged.methods == ["supervised", "segpl", "cps"]
    assert [r.method for r in merged.runs] == ["supervised", "segpl", "cps"]  # one supervised
    assert [r.cost_ratio for r in merged.runs] == [1.0, 3.0, 5.0]
    assert notes == []
    out = tmp_path / "out"
    assert compare_merge.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| cps |" in table and "| segpl |" in table and "own supervised run" in table
    assert (out / "ood.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in saved["runs"]] == ["supervised", "segpl", "cps"]


def test_a_duplicate_run_that_scores_differently_is_reported(tmp_path):
    a = _folder(tmp_path, "a", [_run("supervised", 0.6, 1.0), _run("segpl", 0.9, 3.0)])
    b = _folder(tmp_path, "b", [_run("supervised", 0.5, 1.0), _run("cps", 0.8, 5.0)])
    merged, notes = compare_merge.merge([a, b])
    assert merged.runs[0].iou == [0.6, 0.3]  # the first copy is kept
    assert len(notes) == 1 and "supervised seed 0 in folder 2" in notes[0]


@pytest.mark.parametrize(
    ("change", "word"), [({"holdout": [1, 2]}, "holdout"), ({"steps": 6}, "steps")]
)
def test_folders_that_scored_or_trained_otherwise_are_refused(tmp_path, change, word):
    a = _folder(tmp_path, "a", [_run("supervised", 0.6, 1.0), _run("segpl", 0.9, 3.0)])
    b = _folder(tmp_path, "b", [_run("supervised", 0.6, 1.0), _run("cps", 0.8, 5.0)], **change)
    with pytest.raises(ValueError, match=word):
        compare_merge.merge([a, b])
    out = tmp_path / "out"
    assert compare_merge.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 2
    assert not out.exists()  # nothing written


def test_a_field_one_folder_lacks_counts_as_its_default(tmp_path):
    # a folder written before a field existed merges with one that has it at its default
    a = _folder(tmp_path, "a", [_run("supervised", 0.6, 1.0), _run("segpl", 0.9, 3.0)])
    b = _folder(tmp_path, "b", [_run("cps", 0.8, 5.0)], mix=0.0)
    assert "mix" not in a["config"]
    merged, _ = compare_merge.merge([a, b])
    assert merged.methods == ["supervised", "segpl", "cps"]
    c = _folder(tmp_path, "c", [_run("cps", 0.8, 5.0)], mix=0.5)
    with pytest.raises(ValueError, match="mix"):
        compare_merge.merge([a, c])


def test_folders_of_other_seeds_merge_into_one_table_over_every_seed(tmp_path):
    a = _folder(tmp_path, "a", [_run("supervised", 0.6, 1.0), _run("segpl", 0.9, 3.0)])
    later = [dataclasses.replace(r, seed=1, iou=[0.7, 0.35]) for r in
             (_run("supervised", 0.7, 1.0), _run("segpl", 0.8, 3.0))]  # fmt: skip
    b = _folder(tmp_path, "b", later, seeds=[1])
    merged, notes = compare_merge.merge([a, b])
    assert merged.seeds == [0, 1] and notes == []
    row = next(r for r in merged.summary() if r["method"] == "segpl")
    assert row["seeds"] == [0, 1]
    assert row["iou"][0] == pytest.approx((0.9 + 0.7) / 2)  # the mean over both seeds


def test_a_prior_only_segpl_vi_reads_keeps_the_other_methods_of_that_folder(tmp_path):
    new = _folder(tmp_path, "new", [_run("supervised", 0.6, 1.0), _run("segpl-vi", 0.9, 3.0)],
                  prior_sigma=0.05)  # fmt: skip
    old = _folder(tmp_path, "old", [_run("segpl-vi", 0.4, 3.0), _run("cps", 0.8, 5.0)],
                  prior_sigma=0.1)  # fmt: skip
    merged, notes = compare_merge.merge([new, old])
    assert merged.methods == ["supervised", "segpl-vi", "cps"]
    vi = next(r for r in merged.runs if r.method == "segpl-vi")
    assert vi.iou[0] == 0.9  # the first folder's prior; the old prior's run is left out
    assert merged.config["prior_sigma"] == 0.05
    assert len(notes) == 1 and "prior_sigma 0.1 against 0.05" in notes[0]
    with pytest.raises(ValueError, match="steps"):  # any other option still refuses
        compare_merge.merge([new, _folder(tmp_path, "x", [_run("cps", 0.8, 5.0)], steps=9)])


def test_runs_scored_under_the_old_hd95_rule_are_named_in_the_merged_note(tmp_path):
    """Before 0f6b8b7 HD95 counted only slices holding the class in both: a merged table must
    not print the new rule's text over such runs without saying so."""
    new = _folder(tmp_path, "new", [_run("supervised", 0.6, 1.0), _run("segpl", 0.9, 3.0)])
    assert {r["hd95_rule"] for r in new["runs"]} == {"either"}
    assert compare_merge.merge([new])[0].hd95_note == ""
    old = _folder(tmp_path, "old", [_run("supervised", 0.6, 1.0), _run("cps", 0.8, 5.0)])
    for run in old["runs"]:
        del run["hd95_rule"]  # as the run files written before the marker
    merged, _ = compare_merge.merge([new, old])
    assert merged.hd95_note == (
        "HD95 of cps s0, supervised s0 counts only slices holding the class in both"
    )
