"""``segpl predict`` as a user meets it: ``--out`` that is a file, ``--out .`` above the scans,
a scan given as ``.``, a rerun into a folder holding a same-named scan's mask or another
model's, cohort flags given to the one-image form, and an input (a glob, a file, a folder)
that names no volume, counted as one volume failed after ``--out`` was made. Each failed on
the code before."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from multiprocessing import resource_tracker
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import make_toy_volume

from napari_segpl.cli import main
from napari_segpl.cohort import find_volumes, local_cluster, mask_names
from napari_segpl.engine import TrainConfig, TrainedModel
from napari_segpl.volume import read_volume, write_nifti


def _model(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    TrainedModel.new(TrainConfig(dims=2, axis=2, method="segpl", base_channels=4), 2).save(path)
    return path


def _scan(path: Path, seed: int = 0, shape: tuple[int, int, int] = (32, 32, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(make_toy_volume(shape, seed=seed)[0], np.eye(4)), path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("audit") / "model.pt", 0)


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(1, 1) as c:
        yield c.scheduler_address


def _predict(*args: object, cluster: str | None = None) -> int:
    extra = ["--scheduler", cluster] if cluster else []
    return main(["predict", *map(str, args), *extra, "--quiet"])


def test_out_that_is_a_file_or_cannot_be_made_is_one_line(model, tmp_path, capsys):
    """It printed '[Errno 17] File exists: ...' (or 'Not a directory'), naming no flag."""
    scan, file = _scan(tmp_path / "a.nii.gz"), tmp_path / "notes.txt"
    file.write_text("mine")
    assert _predict(model, scan, "--out", file) == 2
    assert f"--out {file}: is a file; give a folder" in capsys.readouterr().err
    assert _predict(model, scan, "--out", file / "masks") == 2
    assert f"--out {file / 'masks'}: cannot create" in capsys.readouterr().err
    assert file.read_text() == "mine"


def test_out_above_or_beside_the_scans_finds_them(model, cluster, tmp_path, monkeypatch, capsys):
    """``--out .`` (or ``--out`` the scans' own folder) skipped every scan below it: 'no
    volume found there'. Only the masks written there are left out of a search."""
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        _scan(Path("scans", f"{name}.nii.gz"), seed=len(name))
    found, missing = find_volumes(["scans"], exclude=Path("."))
    assert [p.name for p in found] == ["a.nii.gz", "b.nii.gz"] and missing == []
    assert _predict(model, "scans", "--out", ".", cluster=cluster) == 0
    masks = sorted(p.name for p in Path(".").glob("*_mask.nii.gz"))
    assert masks == ["a_mask.nii.gz", "b_mask.nii.gz"]
    assert _predict(model, "scans", "--out", "scans", cluster=cluster) == 0
    assert "2 written, 0 skipped" in capsys.readouterr().out
    assert _predict(model, "scans", "--out", "scans", cluster=cluster) == 0  # masks not inputs
    assert "0 written, 2 skipped (present), 0 failed of 2 volumes" in capsys.readouterr().out


def test_a_folder_given_as_dot_is_named_after_itself(tmp_path, monkeypatch):
    """``segpl predict MODEL . --out DIR`` inside a DICOM folder wrote ``_mask.nii.gz``."""
    (tmp_path / "case7" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "case7")
    assert mask_names([Path(".")]) == ["case7_mask.nii.gz"]
    monkeypatch.chdir(tmp_path / "case7" / "deeper")
    assert mask_names([Path("..")]) == ["case7_mask.nii.gz"]  # not a hidden '.._mask'


def test_a_present_mask_is_skipped_only_as_this_scans_by_this_model(
    model, cluster, tmp_path, capsys
):
    """Masks are named by file name: a rerun into the same --out with another folder's
    ``scan.nii.gz``, or with another model, skipped the mask there as if it were the answer."""
    x, y = _scan(tmp_path / "x" / "scan.nii.gz", 1), _scan(tmp_path / "y" / "scan.nii.gz", 2)
    out = tmp_path / "masks"
    mask = out / "scan_mask.nii.gz"
    assert _predict(model, x, "--out", out, cluster=cluster) == 0
    first = mask.read_bytes()
    capsys.readouterr()
    assert _predict(model, y, "--out", out, cluster=cluster) == 1
    err = capsys.readouterr().err
    assert f"failed: {y}: {mask} holds the mask of another scan of this name" in err
    other = _model(tmp_path / "other.pt", 1)
    assert _predict(other, x, "--out", out, cluster=cluster) == 1
    err = capsys.readouterr().err
    assert f"{mask} was predicted by another model; --overwrite redoes it" in err
    assert mask.read_bytes() == first  # nothing written over without --overwrite
    assert _predict(model, x, "--out", out, cluster=cluster) == 0  # its own: skipped
    assert "0 written, 1 skipped" in capsys.readouterr().out
    assert _predict(model, y, "--out", out, "--overwrite", cluster=cluster) == 0
    assert mask.read_bytes() != first and _predict(model, y, "--out", out) == 0
    assert "1 skipped" in capsys.readouterr().out
    # a mask without the stamp (an older run's, or another tool's) is skipped as before
    write_nifti(np.zeros((32, 32, 4), np.uint8), read_volume(x), mask)
    assert _predict(model, x, "--out", out) == 0
    assert "1 skipped" in capsys.readouterr().out


def test_the_one_image_form_refuses_cohort_flags(model, tmp_path, capsys):
    """--workers, --scheduler, --overwrite were taken and silently ignored without --out."""
    scan, mask = _scan(tmp_path / "a.nii.gz"), tmp_path / "m.nii.gz"
    for flags in (["--workers", "2"], ["--scheduler", "tcp://h:8786"], ["--overwrite"]):
        assert _predict(model, scan, "--mask", mask, *flags) == 2
        assert f"{flags[0]} is for a cohort (--out DIR)" in capsys.readouterr().err
    assert not mask.exists()


def test_a_cohort_refuses_uncertainty_kind_by_its_name(model, tmp_path, capsys):
    """It asked for --uncertainty OUT.nii.gz, which --out then refuses in turn."""
    scan = _scan(tmp_path / "a.nii.gz")
    assert _predict(model, scan, "--out", tmp_path / "o", "--uncertainty-kind", "tta") == 2
    assert "--uncertainty-kind is for one image" in capsys.readouterr().err


def test_a_mask_named_as_the_model_file_is_refused(model, tmp_path, capsys):
    """A model saved under a NIfTI name was written over by ``--mask`` naming it."""
    named = tmp_path / "model.nii.gz"
    named.write_bytes(model.read_bytes())
    assert _predict(named, _scan(tmp_path / "a.nii.gz"), "--mask", named) == 2
    assert "would overwrite the input model" in capsys.readouterr().err
    assert named.read_bytes() == model.read_bytes()


def test_an_output_that_cannot_be_written_is_named_not_its_temporary_file(
    model, tmp_path, capsys, monkeypatch
):
    """A full disk printed '[Errno 28] ...: '.../.m.nii.gz.1a2b3c4d.part.nii.gz'', a hidden
    name the user never gave; the file asked for is named, and nothing is left behind."""
    scan, mask = _scan(tmp_path / "a.nii.gz"), tmp_path / "m.nii.gz"

    def full(img, name):
        Path(name).write_bytes(b"half")
        raise OSError(28, "No space left on device", name)

    monkeypatch.setattr(nib, "save", full)
    assert _predict(model, scan, "--mask", mask) == 2
    err = capsys.readouterr().err
    assert f"error: {mask}: cannot write (No space left on device)" in err and ".part" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz"]


def test_slices_too_small_for_the_2d_net_are_said_so(model, cluster, tmp_path, capsys):
    """16 x 16 slices (1 x 1 at the U-net's deepest level) failed in torch: 'Expected more
    than 1 spatial element when training', in predict, suggest and a cohort's line."""
    small = _scan(tmp_path / "small.nii.gz", shape=(16, 16, 3))
    said = f"{small}: slices of 16 x 16 voxels along axis 2 are too small for this model's 2D"
    assert _predict(model, small, "--mask", tmp_path / "m.nii.gz") == 2
    assert said in capsys.readouterr().err
    assert main(["suggest", str(model), str(small), "--quiet"]) == 2
    assert said in capsys.readouterr().err
    assert _predict(model, small, "--out", tmp_path / "o", cluster=cluster) == 1
    assert f"failed: {said}" in capsys.readouterr().err
    wide = _scan(tmp_path / "wide.nii.gz", shape=(17, 16, 3))  # 2 x 1 at the deepest level
    assert _predict(model, wide, "--mask", tmp_path / "w.nii.gz") == 0


def test_a_device_this_machine_lacks_stops_a_local_cohort_at_once(model, tmp_path, capsys):
    """It started the local cluster, then failed every volume with the same device line."""
    scans = [_scan(tmp_path / f"{n}.nii.gz") for n in "ab"]
    for device in ("cuda:99", "bogus"):
        flags = ["--out", tmp_path / "o", "--workers", "1", "--device", device]
        assert _predict(model, *scans, *flags) == 2
        err = capsys.readouterr().err
        assert "segpl predict: error: " in err and repr(device) in err and "failed:" not in err
    assert not (tmp_path / "o").exists()


def test_a_cohort_mask_that_cannot_be_written_is_named(model, tmp_path, monkeypatch):
    """A cohort's line named the hidden temporary file: 'OSError: [Errno 28] ...: '.../.a_mask
    .nii.gz.1a2b3c4d.part.nii.gz''; now the mask it was for."""
    from napari_segpl.cohort import Settings, predict_one

    def full(img, name):
        raise OSError(28, "No space left on device", name)

    scan, target = _scan(tmp_path / "a.nii.gz"), tmp_path / "a_mask.nii.gz"
    monkeypatch.setattr(nib, "save", full)
    result = predict_one(TrainedModel.load(model), str(scan), str(target), Settings(device="cpu"))
    assert result["status"] == "failed" and ".part" not in result["message"]
    assert f"{target}: cannot write (No space left on device)" in result["message"]


def test_ctrl_c_counts_the_masks_on_disk_once_the_workers_stopped(
    model, tmp_path, capsys, monkeypatch
):
    """'interrupted: 2 of 6 masks written here' was the client's count when Ctrl-C came; the
    tasks under way then finished, and 4 were on disk. The masks written are counted after."""
    import napari_segpl.predict_cli as predict_cli

    scan, out = _scan(tmp_path / "a.nii.gz"), tmp_path / "out"
    image = read_volume(scan)
    write_nifti(np.zeros(image.shape, np.uint8), image, out / "kept_mask.nii.gz")

    def stopped(model_path, images, out, settings):
        for name in ("a", "b", "kept"):  # two new masks, one written over (--overwrite)
            write_nifti(np.ones(image.shape, np.uint8), image, Path(out) / f"{name}_mask.nii.gz")
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_cli, "run_cohort", stopped)
    (out / "z_mask.nii.gz").write_bytes((out / "kept_mask.nii.gz").read_bytes())  # untouched
    assert _predict(model, scan, "--out", out, "--overwrite") == 130
    assert f"interrupted: 3 mask(s) written in {out} by this run" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform != "linux", reason="Linux signal delivery")
