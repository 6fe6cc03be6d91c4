"""The dock in a real (headless) napari viewer: the whole flow on the CT sample, Stop, errors,
closing mid-run, and the method list following the engine's registry."""

from __future__ import annotations

import time

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import add_toy_layers

from napari_segpl.engine import (
    FillStopped,
    PredictionStopped,
    TrainConfig,
    TrainedModel,
    Trainer,
    predict_volume,
)
from napari_segpl.gui import SegPLDock, notify, session, training_panel
from napari_segpl.gui.params import ParameterForm

pytestmark = pytest.mark.gui


def quick_params(p: ParameterForm) -> None:
    """A small, fast run."""
    p.steps.value = 6
    p.patch.value = 64
    p.channels.value = 4
    p.ratio.value = 1
    p.preview_every.value = 2
    # the supervised twin doubles a run; tests/test_dock_safeguard.py turns it back on
    p.safeguard.value = False
    # so may the retry (a 6-step mask contradicts the paint); tests/test_dock_retry.py's is on
    p.retry.value = False


def toy_dock(viewer, shape, painted) -> SegPLDock:
    """The dock in napari's window (it watches that window) over a toy volume painted on
    ``painted``: quick 2D SegPL runs."""
    add_toy_layers(viewer, shape, painted)
    widget = SegPLDock(viewer)
    viewer.window.add_dock_widget(widget)
    quick_params(widget.params)
    widget.params.method.value = "segpl"
    widget.params.dims.value = 2
    return widget


def provoke_collapse(p: ParameterForm) -> None:
    """A run whose pseudo labels collapse towards everything (the guard then warns)."""
    p.method.value = "segpl"
    p.threshold.value = 0.01  # every pixel becomes a pseudo-label foreground pixel
    p.steps.value = 30  # 40 % supervised burn-in, then 18 steps the guard watches
    p.safeguard.value = False  # about the run's own warnings: no supervised twin after it


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    widget = SegPLDock(viewer)
    viewer.window.add_dock_widget(widget)
    quick_params(widget.params)
    yield widget
    widget.shutdown()


@pytest.fixture
def errors(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(notify, "show_error", seen.append)
    return seen


def _idle(dock) -> bool:
    return not dock.state.busy and dock.state.predict_queued is None


def _assert_same_weights(got: TrainedModel, want: TrainedModel) -> None:
    """Every tensor of every network of the two models (parameters and buffers) is equal."""
    assert got is not want
    ours, theirs = got.method.state_dict(), want.method.state_dict()
    assert ours.keys() == theirs.keys()
    assert sum(p.numel() for p in want.method.parameters()) > 0
    for key, tensors in theirs.items():
        assert ours[key].keys() == tensors.keys(), key
        for name, tensor in tensors.items():
            assert torch.equal(ours[key][name].cpu(), tensor.cpu()), f"{key}.{name}"


def test_whole_flow_on_the_sample(dock, qtbot, tmp_path, errors):
    viewer = dock.viewer
    labels = viewer.layers["lungs_ct labels"]
    before = np.array(labels.data, copy=True)
    assert dock.data.labelled() == [13, 20, 26]
    assert dock.data.slice_list.count() == 3
    dock.params.method.value = "segpl-vi"
    previews = []
    dock.state.preview.connect(lambda event: previews.append(event.slice_index))
    viewer.dims.set_current_step(2, 17)
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    assert not errors
    assert len(previews) == 3 and set(previews) == {17}  # follows the slice on screen
    pseudo = viewer.layers["pseudo labels"].data
    assert pseudo.shape == labels.data.shape
    assert not pseudo[..., [13, 20, 26]].any()  # filled on unlabelled slices only
    assert dock.model is not None and dock.model.steps_done == 6
    assert "3D network" in dock.training.status.text()  # the lungs are no thin structure: 3D
    assert len(dock.plots.threshold_plot.mu) == 6 and len(dock.plots.loss_plot.steps) == 6

    dock.results.mc_spin.setValue(4)
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: _idle(dock), timeout=60_000)
    for name in ("prediction", "probability", "uncertainty: TTA std of p"):
        assert name in viewer.layers  # the dock's default: TTA (RESULTS.md (x))
    kinds = dock.results.kind_combo
    assert kinds.currentData() == "tta"
    assert [kinds.itemData(i) for i in range(kinds.count())] == ["entropy", "mc", "tta"]
    kinds.setCurrentIndex(kinds.findData("mc"))
    assert "uncertainty: TTA std of p" not in viewer.layers  # the same layer, renamed
    unc = viewer.layers["uncertainty: MC std of 1(p>T)"].data
    assert unc.shape == labels.data.shape and 0 <= unc.min() and unc.max() <= 0.5
    np.testing.assert_array_equal(labels.data, before)  # training never touched user labels

    out = dock.results.export(tmp_path / "pred_labels")
    assert out.name == "pred_labels.nii.gz"
    source = nib.load(viewer.layers["lungs_ct"].metadata["segpl_grid"]["source"])
    saved = nib.load(out)
    np.testing.assert_allclose(saved.affine, source.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), viewer.layers["prediction"].data)
    (reopened,) = viewer.open(out, plugin="napari-segpl")
    assert type(reopened).__name__ == "Labels"
    np.testing.assert_array_equal(reopened.data, viewer.layers["prediction"].data)
    np.testing.assert_allclose(reopened.metadata["segpl_grid"]["affine"], source.affine, atol=1e-6)
    dock.results.confirm_overwrite = lambda path: False
    assert dock.results.export(out) is None  # declined: file left alone
    dock.results.confirm_overwrite = lambda path: True
    assert dock.results.export(out) == out

    viewer.dims.set_current_step(2, 5)
    assert dock.results.accept_current_slice()
    np.testing.assert_array_equal(labels.data[..., 5], viewer.layers["prediction"].data[..., 5])
    np.testing.assert_array_equal(labels.data[..., 6:], before[..., 6:])

    model_path = dock.results.save_model(tmp_path / "m.pt")
    assert model_path.exists()
    saved = TrainedModel.load(model_path)  # the file holds the trained weights, all of them
    _assert_same_weights(saved, dock.model)
    assert saved.config == dock.model.config and saved.steps_done == 6


