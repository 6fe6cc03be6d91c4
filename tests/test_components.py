"""Keeping only the predicted parts connected to the paint (engine/components.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_segpl.engine.components import (
    keep_painted_parts,
    paint_note,
    painted_slices,
    removed_note,
)


def _by_labelling(labels: np.ndarray, paint: dict[int, np.ndarray], axis: int) -> np.ndarray:
    """An independent computation: label every 26-connected part, keep those whose label
    appears under a voxel painted that class."""
    out = labels.copy()
    for c in {int(v) for p in paint.values() for v in np.unique(p) if v}:
        parts, _ = ndimage.label(labels == c, structure=np.ones((3, 3, 3)))
        keep = set()
        for s, p in paint.items():
            keep |= set(np.unique(np.take(parts, s, axis=axis)[p == c]).tolist())
        keep.discard(0)
        out[(labels == c) & ~np.isin(parts, sorted(keep))] = 0
    return out


def test_hand_example_drops_the_unpainted_blob_and_keeps_the_painted_one():
    labels = np.zeros((6, 6, 10), np.uint8)
    labels[1:3, 1:3, 0:6] = 1  # a column through slices 0-5, painted on slice 2
    labels[4:6, 4:6, 8:10] = 1  # a look-alike on slices 8-9, touching no paint
    labels[0, 5, 1:4] = 2  # class 2, not painted at all: left alone
    paint = {2: np.zeros((6, 6), np.uint8)}
    paint[2][1, 1] = 1
    out = labels.copy()
    removed = keep_painted_parts(out, paint, axis=2)
    assert removed == {1: 8}
    assert (out[4:6, 4:6, 8:10] == 0).all()
    assert (out[1:3, 1:3, 0:6] == 1).all()
    assert (out[0, 5, 1:4] == 2).all()


def test_corner_contact_keeps_a_part_as_26_connectivity_says():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = labels[1, 1, 1] = labels[2, 2, 2] = 1  # a diagonal chain of corners
    paint = {0: np.zeros((4, 4), np.uint8)}
    paint[0][0, 0] = 1
    out = labels.copy()
    assert keep_painted_parts(out, paint, axis=2) == {1: 0}
    assert (out == labels).all()


def test_paint_the_prediction_misses_keeps_nothing_of_that_class():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0:2, 0:2, :] = 1
    paint = {1: np.zeros((4, 4), np.uint8)}
    paint[1][3, 3] = 1  # painted where the network predicts background
    out = labels.copy()
    assert keep_painted_parts(out, paint, axis=2) == {1: 16}
    assert not out.any()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_matches_labelling_every_part_on_random_volumes(axis):
    rng = np.random.default_rng(axis)
    smooth = ndimage.gaussian_filter(rng.random((20, 24, 18)), 1.5)
    labels = np.digitize(smooth, np.quantile(smooth, [0.55, 0.8])).astype(np.uint8)
    paint = painted_slices(labels, [3, 9], axis)
    for p in paint.values():  # paint only some of each slice's voxels, as a user would
        p[rng.random(p.shape) < 0.7] = 0
    out = labels.copy()
    removed = keep_painted_parts(out, paint, axis=axis)
    expected = _by_labelling(labels, paint, axis)
    np.testing.assert_array_equal(out, expected)
    for c, n in removed.items():
        assert n == int(((labels == c) & (expected != c)).sum())


def test_nested_classes_fall_to_the_class_that_holds_them():
    labels = np.zeros((5, 5, 8), np.uint8)
    labels[0:2, 0:2, 0:3] = 2  # region >= 1 and >= 2, painted as 2 on slice 1
    labels[3:5, 3:5, 5:8] = 2  # an unpainted part of both regions
    labels[3:5, 3:5, 4] = 1  # ... touching an unpainted part of region 1 only
    paint = {1: np.zeros((5, 5), np.uint8)}
    paint[1][0, 0] = 2
    out = labels.copy()
    removed = keep_painted_parts(out, paint, axis=2, nested=True)
    assert removed == {1: 16, 2: 0}  # the part went with region 1; nothing left for 2
    assert (out[0:2, 0:2, 0:3] == 2).all()
    assert (out[3:5, 3:5, 4:8] == 0).all()  # region 1's unpainted part removed, region 2 with it


def test_a_slice_that_does_not_fit_is_refused():
    labels = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        keep_painted_parts(labels, {1: np.zeros((3, 4), np.uint8)}, axis=2)
    with pytest.raises(ValueError, match="does not fit"):
        keep_painted_parts(labels, {4: np.zeros((4, 4), np.uint8)}, axis=2)


def test_note_says_what_was_removed():
    assert removed_note(None) == ""
    assert "nothing removed" in removed_note({1: 0})
    assert "class 2: 37 voxels" in removed_note({1: 0, 2: 37})
    assert "class 1: 1 voxel" in removed_note({1: 1}) and "voxels" not in removed_note({1: 1})


def test_compare_scores_the_masks_an_export_writes_with_paint_of_trained_slices_only(
    monkeypatch,
):
    """Compare's held-out IoU is that of the export's mask: each class kept where it touches
    the paint of the slices trained on, never the held-out slices' paint (their truth)."""
    from conftest import make_toy_volume

    from napari_segpl.engine import TrainConfig, predict_volume
    from napari_segpl.engine import compare as compare_module

    image, labels = make_toy_volume((32, 28, 12))
    config = TrainConfig.from_preset(
        "ct", normalisation="zscore", dims=2, steps=4, base_channels=4, depth=2, device="cpu"
    )
    seen: list = []

    def spy(*args, **kwargs):
        pred = predict_volume(*args, **kwargs)
        seen.append((args[0], kwargs.get("paint"), pred))
        return pred

    monkeypatch.setattr(compare_module, "predict_volume", spy)
    out = compare_module.compare(
        image, labels, config, ["supervised"], [3, 8], labelled=[1, 3, 5, 8, 10], surface=False
    )
    (_, paint, pred), run = seen[0], out.runs[0]
    assert sorted(paint) == [1, 5, 10]  # the held-out 3 and 8 seed nothing
    for s in paint:
        np.testing.assert_array_equal(paint[s], labels[..., s])
    assert pred.removed is not None
    held = np.take(pred.labels, [3, 8], axis=2)
    truth = np.take(labels, [3, 8], axis=2)
    for c, iou in enumerate(run.iou, start=1):
        union = ((held == c) | (truth == c)).sum()
        assert iou == pytest.approx(((held == c) & (truth == c)).sum() / union if union else 1.0)


