"""Big scans in little memory (issue 26): the same results as before, with fewer whole copies.

Each saving is checked twice: the result is bit for bit what the former code gave (its
formulas are restated here as references), and the numpy memory it allocates (tracemalloc sees
numpy's arrays, not torch's) stays under what a whole float32 copy of the volume would take.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from conftest import make_toy_volume

from napari_segpl.engine import TrainConfig, TrainedModel, predict_volume, prepare_data, sampling
from napari_segpl.engine.sampling import Normaliser

SMALL = {"base_channels": 4, "depth": 2, "patch": 32, "device": "cpu", "preview_every": 0}


def old_normalise(volume: np.ndarray, kind: str, window=(40.0, 400.0)) -> np.ndarray:
    """The former ``Normaliser.__call__``: the whole volume in float32, then new arrays."""
    data = np.asarray(volume, dtype=np.float32)
    if kind == "ct":
        level, width = window
        data = np.clip(data, level - width / 2, level + width / 2)
    mean, std = float(data.mean()), float(data.std())
    return (data - mean) / (std if std > 1e-8 else 1.0)


def volumes() -> dict[str, np.ndarray]:
    """Layouts a reader can hand over: NIfTI's Fortran order, C order, views of both."""
    rng = np.random.default_rng(7)
    ct = np.asfortranarray(rng.normal(40, 400, (61, 47, 33)).astype(np.int16))
    return {
        "int16, Fortran order": ct,
        "axis moved (a view)": np.moveaxis(ct, 2, 0),
        "flipped": ct[::-1],
        "every 3rd row": ct[:, ::3],
        "float64, C order": rng.normal(1e4, 5e3, (40, 50, 30)),
        "constant": np.full((20, 30, 10), 7.0, np.float32),
    }


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 256 voxels, so that toy volumes are summed in many pieces."""
    monkeypatch.setattr(sampling, "CHUNK", 256)


@pytest.mark.parametrize("kind", ["ct", "zscore"])
@pytest.mark.parametrize("name", list(volumes()))
def test_normalised_volume_is_bit_identical(small_chunks, kind: str, name: str) -> None:
    volume = volumes()[name]
    expected = old_normalise(volume, kind)
    got = Normaliser(kind)(volume)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected, strict=True)
    for axis in range(3):  # what training holds: the slicing axis first, C order
        moved = Normaliser(kind).axis_first(volume, axis, slices=4)
        assert moved.flags.c_contiguous
        np.testing.assert_array_equal(moved, np.moveaxis(expected, axis, 0), strict=True)


def test_statistics_of_a_volume_bigger_than_a_chunk() -> None:
    """The real chunk size, on a volume of 5 million voxels (two levels of halving)."""
    rng = np.random.default_rng(1)
    volume = np.asfortranarray(rng.normal(-200, 600, (256, 256, 160)).astype(np.int16))
    assert volume.size > 2 * sampling.CHUNK
    data = np.clip(volume.astype(np.float32), -160, 240)
    assert Normaliser("ct").statistics(volume) == (float(data.mean()), float(data.std()))


def test_normalising_holds_one_float32_copy_at_most(small_chunks) -> None:
    volume = np.asfortranarray(np.random.default_rng(0).normal(0, 300, (64, 64, 40)))
    volume = volume.astype(np.int16)
    whole = volume.size * 4  # bytes of one float32 copy
    tracemalloc.start()
    try:
        Normaliser("ct").statistics(volume)
        stats_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        Normaliser("ct").axis_first(volume, 2, slices=4)
        moved_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert stats_peak < whole / 20  # the former code: four copies
    assert moved_peak < whole * 1.2  # the result, and a few slices


def test_prepare_data_holds_the_same_image(small_chunks) -> None:
    image, labels = make_toy_volume((40, 36, 18))
    image = np.asfortranarray((image * 4 - 400).astype(np.int16))
    config = TrainConfig(normalisation="ct", axis=1, **SMALL)
    data = prepare_data(image, labels, config, unlabelled=[image[:, :, ::-1]])
    expected = np.moveaxis(old_normalise(image, "ct", config.ct_window), 1, 0)
    np.testing.assert_array_equal(data.image, expected, strict=True)
    flipped = np.moveaxis(old_normalise(image[:, :, ::-1], "ct", config.ct_window), 1, 0)
    np.testing.assert_array_equal(data.unlabelled_volumes[0], flipped, strict=True)


def old_predict(model: TrainedModel, image: np.ndarray, axis: int, batch: int, cut: str):
    """The former ``predict_volume`` without Monte-Carlo samples, restated with numpy and the
    method's network alone (none of the package's inference helpers): the whole volume
    normalised and padded at its far in-plane edges to a multiple of 2**depth with its minimum,
    slices (3D: each one between its neighbours, clamped at the ends) batched through the
    U-net, sigmoid, the centre slice of a 3D output, cropped back, labels cut, then copied to
    the input's grid."""
    config, method = model.config, model.method
    volume = np.moveaxis(old_normalise(image, config.normalisation, config.ct_window), axis, 0)
    n, h, w = volume.shape
    m = 2**config.depth
    pad = ((0, 0), (0, (m - h % m) % m), (0, (m - w % m) % m))
    padded = np.pad(volume, pad, mode="constant", constant_values=volume.min())
    k = model.num_classes
    prob = np.empty((k, n, h, w), np.float32)
    mu = np.empty((k, n), np.float32)
    # the weights in the layout predict_volume puts them in (it calls method.to): kernels for
    # another layout may round differently in the last bit on some CPUs (an AMD EPYC here)
    method.to(torch.device("cpu"))
    method.train(False)
    layout = torch.channels_last_3d if config.dims == 3 else torch.contiguous_format
    for start in range(0, n, batch):
        slices = np.arange(start, min(start + batch, n))
        if config.dims == 2:  # (b, 1, H, W)
            x = padded[slices][:, None]
        else:  # (b, 1, 3, H, W): slices s-1, s, s+1, clamped to the volume
            rows = np.clip(slices[:, None] + np.array([-1, 0, 1]), 0, n - 1)
            x = padded[rows][:, None]
        with torch.no_grad():
            logits, feats = method.model(torch.from_numpy(x).contiguous(memory_format=layout))
            p = torch.sigmoid(logits.float())
            if config.dims == 3:
                p = p[:, :, 1]  # the centre slice of each stack
            prob[:, slices] = p[..., :h, :w].numpy().transpose(1, 0, 2, 3)
            if cut == "mu":  # SegPL-VI's threshold head on the same features
                mu[:, slices] = method.head(feats)[0].float().numpy().T
    # mu: a threshold for each class and slice; fixed: the configuration's, for every class
    threshold = np.broadcast_to(
        mu[:, :, None, None] if cut == "mu" else np.float32(config.threshold), prob.shape
    )
    labels = np.zeros((n, h, w), np.uint8)
    if config.nested:  # the highest class above its threshold
        for c in range(k):
            labels[prob[c] > threshold[c]] = c + 1
    else:  # the most probable class (the first of ties), if above its own threshold
        best = np.full((n, h, w), -np.inf, np.float32)
        for c in range(k):
            better = prob[c] > best
            best[better] = prob[c][better]
            labels[better] = np.where(prob[c][better] > threshold[c][better], c + 1, 0)
    return (
        np.ascontiguousarray(np.moveaxis(labels, 0, axis)),
        np.ascontiguousarray(np.moveaxis(prob, 1, 1 + axis)),
        mu if cut == "mu" else None,
    )