def test_one_thin_slice_gets_its_recipe_and_the_dock_follows(dock, qtbot, errors):
    """One painted slice of a thin structure: the trainer doubles the steps (with affine maps
    and CutMix), and the status, the progress bar and the plots follow its choice."""
    labels = dock.viewer.layers["lungs_ct labels"]
    thin = np.zeros_like(labels.data)
    thin[60:68, 64, 20] = 1  # 8 pixels of a 128 x 128 slice: thin, so the 2D U-net
    labels.data = thin
    labels.metadata["segpl_labelled_slices"] = [20]  # the sample marks its three slices
    assert dock.data.labelled() == [20]
    dock.params.method.value = "segpl"
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    assert not errors
    assert dock.model is not None and dock.model.config.steps == 12  # 6 in the form
    assert dock.model.steps_done == 12
    status = dock.training.status.text()
    assert "one thin slice" in status and "2D network" in status
    assert dock.training.progress.maximum() == 12 and len(dock.plots.loss_plot.steps) == 12


def test_stop_keeps_the_model(dock, qtbot, errors):
    dock.params.steps.value = 10_000
    assert dock.start_training()
    assert not dock.start_training()  # a second run is refused while one runs
    qtbot.waitUntil(lambda: dock.training.progress.value() >= 2, timeout=60_000)
    dock.runner.stop_training()
    qtbot.waitUntil(lambda: not dock.is_training, timeout=30_000)
    assert 2 <= dock.model.steps_done < 10_000
    qtbot.waitUntil(lambda: _idle(dock), timeout=60_000)
    assert dock.training.progress.format().startswith("stopped: ")
    assert dock.training.progress.format().endswith("pseudo labels filled")
    assert not errors