def test_ctrl_c_while_the_local_workers_start_stops_the_command_at_once(
    model, tmp_path, capsys, monkeypatch
):
    """A Ctrl-C pressed while the local workers started was lost (SIGINT ignored over the
    start, for them to inherit) and the cohort ran to its end. Now, a worker slow to
    start: said at once, the workers ended and the cluster closed at once, status 130
    as for the other Ctrl-C, no mask, no traceback, no process left."""
    import dask
    import distributed  # noqa: F401  (its config, before one key is set and unset)
    import psutil

    import napari_segpl.cohort as cohort

    (tmp_path / "slow_start.py").write_text("import time\n\ntime.sleep(6)\n")  # a preload
    begun, real = threading.Event(), cohort.local_cluster

    def start(n: int, threads: int):
        begun.set()
        return real(n, threads)

    def ctrl_c() -> None:  # to the process, as the terminal sends it (not to one thread)
        if begun.wait(60):
            time.sleep(0.5)
            sent.append(time.perf_counter())
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(cohort, "local_cluster", start)
    scan, out, sent = _scan(tmp_path / "a.nii.gz"), tmp_path / "out", []
    timer = threading.Thread(target=ctrl_c, daemon=True)
    resource_tracker.ensure_running()  # CPython's, which outlives a cohort
    before = {c.pid for c in psutil.Process().children()}
    timer.start()
    with dask.config.set({"distributed.worker.preload": [str(tmp_path / "slow_start.py")]}):
        status = _predict(model, scan, "--out", out, "--workers", "1", "--threads", "1")
    took = time.perf_counter() - sent[0]
    timer.join()
    err = capsys.readouterr().err
    assert status == 130, err
    assert "\nCtrl-C: stopping the workers (0 of 1 masks reported so far; they were" in err
    assert f"interrupted: 0 mask(s) written in {out}" in err and "Traceback" not in err
    assert took < 4, took  # not the worker's start, 6 s of sleep and more
    assert not out.exists()  # no mask, no part of one: the folder made for them is gone
    left = [c for c in psutil.Process().children() if c.pid not in before]
    assert not left, [c.cmdline() for c in left]


