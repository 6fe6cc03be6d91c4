"""segpl compare keeps each finished run in OUT/runs/ and goes on with --resume."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import make_toy_volume

from napari_segpl import compare_cli
from napari_segpl.engine import compare as compare_module
from napari_segpl.engine.compare_store import run_from_json, run_to_json

PAINTED = [1, 3, 5, 8, 10]
#: the numbers that are step times, or made from them: they differ from one run to the next
TIMING = {"seconds_per_step", "seconds", "cost_ratio", "supervised_seconds_per_step"}


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    image, labels = make_toy_volume((32, 28, 12))
    sparse = np.zeros_like(labels)
    sparse[..., PAINTED] = labels[..., PAINTED]
    folder = tmp_path_factory.mktemp("volumes")
    paths = []
    for name, array in (("img", image.astype(np.float32)), ("lab", sparse)):
        path = folder / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(array, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))
        paths.append(str(path))
    return paths


def _args(volumes, out, methods="supervised,segpl", steps="2"):
    return [*volumes, "--methods", methods, "--holdout-slices", "3,8", "--steps", steps,
            "--channels", "4", "--depth", "2", "--dims", "2", "--device", "cpu", "--preset",
            "ct", "--set", "normalisation=zscore", "--gammas", "0,1", "--epsilons", "0,0.05",
            "--quiet", "--out", str(out)]  # fmt: skip


@pytest.fixture
def trained(monkeypatch):
    """The methods trained, in order, counted at the engine's one training loop."""
    calls: list[str] = []
    real = compare_module._train

    def counting(trainer, *args):
        calls.append(trainer.config.method)
        return real(trainer, *args)

    monkeypatch.setattr(compare_module, "_train", counting)
    return calls


def _timeless(value):
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k.removesuffix("_sd") not in TIMING}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _table(path):
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    keep = [i for i, name in enumerate(rows[0]) if name not in ("s/step", "x supervised")]
    return [[row[i] for i in keep] for row in rows]