def test_error_in_worker_is_reported_and_dock_stays_usable(dock, qtbot, errors):
    viewer = dock.viewer
    before = np.array(viewer.layers["lungs_ct labels"].data, copy=True)
    empty = dock.data.new_labels()
    assert empty.data.shape == before.shape and not empty.data.any()
    assert (
        empty.metadata["segpl_grid"]["affine"]
        == viewer.layers["lungs_ct"].metadata["segpl_grid"]["affine"]
    )
    viewer.dims.set_current_step(2, 3)
    dock.data.mark_current(True)  # a whole-background slice: nothing to learn from
    assert dock.data.labelled() == [3]
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=60_000)
    assert errors and "only background" in errors[-1]
    assert dock.training.train_button.isEnabled()
    dock.data.mark_current(False)
    assert dock.data.labelled() == []
    np.testing.assert_array_equal(viewer.layers["lungs_ct labels"].data, before)


def _docked_long_run(make_napari_viewer, qtbot):
    """A viewer with the dock in its window, training a run far too long to end by itself."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segpl", "lungs_ct")
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock)
    dock.params.steps.value = 10_000
    dock.params.patch.value = 64
    dock.params.channels.value = 4
    assert dock.start_training()
    qtbot.waitUntil(lambda: dock.training.progress.value() >= 1, timeout=60_000)
    return viewer, dock, dock.runner.control


def test_closing_the_viewer_mid_run(make_napari_viewer, qtbot):
    viewer, dock, control = _docked_long_run(make_napari_viewer, qtbot)
    viewer.close()
    assert control.done.is_set()  # the worker ended before close returned
    assert not dock.is_training


def test_removing_the_dock_mid_run_stops_the_run(make_napari_viewer, qtbot):
    """napari's remove_dock_widget (the dock's own close button) sends no close event: the
    run must stop anyway rather than go on with no Stop button left."""
    viewer, dock, control = _docked_long_run(make_napari_viewer, qtbot)
    viewer.window.remove_dock_widget(dock)
    assert control.done.is_set() and not dock.is_training


def test_a_shown_dock_watches_its_window_before_any_worker_starts(make_napari_viewer, qtbot):
    """So that a Predict or a Compare started from their own panels stops when the window
    closes, not only a training started by the dock."""
    viewer = make_napari_viewer(show=True)
    dock = SegPLDock(viewer)
    viewer.window.add_dock_widget(dock)
    qtbot.waitUntil(dock.isVisible, timeout=10_000)
    assert dock.window() is viewer.window._qt_window and dock.window() in dock._watched
    dock.shutdown()


def test_closing_during_a_prediction_stops_it(dock, qtbot, monkeypatch, errors):
    """A whole-volume pass (the pseudo-label fill after training, or Predict) still running
    when the window closes used to outlive the dock and abort the process."""
    batches: list[int] = []
    after_stop: list[int] = []  # batches done once the stop was asked (shutdown asks it)

    def slow_fill(trainer, progress=None, should_stop=None, **kwargs):
        for done in range(1, 1001):  # 1000 batches of 10 ms: 10 s unless stopped
            time.sleep(0.01)
            batches.append(done)
            if should_stop():  # as the engine's fill: it ends at the first check after
                after_stop.append(done)
                raise FillStopped(f"pseudo labels stopped after {done} of 1000 batches")
        raise AssertionError("the fill was not stopped")

    monkeypatch.setattr(Trainer, "pseudo_label_volume", slow_fill, raising=False)
    dock.params.steps.value = 1
    assert dock.start_training()
    qtbot.waitUntil(lambda: dock.state.filling, timeout=60_000)  # the fill
    qtbot.waitUntil(lambda: len(batches) >= 3, timeout=10_000)
    assert not after_stop  # nothing has asked it to stop yet
    assert dock.shutdown(timeout=10)
    # the fill ended at its first batch after the stop was asked, not 1000 batches later
    assert len(after_stop) <= 1
    assert dock.runner.predict_worker is None and len(batches) < 1000
    ended = len(batches)
    qtbot.wait(50)
    assert len(batches) == ended  # and no batch ran after shutdown returned
    assert not errors  # stopping is not reported as a failure


def test_a_stopped_prediction_ends_after_its_batch_and_is_not_a_failure(dock, errors, monkeypatch):
    """Predict's worker function stops at the first batch after the stop is asked (the window
    closing); the dock then says "stopped", while a real failure is still reported."""
    model = TrainedModel.new(TrainConfig(dims=2, base_channels=4, depth=2, patch=32), 1)
    image = np.random.default_rng(0).normal(size=(24, 32, 32)).astype(np.float32)
    control = session.RunControl.new()
    batches: list[int] = []

    def stop_after_first(*args, progress, **kwargs):
        def hook(done, total):
            batches.append(done)
            control.stop.set()  # asked while the first batch ran
            progress(done, total)

        return predict_volume(*args, progress=hook, **kwargs)

    monkeypatch.setattr(session, "predict_volume", stop_after_first)
    with pytest.raises(PredictionStopped):
        session.predict(model, image, 0, 0, "cpu", control)
    assert len(batches) == 1 and batches[0] < 24 and control.done.is_set()
    texts: list[str] = []
    dock.state.progress_text.connect(texts.append)
    dock.runner._on_predict_error(PredictionStopped())
    assert texts[-1] == "prediction stopped" and not errors
    dock.runner._on_predict_error(RuntimeError("out of memory"))
    assert errors and "out of memory" in errors[-1] and texts[-1] == "prediction failed"


def test_volume_is_shown_as_a_radiologist_reads_it(dock):
    """The RAS sample sliced along its axial axis: rows anterior up, the patient's right on the
    screen's left; other slicing axes follow, and a plain array keeps the array order."""
    viewer = dock.viewer
    camera = getattr(viewer, "scene", viewer).camera
    orientation = [o.value for o in camera.orientation2d]
    assert tuple(viewer.dims.order) == (2, 1, 0) and orientation == ["up", "left"]
    dock.data.axis_spin.setValue(0)  # sagittal: superior up, anterior on the left
    assert tuple(viewer.dims.order) == (0, 2, 1)
    assert [o.value for o in camera.orientation2d] == ["up", "left"]
    dock.data.axis_spin.setValue(2)
    assert tuple(viewer.dims.order) == (2, 1, 0)
    plain = viewer.add_image(np.zeros((4, 5, 6)), name="plain")
    dock.data.image_combo.setCurrentIndex(dock.data.image_combo.findText(plain.name))
    dock.data.axis_spin.setValue(1)  # no anatomy known: the sliced axis first, the rest kept
    assert viewer.dims.order[0] == 1