def test_a_class_predicted_only_away_from_its_painted_slices_is_removed_whole():
    """The class's box misses the painted slice: nothing seeds it, every part goes."""
    labels = np.zeros((6, 6, 10), np.uint8)
    labels[1:4, 1:4, 5:8] = 1
    labels[0:2, 4:6, 0:3] = 2  # class 2's box holds the painted slice 1
    paint = {1: np.zeros((6, 6), np.uint8)}
    paint[1][2, 2] = 1  # class 1 painted on slice 1, where nothing of it is predicted
    paint[1][0, 5] = 2
    out = labels.copy()
    assert keep_painted_parts(out, paint, axis=2) == {1: 27, 2: 0}
    assert not (out == 1).any() and (out[0:2, 4:6, 0:3] == 2).all()


def test_paint_note_names_each_painted_class_with_no_voxel():
    labels = np.zeros((4, 4, 6), np.uint8)
    paint = {2: np.array([[1, 2, 0, 0]] * 4, np.uint8), 4: np.zeros((4, 4), np.uint8)}
    labels[:, 0, :] = 1  # class 1 as painted, on every slice
    assert paint_note(labels, paint, axis=2) == (
        "class 2 painted but nowhere in the mask: the model did not learn it, so the mask is "
        "incomplete; check it before use"
    )
    labels[:, 1, :] = 2
    assert paint_note(labels, paint, axis=2) == ""
    paint[4][0, 0], labels[0, 0, 4] = 3, 0
    assert paint_note(labels, paint, axis=2).startswith("class 3 painted but nowhere")
    none = paint_note(np.zeros_like(labels), paint, axis=2)
    assert none.startswith("classes 1, 2, 3 painted") and "does not match" not in none
    # nested classes: class 2's region holds every label >= 2, so a 3 there counts for it
    paint = {2: np.array([[1, 2, 0, 0]] * 4, np.uint8)}
    labels[:, 1, :] = 3
    assert paint_note(labels, paint, axis=2, nested=True) == ""
    assert paint_note(labels, paint, axis=2).startswith("class 2 painted but nowhere")