def test_a_stopped_compare_keeps_its_runs_and_resume_trains_only_the_rest(
    volumes, tmp_path, monkeypatch, trained, capsys
):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert compare_cli.run(_args(volumes, whole)) == 0
    assert trained == ["supervised", "segpl"]
    assert sorted(p.name for p in (whole / "runs").iterdir()) == [
        "segpl-s0.json",
        "supervised-s0.json",
    ]
    capsys.readouterr()

    real = _interrupt_at_segpl(monkeypatch)
    trained.clear()
    assert compare_cli.run(_args(volumes, parts)) == 130
    err = capsys.readouterr().err
    assert "interrupted; 1 finished run(s) kept" in err and "--resume" in err
    assert "Traceback" not in err
    assert [p.name for p in parts.iterdir()] == ["runs"]  # no table of a part
    assert [p.name for p in (parts / "runs").iterdir()] == ["supervised-s0.json"]
    saved = (parts / "runs" / "supervised-s0.json").read_bytes()
    monkeypatch.setattr(compare_module, "_train", real)

    # without --resume the kept run is neither trained over nor overwritten
    trained.clear()
    assert compare_cli.run(_args(volumes, parts)) == 2
    assert "pass --resume" in capsys.readouterr().err and trained == []
    assert (parts / "runs" / "supervised-s0.json").read_bytes() == saved

    # another request is refused, naming what differs
    assert compare_cli.run([*_args(volumes, parts, steps="3"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "steps (saved 2, now 3)" in err and trained == []
    # ... and so are runs scored on the export's masks, for a request to score every part
    assert compare_cli.run([*_args(volumes, parts), "--resume", "--no-painted-parts"]) == 2
    err = capsys.readouterr().err
    assert "painted_parts (saved True, now False)" in err and trained == []

    assert compare_cli.run([*_args(volumes, parts), "--resume"]) == 0
    assert trained == ["segpl"]
    err = capsys.readouterr().err
    assert f"method supervised seed 0: loaded from {parts / 'runs' / 'supervised-s0.json'}" in err
    assert (parts / "runs" / "supervised-s0.json").read_bytes() == saved
    a = json.loads((whole / "results.json").read_text(encoding="utf-8"))
    b = json.loads((parts / "results.json").read_text(encoding="utf-8"))
    assert _timeless(a) == _timeless(b) and a["summary"][1]["iou"] == b["summary"][1]["iou"]
    supervised = json.loads(saved)["run"]["seconds_per_step"]  # timed by the stopped process
    assert b["supervised_seconds_per_step"] == supervised
    assert b["runs"][1]["cost_ratio"] == pytest.approx(
        b["runs"][1]["seconds_per_step"] / supervised
    )
    assert _table(whole / "table.csv") == _table(parts / "table.csv")
    for png in ("ood.png", "adversarial.png", "reliability.png"):
        assert (whole / png).read_bytes() == (parts / png).read_bytes()
    assert "2 different processes" in (parts / "table.md").read_text(encoding="utf-8")
    assert "different processes" not in (whole / "table.md").read_text(encoding="utf-8")


def test_the_supervised_timing_for_the_ratio_is_kept_and_resumed(volumes, tmp_path, trained):
    out = tmp_path / "out"
    assert compare_cli.run(_args(volumes, out, methods="segpl")) == 0
    assert trained == ["segpl", "supervised"]  # supervised for the ratio alone
    first = json.loads((out / "results.json").read_text(encoding="utf-8"))
    saved = json.loads((out / "runs" / "supervised-reference.json").read_text(encoding="utf-8"))
    assert saved["seconds_per_step"] == first["supervised_seconds_per_step"]
    trained.clear()
    assert compare_cli.run([*_args(volumes, out, methods="segpl"), "--resume"]) == 0
    assert trained == []  # everything loaded: the same numbers, timings included
    assert json.loads((out / "results.json").read_text(encoding="utf-8")) == first
    assert "different processes" not in (out / "table.md").read_text(encoding="utf-8")


def test_a_run_file_gives_back_the_run_nan_included():
    run = compare_module.RunResult(
        "segpl", 1, [0.5, float("nan")], [0.6, float("nan")], 0.1, 0.05, 0.02, 1.5, 4, 10,
        [0.5, 0.4], [0.5, 0.3], {"count": [2, 0], "mean_p": [0.4, float("nan")],
                                 "freq": [0.5, float("nan")]},
        hd95=[3.0, float("nan")], hd95_slices=[2, 0], cost_ratio=2.0, warnings=["w"],
    )  # fmt: skip
    data = json.loads(json.dumps(run_to_json(run), allow_nan=False))
    back = run_from_json(data)
    assert back.cost_ratio is None and back.warnings == ["w"] and back.hd95_slices == [2, 0]
    assert math.isnan(back.iou[1]) and math.isnan(back.calibration["freq"][1])
    for name in ("iou", "dice", "hd95", "ood", "adversarial"):
        np.testing.assert_array_equal(getattr(back, name), getattr(run, name))
    assert (back.brier, back.ece, back.seconds_per_step) == (run.brier, run.ece, 0.02)


def test_first_seed_runs_the_later_seeds_of_a_compare_alone(volumes, tmp_path, trained):
    both, later = tmp_path / "both", tmp_path / "later"
    assert compare_cli.run([*_args(volumes, both, methods="supervised"), "--seeds", "2"]) == 0
    trained.clear()
    args = [*_args(volumes, later, methods="supervised"), "--seeds", "1", "--first-seed", "1"]
    assert compare_cli.run(args) == 0
    assert trained == ["supervised"]  # seed 1 only
    assert [p.name for p in (later / "runs").iterdir()] == ["supervised-s1.json"]
    a = json.loads((both / "results.json").read_text(encoding="utf-8"))
    b = json.loads((later / "results.json").read_text(encoding="utf-8"))
    assert a["seeds"] == [0, 1] and b["seeds"] == [1]
    assert _timeless(b["runs"][0]) == _timeless(a["runs"][1])  # the same run as in the pair
    assert compare_cli.run([*_args(volumes, tmp_path / "x"), "--first-seed", "-1"]) == 2


def test_resuming_run_files_without_their_hd95_rule_says_so(volumes, tmp_path, trained, capsys):
    """Run files from before 0f6b8b7 scored HD95 over slices holding the class in both; the
    table states the new rule, so the terminal names those runs."""
    out = tmp_path / "out"
    assert compare_cli.run(_args(volumes, out)) == 0
    path = out / "runs" / "supervised-s0.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["run"]["hd95_rule"] == "either"
    capsys.readouterr()
    assert compare_cli.run([*_args(volumes, out), "--resume"]) == 0
    assert "the HD95 of" not in capsys.readouterr().err
    del data["run"]["hd95_rule"]  # as written before the rule was recorded
    path.write_text(json.dumps(data), encoding="utf-8")
    assert compare_cli.run([*_args(volumes, out), "--resume"]) == 0
    assert "note: the HD95 of supervised s0 (run files" in capsys.readouterr().err


def _interrupt_at_segpl(monkeypatch):
    """Ctrl-C as SegPL's run starts (after supervised's); returns the counting ``_train``."""
    real = compare_module._train

    def interrupted(trainer, *args):
        if trainer.config.method == "segpl":
            raise KeyboardInterrupt
        return real(trainer, *args)

    monkeypatch.setattr(compare_module, "_train", interrupted)
    return real


def _copies(volumes, folder):
    """The image and labels copied into ``folder``: files a test may rewrite."""
    folder.mkdir()
    return [str(shutil.copy(path, folder)) for path in volumes]


def _files(folder):
    """Every file under ``folder`` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_voxel_changed(path, index):
    """Rewrite the NIfTI at ``path`` with the voxel at ``index`` changed (header kept)."""
    nifti = nib.load(path)
    original = np.asanyarray(nifti.dataobj)
    array = original.copy()
    array[index] = array[index] + 1
    nib.save(nib.Nifti1Image(array, nifti.affine, nifti.header), path)
    back = np.asanyarray(nib.load(path).dataobj)
    assert back.dtype == original.dtype
    assert np.argwhere(back != original).tolist() == [list(index)]


def _refusal(err, path):
    """What ``--resume`` said differs for the run file at ``path`` (one error line)."""
    found = re.findall(
        rf"error: --resume: {re.escape(str(path))} was made for another request: (.*)\. "
        "Give the same options, or choose another --out",
        err,
    )
    assert len(found) == 1, err
    return found[0]


@pytest.mark.parametrize(("which", "index"), [("image", (5, 6, 7)), ("labels", (0, 0, 1))])
def test_resume_refuses_run_files_of_another_image_or_labels(
    volumes, tmp_path, trained, capsys, which, index
):
    """The same paths, one voxel changed: the run files answer another volume."""
    paths = _copies(volumes, tmp_path / "volumes")
    out = tmp_path / "out"
    assert compare_cli.run(_args(paths, out)) == 0
    assert trained == ["supervised", "segpl"]
    before = _files(out)
    request = json.loads(before["runs/supervised-s0.json"])["request"]
    capsys.readouterr()
    changed = paths[0] if which == "image" else paths[1]
    original = Path(changed).read_bytes()
    _one_voxel_changed(changed, index)

    trained.clear()
    assert compare_cli.run([*_args(paths, out), "--resume"]) == 2
    err = capsys.readouterr().err
    differs = _refusal(err, out / "runs" / "supervised-s0.json")
    saved = request[which]["digest"]
    match = re.fullmatch(rf"{which}\.digest \(saved '{saved}', now '([0-9a-f]{{24}})'\)", differs)
    assert match and match[1] != saved, differs  # the digest alone: same path and shape
    assert trained == [] and "loaded from" not in err
    assert _files(out) == before

    # the voxel put back: the same request, every run loaded, none trained
    Path(changed).write_bytes(original)
    assert compare_cli.run([*_args(paths, out), "--resume"]) == 0
    assert trained == []
    assert _files(out)["runs/supervised-s0.json"] == before["runs/supervised-s0.json"]


def test_resume_refuses_run_files_of_other_held_out_slices(
    volumes, tmp_path, monkeypatch, trained, capsys
):
    out = tmp_path / "out"
    real = _interrupt_at_segpl(monkeypatch)
    assert compare_cli.run(_args(volumes, out)) == 130
    monkeypatch.setattr(compare_module, "_train", real)
    assert trained == ["supervised"]
    before = _files(out)
    assert list(before) == ["runs/supervised-s0.json"]
    capsys.readouterr()

    trained.clear()
    args = _args(volumes, out)
    args[args.index("--holdout-slices") + 1] = "3,10"
    assert compare_cli.run([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    differs = _refusal(err, out / "runs" / "supervised-s0.json")
    assert differs == "held-out slices (saved [3, 8], now [3, 10])"
    assert trained == [] and "loaded from" not in err
    assert _files(out) == before