@pytest.mark.skipif(sys.platform != "linux", reason="Linux signal delivery")
def test_ctrl_c_or_an_error_before_the_first_mask_removes_only_the_folders_it_made(
    model, tmp_path, capsys, monkeypatch
):
    """A Ctrl-C while the local workers started (status 130) left ``--out`` behind, made and
    empty. Now each folder the command made (parents too) goes again while empty, as after an
    error before the first mask; a folder that was there, empty or not, is left as it was."""
    import napari_segpl.cohort as cohort

    def ctrl_c_at_start(n: int, threads: int) -> None:  # SIGINT is blocked in this thread:
        os.kill(os.getpid(), signal.SIGINT)  # the process's main thread takes it, as a terminal's
        time.sleep(0.5)
        raise RuntimeError("never started")

    def disk_full(n: int, threads: int) -> None:
        raise OSError(28, "No space left on device")

    scan, kept, full = _scan(tmp_path / "scans" / "a.nii.gz"), tmp_path / "kept", tmp_path / "full"
    kept.mkdir()
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    flags = ["--workers", "1", "--threads", "1"]
    monkeypatch.setattr(cohort, "local_cluster", ctrl_c_at_start)
    for out in (tmp_path / "new" / "masks", kept / "masks", kept, full):
        assert _predict(model, scan, "--out", out, *flags) == 130, out
        assert f"interrupted: 0 mask(s) written in {out}" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # before: new/masks, empty
    assert kept.is_dir() and list(kept.iterdir()) == []  # there before: kept, its masks/ gone
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    monkeypatch.setattr(cohort, "local_cluster", disk_full)
    assert _predict(model, scan, "--out", tmp_path / "new" / "masks", *flags) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_an_input_that_names_nothing_stops_the_cohort_before_any_work(
    model, tmp_path, monkeypatch, capsys
):
    """A glob matching nothing, a missing file or a folder without a volume was one volume
    'failed' of the rest ('0 written, 0 skipped (present), 1 failed of 1 volumes', exit 1),
    and a typo in a cohort's list silently shrank the cohort: now one line naming it, exit 2."""
    monkeypatch.chdir(tmp_path)
    _scan(Path("scans", "a.nii.gz"))
    Path("empty").mkdir()
    one = ["--out", "masks", "--workers", "1"]
    cases = [
        (["scans/*.nii"], "no file matches 'scans/*.nii'"),
        (["scans/a.nii.gz", "scans/*.nii"], "no file matches 'scans/*.nii'"),  # 1 of 2: a typo
        (["scans/b.nii.gz"], "scans/b.nii.gz: file not found"),  # the one-image form's words
        (["scans/a.nii.gz", "empty"], "empty: no volume found there"),
        (["x/*.mha", "scans/a.nii.gz", "y.nii"], "no file matches 'x/*.mha'; y.nii: file not"),
    ]
    for inputs, said in cases:
        assert _predict(model, *inputs, *one) == 2, inputs
        captured = capsys.readouterr()
        assert captured.err.startswith("segpl predict: error: ") and said in captured.err
        assert captured.err.count("\n") == 1 and "failed" not in captured.err + captured.out
        assert not Path("masks").exists()  # nothing predicted, no folder made
    assert _predict(model, "scans/b.nii.gz", "--mask", "m.nii.gz") == 2
    assert "segpl predict: error: scans/b.nii.gz: file not found" in capsys.readouterr().err


def test_out_is_not_made_when_no_input_is_valid(model, tmp_path, capsys):
    """``--out new/masks`` was made (parents too) before the inputs were looked for, and left
    empty behind a command that did nothing: the inputs are now checked first."""
    from napari_segpl.cohort import Settings, run_cohort

    out = tmp_path / "new" / "masks"
    missing = [tmp_path / "gone.nii.gz", str(tmp_path / "scans" / "*.nii.gz")]
    status = _predict(model, *missing, "--out", out, "--workers", "1")
    assert not (tmp_path / "new").exists()
    assert status == 2 and "file not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"no file matches '.*\*\.nii\.gz'"):  # the API too
        run_cohort(model, missing[1:], out, Settings(device="cpu", progress=False))
    assert not (tmp_path / "new").exists()