def test_loaded_model_predicts_another_volume(dock, qtbot, tmp_path, errors):
    dock.params.steps.value = 2
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    trained = dock.model
    path = dock.results.save_model(tmp_path / "m.pt")
    viewer = dock.viewer
    viewer.layers.clear()
    viewer.open_sample("napari-segpl", "brain_tissue_mri")
    dock.state.set_model(None)
    loaded = dock.results.load_model(path)
    assert loaded is not None and dock.model is loaded
    _assert_same_weights(loaded, trained)  # the dock's model has the saved weights
    assert dock.start_prediction()
    qtbot.waitUntil(lambda: _idle(dock), timeout=60_000)
    image = viewer.layers["brain_tissue_mri"].data
    shown = viewer.layers["prediction"].data
    assert shown.shape == image.shape
    # the same prediction as the saved model's own, made as the dock makes it: along the axis
    # it trained on, labels cut at the configuration's fixed threshold
    model = TrainedModel.load(path)
    learnt = model.method.learns_threshold
    expected = predict_volume(
        model, np.asarray(image), axis=model.config.axis, cut="fixed",
        mc_samples=dock.results.mc_spin.value() if learnt else 0, device=dock.runner.device(),
        tta_samples=dock.results.tta_spin.value() if dock.results.tta_spin.value() >= 2 else 0,
    )  # fmt: skip
    np.testing.assert_array_equal(shown, expected.labels)
    assert not errors


def test_collapse_warning_is_shown(dock, qtbot, monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(notify, "show_warning", warned.append)
    provoke_collapse(dock.params)
    assert dock.start_training()
    qtbot.waitUntil(lambda: _idle(dock), timeout=120_000)
    assert warned and "everything" in warned[0]
    label = dock.training.warning_label
    assert label.isVisibleTo(dock) and "everything" in label.text()
    # every warning of the run stays in the label, not only the last one
    shown = label.text()
    limit = training_panel.MAX_WARNINGS_SHOWN
    assert all(w.removeprefix("SegPL: ") in shown for w in warned[-limit:])
    assert ("earlier warning" in shown) == (len(warned) > limit)