CASES = [  # method, dims, normalisation, axis, cut, nested; 50 x 44 is padded to 52 x 44
    ("segpl", 3, "ct", 2, "fixed", False),
    ("segpl", 2, "zscore", 0, "fixed", False),
    ("segpl-vi", 3, "zscore", 1, "mu", False),
    ("segpl-vi", 2, "ct", 0, "mu", True),
]


@pytest.mark.parametrize(("method", "dims", "norm", "axis", "cut", "nested"), CASES)
def test_prediction_is_bit_identical(small_chunks, method, dims, norm, axis, cut, nested) -> None:
    image, _ = make_toy_volume((50, 44, 22))
    image = np.asfortranarray((image * 4 - 400).astype(np.int16))
    config = TrainConfig(
        method=method, dims=dims, normalisation=norm, axis=axis, nested=nested, **SMALL
    )
    torch.manual_seed(0)  # the weights must not depend on the tests run before
    model = TrainedModel.new(config, 2)  # random weights: probabilities on both sides of 0.5
    if cut == "mu":  # the head starts at mu = 0.5 for all: random mu, per slice and class
        torch.nn.init.normal_(model.method.head.mu.weight, std=0.3)
    # one thread: with two, oneDNN may pick another convolution algorithm for the old and the
    # new code's differently laid-out batches, and results then differ in the last bit
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_bit_identical(image, model, cut)
    finally:
        torch.set_num_threads(threads)


