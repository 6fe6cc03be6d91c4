"""``segpl predict ... --out DIR``: a cohort on a local Dask cluster of 2 worker processes.

Every mask must equal a prediction made in this process (identical labels, the input's grid),
present masks must be skipped and redone only with --overwrite, a bad file must be reported
while the others are written, and the model must reach each worker once."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import make_toy_volume
from distributed import Client
from test_dicom_series import write_series

from napari_segpl.cli import main
from napari_segpl.cohort import (
    Settings,
    cpu_cores,
    default_workers,
    find_volumes,
    local_cluster,
    mask_names,
    run_cohort,
    send_model,
)
from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
from napari_segpl.volume import read_volume

NAMES = ["a_mask.nii.gz", "b_mask.nii.gz", "c_mask.nii.gz", "dicom_case_mask.nii.gz"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, Path]:
    """A model (random weights: labels of every class) and 4 volumes of different grids:
    two NIfTI, one MHA and a DICOM folder, in a folder with a file that is not a volume."""
    root = tmp_path_factory.mktemp("cohort")
    torch.manual_seed(0)
    config = TrainConfig(dims=2, axis=2, method="segpl", base_channels=4)
    TrainedModel.new(config, 2).save(root / "model.pt")
    inputs = root / "inputs"
    inputs.mkdir()
    for name, shape, seed in (("a", (40, 36, 8), 0), ("b", (32, 44, 6), 1)):
        image, _ = make_toy_volume(shape, seed=seed)
        affine = np.diag([0.8, 0.6, 2.5, 1.0])
        affine[:3, 3] = (seed, -10.0, 4.0)
        nib.save(nib.Nifti1Image(image, affine), inputs / f"{name}.nii.gz")
    image, _ = make_toy_volume((36, 32, 7), seed=2)
    mha = sitk.GetImageFromArray(np.ascontiguousarray(image.transpose(2, 1, 0)))
    mha.SetSpacing((0.7, 0.9, 3.0))
    sitk.WriteImage(mha, str(inputs / "c.mha"))
    image, _ = make_toy_volume((5, 28, 30), seed=3)
    write_series(inputs / "dicom_case", "1.2.3.4.5", image.astype(np.int16), "axial")
    (inputs / "notes.txt").write_text("not a volume")
    return root / "model.pt", inputs


@pytest.fixture(scope="module")
def cluster():
    """The local cluster segpl starts: 2 worker processes, 1 torch thread each."""
    start = time.perf_counter()
    with local_cluster(2, 1) as c:
        print(f"cluster of 2 worker processes up in {time.perf_counter() - start:.1f} s")
        yield c.scheduler_address


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_inputs_are_found_and_named_once():
    here = Path(__file__).parent
    named = [here / "nope.nii.gz", str(here / "*.nothing"), str(here / "test_cohort.p?")]
    found, missing = find_volumes(named)  # missing, a glob matching nothing, no volume matched
    assert found == [] and [o.message for o in missing] == [
        "file not found",
        "no file matches",
        "no volume found there",
    ]
    sources = [Path("/d/x/scan.nii.gz"), Path("/d/y/scan.nii.gz"), Path("/d/x/scan.nrrd")]
    sources.append(Path("/d/x/other.nii"))
    assert mask_names(sources) == [
        "x_scan_mask.nii.gz",
        "y_scan_mask.nii.gz",
        "x_scan-2_mask.nii.gz",
        "other_mask.nii.gz",
    ]


def test_local_workers_by_default():
    """Without CUDA here: a few CPU workers; a named GPU gets one worker."""
    assert default_workers("cpu") == min(4, cpu_cores()) >= 1
    assert default_workers("cuda:1") == 1
    if not torch.cuda.is_available():
        assert default_workers("auto") == default_workers("cpu")


def test_every_mask_matches_a_single_process_prediction(cohort, cluster, tmp_path):
    model_path, inputs = cohort
    found, missing = find_volumes([inputs, str(inputs / "*.nii.gz")])  # the folder, then a glob
    assert [p.name for p in found] == ["a.nii.gz", "b.nii.gz", "c.mha", "dicom_case"]
    assert missing == []
    settings = Settings(scheduler=cluster, threads=1, progress=False)
    report = run_cohort(model_path, [inputs], tmp_path, settings)
    assert report.count("written") == 4 and report.count("failed") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == NAMES  # nothing else, no temp files
    model = TrainedModel.load(model_path)
    for source, name in zip(found, NAMES, strict=True):
        image = read_volume(source)
        expected = predict_volume(model, image.array, device="cpu").labels
        written = nib.load(tmp_path / name)
        np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
        np.testing.assert_allclose(written.affine, image.affine, atol=1e-5)
        assert len(np.unique(expected)) == 3  # background and both classes: a real comparison
    # one copy of the model per worker: every task on a worker was handed the same object
    ids: dict[str, set[int]] = {}
    for outcome in report.outcomes:
        ids.setdefault(outcome.worker, set()).add(outcome.model_id)
    assert all(len(v) == 1 for v in ids.values()) and "" not in ids


def test_the_model_is_on_every_worker_before_any_task(cohort, cluster):
    with Client(cluster) as client:
        future = send_model(client, TrainedModel.load(cohort[0]))
        workers = set(client.nthreads())
        assert len(workers) == 2
        assert set(client.who_has([future])[future.key]) == workers


def test_present_masks_are_skipped_a_stopped_run_resumes_and_overwrite_redoes(
    cohort, cluster, tmp_path
):
    model_path, inputs = cohort
    settings = Settings(scheduler=cluster, threads=1, progress=False)
    assert run_cohort(model_path, [inputs], tmp_path, settings).count("written") == 4
    first = {n: os.stat(tmp_path / n) for n in NAMES}
    report = run_cohort(model_path, [inputs], tmp_path, settings)
    assert report.count("skipped") == 4 and report.count("written") == 0
    assert {n: os.stat(tmp_path / n).st_ino for n in NAMES} == {
        n: s.st_ino for n, s in first.items()
    }
    (tmp_path / NAMES[1]).unlink()  # as if the run had stopped before this one
    report = run_cohort(model_path, [inputs], tmp_path, settings)
    assert (report.count("written"), report.count("skipped")) == (1, 3)
    assert [o.source for o in report.outcomes if o.status == "written"] == [
        str(inputs / "b.nii.gz")
    ]
    before = {n: os.stat(tmp_path / n).st_ino for n in NAMES}
    report = run_cohort(model_path, [inputs], tmp_path, replace(settings, overwrite=True))
    assert report.count("written") == 4
    for name in NAMES:  # each replaced by a new file (written beside it and renamed)
        assert os.stat(tmp_path / name).st_ino != before[name]


def test_cli_reports_a_bad_file_and_writes_the_rest(cohort, cluster, tmp_path, capsys):
    model_path, inputs = cohort
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    out = tmp_path / "masks"
    args = ["predict", str(model_path), str(inputs / "*.nii.gz"), str(bad)]
    args += ["--out", str(out), "--scheduler", cluster, "--quiet"]
    assert main(args) == 1  # some failed: not 0, and not the usage error 2
    captured = capsys.readouterr()
    assert f"failed: {bad}: cannot read NIfTI file" in captured.err
    assert "2 written, 0 skipped (present), 1 failed of 3 volumes" in captured.out
    assert sorted(p.name for p in out.iterdir()) == NAMES[:2]
    model = TrainedModel.load(model_path)
    image = read_volume(inputs / "b.nii.gz")
    expected = predict_volume(model, image.array, device="cpu").labels
    np.testing.assert_array_equal(_labels(out / "b_mask.nii.gz"), expected)


def test_the_single_image_form_and_its_errors(cohort, tmp_path, capsys):
    model_path, inputs = cohort
    image = str(inputs / "a.nii.gz")
    for wrong in (
        [image],  # neither --mask nor --out
        [image, image, "--mask", str(tmp_path / "m.nii.gz")],  # two images, one mask
        [image, "--out", str(tmp_path), "--prob", str(tmp_path / "p.nii.gz")],
        [image, "--out", str(tmp_path), "--workers", "0"],
        [image, "--out", str(tmp_path), "--series", "1.2.3"],  # one series: not for a cohort
    ):
        assert main(["predict", str(model_path), *wrong]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["predict", str(model_path), image, "--mask", str(tmp_path / "m.nii.gz")]) == 0
    expected = predict_volume(TrainedModel.load(model_path), read_volume(image).array).labels
    np.testing.assert_array_equal(_labels(tmp_path / "m.nii.gz"), expected)


def test_names_differing_only_in_case_get_different_masks():
    """Scan and scan are one file on macOS and Windows: their masks must not collide."""
    same_folder = mask_names([Path("/d/x/Scan.nii.gz"), Path("/d/x/scan.nrrd")])
    assert [n.casefold() for n in same_folder] == ["x_scan_mask.nii.gz", "x_scan-2_mask.nii.gz"]
    two_folders = mask_names([Path("/d/x/Scan.nii.gz"), Path("/d/y/scan.nii.gz")])
    assert two_folders == ["x_Scan_mask.nii.gz", "y_scan_mask.nii.gz"]


def test_a_search_skips_the_out_folder_and_hidden_files(tmp_path):
    scans = tmp_path / "scans"
    (scans / "masks").mkdir(parents=True)
    for path in (scans / "a.nii.gz", scans / "masks" / "a_mask.nii.gz",
                 scans / ".a_mask.nii.gz.part.nii.gz"):  # fmt: skip
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), path)
    for pattern in ([scans], [str(scans / "**" / "*.nii.gz")], [str(scans / ".*")]):
        found, _ = find_volumes(pattern, exclude=scans / "masks")
        assert [p.name for p in found] == ([] if ".*" in str(pattern[0]) else ["a.nii.gz"])
    named, _ = find_volumes([scans / "masks" / "a_mask.nii.gz"], exclude=scans / "masks")
    assert [p.name for p in named] == ["a_mask.nii.gz"]  # a file named outright is tried


def test_out_inside_the_inputs_resumes_and_relative_paths_reach_the_workers(
    cohort, cluster, tmp_path, monkeypatch
):
    """A second run with --out under the input folder skips the masks (it once read them as
    inputs), and relative paths work though the cluster's workers run in another folder."""
    model_path, inputs = cohort
    monkeypatch.chdir(tmp_path)  # the workers were started elsewhere
    Path("scans").mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        Path("scans", name).write_bytes((inputs / name).read_bytes())
    settings = Settings(scheduler=cluster, threads=1, progress=False)
    first = run_cohort(model_path, ["scans"], "scans/masks", settings)
    assert (first.count("written"), first.count("failed")) == (2, 0)
    assert sorted(p.name for p in Path("scans/masks").iterdir()) == NAMES[:2]
    again = run_cohort(model_path, ["scans"], "scans/masks", settings)
    assert (again.count("skipped"), again.count("failed"), again.count("written")) == (2, 0, 0)


def _sigint_held_off(pid: int) -> bool:
    """Whether process ``pid`` (its main thread) has SIGINT blocked or ignored (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    masks = dict(line.split(":", 1) for line in status if line.startswith(("SigBlk", "SigIgn")))
    return any(int(mask, 16) >> (signal.SIGINT - 1) & 1 for mask in masks.values())


@pytest.mark.skipif(sys.platform != "linux", reason="reads the worker's masks in /proc")
def test_the_local_workers_hold_sigint_off():
    """The terminal's Ctrl-C reaches the workers too: they start with SIGINT blocked (a mask
    inherited from the thread that spawns them), and one sent to a worker leaves it working."""
    from napari_segpl.cohort_start import started_seeing_ctrl_c

    with started_seeing_ctrl_c(lambda: local_cluster(1, 1), lambda: None) as cluster:
        (pid,) = [w.pid for w in cluster.workers.values()]
        assert _sigint_held_off(pid)
        os.kill(pid, signal.SIGINT)
        with Client(cluster) as client:
            assert list(client.run(os.getpid).values()) == [pid]
