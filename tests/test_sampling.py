"""Sparse labels, class encoding, input checks and the batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from napari_segpl.engine.config import TrainConfig
from napari_segpl.engine.sampling import (
    DataError,
    Normaliser,
    Sampler,
    encode_target,
    labelled_slices,
    prepare_data,
)


def test_labelled_slices_found_from_painted_voxels():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 2, 3] = 1
    labels[2, 0, 5] = 2
    assert labelled_slices(labels, axis=2) == [3, 5]
    assert labelled_slices(labels, axis=0) == [1, 2]


def test_explicit_slices_count_whole_even_if_empty():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 2, 3] = 1
    assert labelled_slices(labels, axis=2, explicit=[0, 3]) == [0, 3]
    with pytest.raises(DataError, match="outside"):
        labelled_slices(labels, axis=2, explicit=[6])


def test_encode_exclusive_and_nested_classes():
    labels = np.array([0, 1, 2, 3])
    exclusive = encode_target(labels, 3, nested=False)
    np.testing.assert_array_equal(exclusive, [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    nested = encode_target(labels, 3, nested=True)
    # whole tumour (>= 1) contains core (>= 2) contains enhancing (3)
    np.testing.assert_array_equal(nested, [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]])


def test_normaliser_zscore_and_ct_window():
    rng = np.random.default_rng(0)
    vol = rng.normal(300, 50, (10, 10, 10))
    z = Normaliser("zscore")(vol)
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-4
    np.testing.assert_allclose(z, (vol - vol.mean()) / vol.std(), rtol=1e-4, atol=1e-5)
    ct = np.array([-1000.0, 0.0, 40.0, 3000.0])
    clipped = Normaliser("ct", (40.0, 400.0))(ct)
    # -1000 and 0 clip to -160 and stay apart; 3000 clips to 240: the order survives
    assert clipped[0] < clipped[1] < clipped[2] < clipped[3]
    kept = np.array([-160.0, 0.0, 40.0, 240.0])  # level 40, width 400: [-160, 240]
    np.testing.assert_allclose(clipped, (kept - kept.mean()) / kept.std(), rtol=1e-5)


def _data(shape=(40, 30, 12), **config):
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[5:15, 5:15, 3] = 1
    labels[20:30, 10:20, 8] = 2
    cfg = TrainConfig(**config)
    return image, labels, cfg


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda i, lab: (i, np.zeros_like(lab)), "no labelled slice"),
        (lambda i, lab: (i, lab[:-1]), "does not match"),
        (lambda i, lab: (np.where(lab > 0, np.nan, i), lab), "NaN"),
        (lambda i, lab: (i, lab.astype(float) + 0.5 * (lab > 0)), "whole numbers"),
        (lambda i, lab: (i, lab.astype(np.int16) * -1), "negative"),
        (lambda i, lab: (i[..., 0], lab[..., 0]), "3D"),
    ],
)
def test_bad_inputs_are_clear_errors(mutate, message):
    image, labels, cfg = _data()
    image, labels = mutate(image, labels)
    with pytest.raises(DataError, match=message):
        prepare_data(image, labels, cfg)


def test_background_only_and_foreground_only_are_errors():
    image, labels, cfg = _data()
    with pytest.raises(DataError, match="only background"):
        prepare_data(image, labels, cfg, labelled=[0, 1])
    full = np.ones_like(labels)
    with pytest.raises(DataError, match="no background"):
        prepare_data(image, full, cfg)


def test_a_mask_saved_as_0_and_255_is_refused_before_anything_is_built():
    image, labels, cfg = _data()
    binary = np.where(labels > 0, 255, 0).astype(np.uint8)
    with pytest.raises(DataError, match=r"classes \[255\] but no others up to 255.*0 and 1"):
        prepare_data(image, binary, cfg)
    with pytest.raises(DataError, match="at most 255"):
        prepare_data(image, np.where(labels > 0, 300, 0).astype(np.int16), cfg)
    # a class left out of a short numbering is still a numbering (1 and 3 of 3)
    gap = np.where(labels == 2, 3, labels)
    assert prepare_data(image, gap, cfg).num_classes == 3


def test_classes_and_unlabelled_pool():
    image, labels, cfg = _data(axis=2)
    data = prepare_data(image, labels, cfg)
    assert data.labelled == [3, 8] and data.num_classes == 2
    assert data.image.shape == (12, 40, 30)  # slicing axis first
    assert {s for _, s in data.unlabelled} == set(range(12)) - {3, 8}


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("shape", "out"), [((50, 37, 9), (64, 48)), ((200, 181, 9), (176, 176))])
def test_sampler_shapes_for_any_in_plane_size(dims, shape, out):
    image = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[10:20, 10:20, 4] = 1
    cfg = TrainConfig(dims=dims, axis=2, patch=176)
    data = prepare_data(image, labels, cfg)
    sampler = Sampler(data, cfg, np.random.default_rng(0))
    x, y, mask = sampler.labelled_batch(3)
    xu = sampler.unlabelled_batch(5)
    depth = (3,) if dims == 3 else ()
    assert x.shape == (3, 1, *depth, *out)
    assert y.shape == (3, 1, *depth, *out)
    assert xu.shape == (5, 1, *depth, *out)
    assert (mask is None) == (dims == 2)
    if dims == 3:
        assert mask[0, 0, :, 0, 0].tolist() == [0.0, 1.0, 0.0]


def test_sampler_draws_labelled_and_unlabelled_from_the_right_slices():
    shape = (32, 32, 10)
    image = np.broadcast_to(np.arange(10, dtype=np.float32), shape).copy()  # value = slice index
    labels = np.zeros(shape, np.uint8)
    labels[:16, :, [2, 7]] = 1
    cfg = TrainConfig(axis=2, normalisation="zscore")
    data = prepare_data(image, labels, cfg)
    sampler = Sampler(data, cfg, np.random.default_rng(0))
    normalised = np.unique(data.image[:, 0, 0])
    index_of = {round(float(v), 4): i for i, v in enumerate(normalised)}
    x, y, _ = sampler.labelled_batch(20)
    seen_labelled = {index_of[round(float(v), 4)] for v in x[:, 0, 0, 0]}
    assert seen_labelled == {2, 7}
    np.testing.assert_array_equal(y[:, 0, :16], 1.0)
    np.testing.assert_array_equal(y[:, 0, 16:], 0.0)
    xu = sampler.unlabelled_batch(200)
    seen_unlabelled = {index_of[round(float(v), 4)] for v in xu[:, 0, 0, 0]}
    assert seen_unlabelled == set(range(10)) - {2, 7}


def test_extra_unlabelled_volumes_of_another_size():
    image, labels, cfg = _data(axis=2, ratio=4)
    extra = np.full((70, 25, 5), 7.0, np.float32)
    data = prepare_data(image, labels, cfg, unlabelled=[extra])
    assert len(data.unlabelled) == 10 + 5
    sampler = Sampler(data, cfg, np.random.default_rng(1))
    xu = sampler.unlabelled_batch(64)
    assert xu.shape[-2:] == (48, 32)


def test_random_crop_takes_image_and_labels_from_the_same_place():
    """Slices larger than the patch are cropped at random offsets, the image and its labels at
    the same one: each crop is found in its slice by its labels (random per pixel, so the place
    is unique) and the image crop is the normalised image at that place."""
    rng = np.random.default_rng(3)
    shape = (90, 70, 6)
    labels = np.zeros(shape, np.uint8)
    labels[..., [1, 4]] = rng.integers(0, 3, (90, 70, 2))  # classes 0, 1, 2 pixel by pixel
    image = (labels * 10.0 + rng.normal(0, 0.3, shape)).astype(np.float32)
    cfg = TrainConfig(axis=2, patch=32)
    data = prepare_data(image, labels, cfg)
    sampler = Sampler(data, cfg, np.random.default_rng(0))
    mean, std = float(image.mean(dtype=np.float64)), float(image.std(dtype=np.float64))
    cut1, cut2 = (5.0 - mean) / std, (15.0 - mean) / std  # 5 and 15 once normalised
    windows = {s: sliding_window_view(labels[..., s], (32, 32)) for s in (1, 4)}
    places = set()
    for _ in range(10):
        x, y, mask = sampler.labelled_batch(4)
        assert x.shape == (4, 1, 32, 32) and y.shape == (4, 2, 32, 32) and mask is None
        for img, target in zip(x[:, 0], y, strict=True):
            np.testing.assert_array_equal(img > cut1, target.any(axis=0))
            np.testing.assert_array_equal(img > cut2, target[1] == 1)
            crop = target[0] + 2 * target[1]  # back to 0, 1, 2
            found = [
                (s, i, j)
                for s in (1, 4)
                for i, j in np.argwhere((windows[s] == crop).all(axis=(2, 3)))
            ]
            assert len(found) == 1
            s, i, j = found[0]
            np.testing.assert_array_equal(img, data.image[s, i : i + 32, j : j + 32])
            places.add((i, j))
    assert len(places) > 30  # the offsets really are random


def test_3d_stacks_read_the_neighbours_clamped_at_the_edges():
    shape = (32, 32, 10)
    image = np.broadcast_to(np.arange(10, dtype=np.float32), shape).copy()  # value = slice index
    labels = np.zeros(shape, np.uint8)
    labels[:16, :, [0, 5, 9]] = 1
    cfg = TrainConfig(axis=2, dims=3, patch=32)
    data = prepare_data(image, labels, cfg)
    sampler = Sampler(data, cfg, np.random.default_rng(0))
    index_of = {round(float(v), 4): i for i, v in enumerate(np.unique(data.image[:, 0, 0]))}
    x, y, mask = sampler.labelled_batch(30)
    assert x.shape == (30, 1, 3, 32, 32) and y.shape == (30, 1, 3, 32, 32)
    assert mask[0, 0, :, 0, 0].tolist() == [0.0, 1.0, 0.0]
    for stack in x[:, 0]:
        assert all(np.all(sl == sl[0, 0]) for sl in stack)  # each slice whole
    stacks = {tuple(index_of[round(float(v), 4)] for v in s[:, 0, 0]) for s in x[:, 0]}
    assert stacks == {(0, 0, 1), (4, 5, 6), (8, 9, 9)}
    np.testing.assert_array_equal(y[:, 0, :, :16], 1.0)  # the centre's labels, on all three
    np.testing.assert_array_equal(y[:, 0, :, 16:], 0.0)
    xu = sampler.unlabelled_batch(200)
    stacks_u = {tuple(index_of[round(float(v), 4)] for v in s[:, 0, 0]) for s in xu[:, 0]}
    assert stacks_u == {(c - 1, c, c + 1) for c in (1, 2, 3, 4, 6, 7)} | {(7, 8, 9)}