def _check_bit_identical(image: np.ndarray, model: TrainedModel, cut: str) -> None:
    axis = model.config.axis
    labels, prob, mu = old_predict(model, image, axis, 5, cut)
    assert 0 < (labels > 0).mean() < 1
    full = predict_volume(model, image, batch_size=5, device="cpu", cut=cut)
    if cut == "mu":  # a threshold of each slice and class, not the fixed one
        assert (labels != old_predict(model, image, axis, 5, "fixed")[0]).any()
        np.testing.assert_array_equal(full.mu, mu, strict=True)
    np.testing.assert_array_equal(full.labels, labels, strict=True)
    np.testing.assert_array_equal(full.probabilities, prob, strict=True)
    assert full.labels.flags.c_contiguous and full.probabilities.flags.c_contiguous
    mask_only = predict_volume(
        model, image, batch_size=5, device="cpu", cut=cut, probabilities=False
    )
    assert mask_only.probabilities is None
    np.testing.assert_array_equal(mask_only.labels, labels, strict=True)


def test_a_mask_alone_needs_no_whole_float32_array(small_chunks) -> None:
    """Predicting labels only allocates (in numpy) less than one float32 copy of the volume;
    the former code held the normalised volume and K probabilities in float32, and more."""
    image, _ = make_toy_volume((64, 64, 120))
    image = np.asfortranarray(image.astype(np.int16))
    config = TrainConfig(method="segpl", dims=3, **SMALL)
    model = TrainedModel.new(config, 2)
    predict_volume(model, image[:, :, :8], device="cpu")  # warm up torch's own allocations
    tracemalloc.start()
    try:
        pred = predict_volume(model, image, batch_size=4, device="cpu", probabilities=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pred.labels.dtype == np.uint8
    assert peak < 0.6 * image.size * 4, f"{peak / 1e6:.1f} MB"


def _scaled_nifti(path, raw: np.ndarray, slope: float, inter: float):
    """An uncompressed NIfTI storing ``raw`` with scl_slope and scl_inter set in its header
    (nibabel's writer would choose its own scaling, so the header bytes are patched)."""
    import struct

    import nibabel as nib

    nib.save(nib.Nifti1Image(raw, np.eye(4)), path)
    blob = bytearray(path.read_bytes())
    struct.pack_into("<ff", blob, 112, slope, inter)  # scl_slope, scl_inter
    path.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize(
    ("slope", "inter", "dtype"),
    [(1.0, -1024.0, np.int16), (10.0, -1024.0, np.int32), (0.5, 0.0, np.float64)],
)
def test_whole_scaled_voxels_are_read_as_integers(tmp_path, slope, inter, dtype) -> None:
    """A CT stored as uint16 with intercept -1024 reads as int16 (2 bytes a voxel), not as
    nibabel's float64 (8), with the same values; a fractional slope stays float64."""
    import nibabel as nib

    from napari_segpl.volume import read_volume

    raw = np.random.default_rng(0).integers(0, 4096, (20, 16, 12)).astype(np.uint16)
    path = _scaled_nifti(tmp_path / "ct.nii", raw, slope, inter)
    expected = nib.load(path).get_fdata()
    assert expected.min() < 0 or slope != 1.0  # the intercept is applied
    volume = read_volume(path)
    assert volume.array.dtype == dtype
    np.testing.assert_array_equal(volume.array, expected)