def test_paint_note_names_a_class_the_mask_gives_another_class_on_the_painted_slices():
    """The two lungs: the right one painted 2, the mask labels most of it 1 on the painted
    slices (slice 5 along axis 0), which the note names with its Dice against the paint."""
    paint = {5: np.zeros((8, 10), np.uint8)}
    paint[5][2:6, 1:4], paint[5][2:6, 6:9] = 1, 2  # 12 voxels each
    labels = np.zeros((9, 8, 10), np.uint8)
    labels[:, 2:6, 1:4] = 1
    labels[:, 2:6, 6:9] = 1  # the right lung taken by class 1 ...
    labels[:, 2:4, 8] = 2  # ... but for 2 voxels: Dice 2 * 2 / (2 + 12) = 0.29
    # class 1: 12 painted, 24 labelled, 12 shared: Dice 24 / 36 = 0.67, above 0.5
    note = paint_note(labels, paint, axis=0)
    assert note.startswith("the mask does not match your paint on the painted slices (Dice ")
    assert "class 2 0.29)" in note and "class 1" not in note
    labels[:, 2:6, 6:8] = 2  # 8 of 12 voxels: Dice 16 / 20 = 0.8
    assert paint_note(labels, paint, axis=0) == ""
    labels[:, 2:6, 6:8] = 1
    # the same volume with the painted slices along axis 2: the same note
    assert paint_note(labels.transpose(1, 2, 0), paint, axis=2) == paint_note(labels, paint, 0)
    assert "class 2 0.29)" in paint_note(labels, paint, 0)


def test_predict_names_a_missing_class_whether_parts_are_kept_or_not(monkeypatch):
    """``keep_parts=False`` leaves every predicted part (as without paint) but still names a
    painted class the mask lacks; with parts kept the unpainted blob goes too."""
    from conftest import set_model_labels

    from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume
    from napari_segpl.engine.methods import get_method

    shape = (12, 10, 6)
    fixed = np.zeros(shape, np.uint8)
    fixed[1:4, 1:4, :] = 1  # touches the paint on slice 2
    fixed[8:11, 6:9, :] = 1  # a blob of class 1 that does not
    set_model_labels(monkeypatch, lambda p, _: fixed[..., : p.shape[1]].transpose(2, 0, 1).copy())
    config = TrainConfig(dims=2, axis=2, base_channels=4, depth=2)
    model = TrainedModel(get_method("supervised")(config, 2), config, 2, 0)
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    paint = {2: np.zeros(shape[:2], np.uint8)}
    paint[2][2, 2], paint[2][6, 2] = 1, 2  # class 2 painted where nothing of it is predicted
    kept = predict_volume(model, image, paint=paint)
    every = predict_volume(model, image, paint=paint, keep_parts=False)
    plain = predict_volume(model, image)
    assert kept.removed == {1: 54, 2: 0} and not kept.labels[8:11, 6:9].any()
    np.testing.assert_array_equal(every.labels, fixed)
    np.testing.assert_array_equal(every.labels, plain.labels)
    assert every.removed is None and plain.removed is None
    # the note reads the exported labels: the unpainted blob, removed or not, counts on slice 2
    assert kept.paint_note == paint_note(kept.labels, paint, axis=2)
    assert every.paint_note == paint_note(fixed, paint, axis=2) != kept.paint_note
    assert every.paint_note.startswith("class 2 painted but nowhere") and plain.paint_note == ""
