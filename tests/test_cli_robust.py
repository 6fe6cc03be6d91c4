"""The `segpl` command loses no work: Ctrl-C during training saves the model (and the mask
asked for) and exits 130, and every argument is checked before training starts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_segpl import cli
from napari_segpl.engine import model as model_module
from napari_segpl.engine.config import TrainConfig
from napari_segpl.engine.model import TrainedModel
from napari_segpl.engine.trainer import Trainer
from napari_segpl.run_guard import Interrupt
from napari_segpl.volume import Volume, read_volume, write_nifti

SHAPE = (24, 24, 8)
FAST = ["--patch", "32", "--channels", "4", "--ratio", "1", "--dims", "2"]
FAST += ["--preset", "paper", "--device", "cpu"]


@pytest.fixture
def case(tmp_path) -> tuple[Path, Path]:
    """A bright disc on noise, painted on slices 2 and 5."""
    rng = np.random.default_rng(0)
    x, y = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    disc = (x - 12) ** 2 + (y - 11) ** 2 < 36
    image = rng.normal(100, 10, SHAPE).astype(np.float32) + 200 * disc[..., None]
    grid = Volume(image, np.diag([0.9, 0.9, 3.0, 1.0]))
    labels = np.zeros(SHAPE, np.uint8)
    labels[..., 2] = disc
    labels[..., 5] = disc
    img = write_nifti(image, grid, tmp_path / "image.nii.gz")
    lab = write_nifti(labels, grid, tmp_path / "labels.nii.gz")
    return img, lab


# The child restores Python's usual SIGINT handling (a KeyboardInterrupt), which pytest or a
# shell may have replaced, so the signal reaches the command as it would from a terminal.
CHILD = (
    "import signal, sys\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from napari_segpl.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)
STEPS = 100_000  # far more than can run before the signal


def test_ctrl_c_saves_the_model_and_the_mask_and_exits_130(case, tmp_path):
    img, lab = case
    model, mask = tmp_path / "m.pt", tmp_path / "mask.nii.gz"
    args = ["train", str(img), str(lab), "--model", str(model), "--mask", str(mask)]
    args += ["--steps", str(STEPS), *FAST]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    err: list[str] = []
    training = threading.Event()

    def read_stderr() -> None:  # tqdm draws "3/100000" on stderr once steps are done
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err.append(chunk.decode(errors="replace"))
            if re.search(rf"\b[1-9]\d*/{STEPS}\b", "".join(err)):
                training.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert training.wait(timeout=300), "training never started:\n" + "".join(err)
        proc.send_signal(signal.SIGINT)
        out = proc.stdout.read().decode()
        assert proc.wait(timeout=300) == 130, "".join(err)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=10)
    err_text = "".join(err)
    assert "stopping after this step and saving the model" in err_text
    assert "Traceback" not in err_text
    assert "stopped early" in out
    saved = TrainedModel.load(model)
    assert 1 <= saved.steps_done < STEPS and saved.config.steps == STEPS
    written = read_volume(mask)
    assert written.shape == SHAPE and set(np.unique(written.array)) <= {0, 1}


class FakeTrainer:
    def __init__(self) -> None:
        self.stopped = 0

    def stop(self) -> None:
        self.stopped += 1


def _wait(done, seconds: float = 10.0) -> None:
    """Sleep in short steps until ``done()`` or ``seconds`` pass (a signal's handler runs)."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_first_ctrl_c_stops_the_trainer_second_quits():
    # as in a terminal: a run started in the background (``cmd &``) inherits SIGINT ignored,
    # where Interrupt rightly stays out (its docstring), and this test would then fail
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        trainer = FakeTrainer()
        with pytest.raises(KeyboardInterrupt), Interrupt(trainer) as interrupt:
            os.kill(os.getpid(), signal.SIGINT)
            _wait(lambda: interrupt.received)  # the handler runs once the main thread runs
            assert interrupt.received and trainer.stopped == 1
            os.kill(os.getpid(), signal.SIGINT)
            _wait(lambda: False)  # the handler's KeyboardInterrupt ends this wait
        assert trainer.stopped == 1
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:  # even when an assertion fails, the suite's own SIGINT handling comes back
        signal.signal(signal.SIGINT, outer)


def test_ctrl_c_before_training_exits_130(case, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "read_image", interrupted)
    img, lab = case
    assert cli.main(["train", str(img), str(lab), "--model", str(tmp_path / "m.pt")]) == 130
    assert "interrupted" in capsys.readouterr().err


@pytest.fixture
def no_training(monkeypatch):
    def refuse(self):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(Trainer, "run", refuse)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            ["--uncertainty", "{d}/u.nii.gz", "--uncertainty-kind", "mc", "--method", "segpl"],
            "segpl-vi",
        ),
        (["--uncertainty", "{d}/u.nii.gz", "--uncertainty-kind", "mc"], "segpl-vi"),
        (
            ["--method", "segpl-vi", "--uncertainty", "{d}/u.nii.gz", "--mc-samples", "0"],
            "mc-samples",
        ),
        (["--mask", "{d}/m.nii.gz", "--batch-slices", "0"], "batch-slices"),
        (["--mask", "{d}/mask.png"], ".nii"),
        (["--mask", "{d}/image.nii.gz"], "input image"),
        (["--mask", "{d}/labels.nii.gz"], "input labels"),
        (["--mask", "{d}/same.nii.gz", "--prob", "{d}/same.nii.gz"], "--mask output"),
        (["--mask", "{d}/notes.txt/mask.nii.gz"], "cannot write"),
        (["--mask", "{d}/dir.nii.gz"], "is a folder"),
        # inf or NaN would train and write a model that no command can load
        (["--lr", "inf"], "lr must be a finite number"),
        (["--ct-window", "nan", "400"], "ct_window must be a finite number"),
    ],
)
def test_bad_arguments_stop_before_training(case, tmp_path, no_training, capsys, extra, fragment):
    img, lab = case
    (tmp_path / "notes.txt").write_text("a file")
    (tmp_path / "dir.nii.gz").mkdir()
    before = img.read_bytes(), lab.read_bytes()
    args = ["train", str(img), str(lab), "--model", str(tmp_path / "m.pt"), *FAST]
    args += [a.format(d=tmp_path) for a in extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert (img.read_bytes(), lab.read_bytes()) == before
    assert not (tmp_path / "m.pt").exists()


def test_model_over_an_input_or_a_folder_is_refused(case, tmp_path, no_training, capsys):
    img, lab = case
    assert cli.main(["train", str(img), str(lab), "--model", str(lab), *FAST]) == 2
    assert "input labels" in capsys.readouterr().err
    assert cli.main(["train", str(img), str(lab), "--model", str(tmp_path), *FAST]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_predict_never_writes_over_its_input(case, tmp_path, capsys):
    img, _ = case
    model = TrainedModel.new(TrainConfig(dims=2, base_channels=4, depth=2, patch=32), 1)
    path = model.save(tmp_path / "m.pt")
    before = img.read_bytes()
    assert cli.main(["predict", str(path), str(img), "--mask", str(img)]) == 2
    assert "input image" in capsys.readouterr().err
    assert img.read_bytes() == before


def test_a_model_that_cannot_be_saved_still_gets_its_mask_written(case, tmp_path, monkeypatch,
                                                                   capsys):  # fmt: skip
    img, lab = case
    model, mask = tmp_path / "m.pt", tmp_path / "mask.nii.gz"

    def full_disk(self, path):
        raise OSError(f"{path}: cannot write the model file (no space left on device)")

    monkeypatch.setattr(TrainedModel, "save", full_disk)
    args = ["train", str(img), str(lab), "--model", str(model), "--mask", str(mask)]
    code = cli.main([*args, "--steps", "2", "--quiet", "--no-safeguard", *FAST])
    err = capsys.readouterr().err
    assert code == 2 and "no space left on device" in err and "writing the masks" in err
    assert not model.exists()
    written = read_volume(mask)
    assert written.array.shape == SHAPE and set(np.unique(written.array)) <= {0, 1}


def test_a_diverged_run_writes_no_mask_and_exits_1(case, tmp_path, monkeypatch, capsys):
    """Weights that are not finite predict an empty mask, which a user could take for "no
    structure": the refusal to save them ends the command before any mask is written."""
    img, lab = case
    model, mask = tmp_path / "m.pt", tmp_path / "mask.nii.gz"
    monkeypatch.setattr(model_module, "non_finite", lambda state: "NaN or inf in model.x")
    args = ["train", str(img), str(lab), "--model", str(model), "--mask", str(mask)]
    code = cli.main([*args, "--steps", "2", "--quiet", "--no-safeguard", *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "not finite" in err and "no masks written" in err
    assert not model.exists() and not mask.exists()


def test_slices_too_small_for_the_2d_unet_are_refused_before_training(tmp_path, no_training,
                                                                       capsys):  # fmt: skip
    """A 16 x 16 slice is one pixel at the 2D U-net's deepest level, where instance
    normalisation fails part way into training: refused first, with what to do."""
    image = np.random.default_rng(0).normal(size=(16, 16, 8)).astype(np.float32)
    labels = np.zeros(image.shape, np.uint8)
    labels[4:9, 4:9, [2, 5]] = 1
    grid = Volume(image, np.eye(4))
    img = write_nifti(image, grid, tmp_path / "i.nii.gz")
    lab = write_nifti(labels, grid, tmp_path / "l.nii.gz")
    args = ["train", str(img), str(lab), "--model", str(tmp_path / "m.pt"), "--dims", "2"]
    assert cli.main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "16 x 16 pixels are too small for the 2D U-net" in err and err.count("\n") == 1
    assert not (tmp_path / "m.pt").exists()


def test_an_unexpected_error_saves_the_model_of_the_steps_done(case, tmp_path, monkeypatch,
                                                               capsys):  # fmt: skip
    """Out of memory (or any fault) part way: one line instead of a traceback, and the model of
    the steps done saved as after a Ctrl-C; status 1."""
    from napari_segpl.engine.methods.base import Method

    img, lab = case
    model = tmp_path / "m.pt"
    real, calls = Method.after_step, []

    def failing(self):
        calls.append(1)
        if len(calls) == 3:  # the third step's update fails: two steps done
            raise RuntimeError("CUDA out of memory (simulated)")
        real(self)

    monkeypatch.setattr(Method, "after_step", failing)
    args = ["train", str(img), str(lab), "--model", str(model), "--steps", "10", "--quiet"]
    assert cli.main([*args, "--no-safeguard", *FAST]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "training failed after 2 steps: RuntimeError: CUDA out of memory (simulated)" in err
    assert f"the model of those steps -> {model}" in err
    assert TrainedModel.load(model).steps_done == 2
