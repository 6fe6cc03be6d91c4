"""Packaging checks: manifest, entry points, sample data and the reader (no viewer needed)."""

from __future__ import annotations

import configparser
import importlib
import json
from importlib.metadata import entry_points, version
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from npe2 import PluginManifest
from packaging.requirements import Requirement

import napari_segpl
from napari_segpl import _reader, _sample_data
from napari_segpl.volume import NIFTI_EXTENSIONS, SITK_EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari.yaml"
SAMPLES = json.loads((ROOT / "resources" / "samples.json").read_text(encoding="utf-8"))["samples"]


@pytest.fixture(scope="module")
def manifest() -> PluginManifest:
    return PluginManifest.from_file(MANIFEST)


def test_manifest_is_valid_and_named(manifest: PluginManifest) -> None:
    assert manifest.name == "napari-segpl"
    assert manifest.display_name == "SegPL"
    # from_file validates against npe2's schema; also resolve every python_name.
    for command in manifest.contributions.commands:
        module_name, _, attr = command.python_name.partition(":")
        assert callable(getattr(importlib.import_module(module_name), attr)), command.id


def test_manifest_contributes_reader_writers_and_samples(manifest: PluginManifest) -> None:
    contributions = manifest.contributions
    command_ids = {c.id for c in contributions.commands}
    (reader,) = contributions.readers
    assert reader.command in command_ids
    assert reader.accepts_directories
    patterns = set(reader.filename_patterns)
    for ext in NIFTI_EXTENSIONS + SITK_EXTENSIONS:
        assert f"*{ext}" in patterns, ext
    writers = {w.command: w for w in contributions.writers}
    for kind in ("labels", "image"):
        writer = writers[f"napari-segpl.write_{kind}"]
        assert [str(t) for t in writer.layer_types] == [kind]
        assert writer.filename_extensions == [".nii.gz", ".nii"]
    several = [w for w in contributions.writers if w.command == "napari-segpl.write_layers"]
    assert [w.filename_extensions for w in several] == [[".nii.gz", ".nii"], []]
    assert all([str(t) for t in w.layer_types] == ["image*", "labels*"] for w in several)
    sample_keys = {s.key for s in contributions.sample_data}
    assert sample_keys == set(SAMPLES)
    assert {s.command for s in contributions.sample_data} <= command_ids


def test_package_manifest_is_the_top_level_one() -> None:
    packaged = Path(napari_segpl.__file__).parent / "napari.yaml"
    assert packaged.read_bytes() == MANIFEST.read_bytes()


def test_installed_entry_point_finds_the_manifest() -> None:
    (ep,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-segpl"]
    assert ep.value == "napari_segpl:napari.yaml"
    installed = PluginManifest.from_distribution("napari-segpl")
    assert installed.name == "napari-segpl"
    assert {c.id for c in installed.contributions.commands} == {
        c.id for c in PluginManifest.from_file(MANIFEST).contributions.commands
    }


def test_version_and_requirements_match_what_is_installed() -> None:
    """One version, read from the package by setup.cfg and reported by the installed
    distribution; every requirement of setup.cfg is installed at a version it allows (the
    torch pin included), so the tests run against what a user installs."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: napari_segpl.__version__"
    assert version("napari-segpl") == napari_segpl.__version__
    lines = [line.split("#")[0].strip() for line in cfg["options"]["install_requires"].split("\n")]
    requirements = [Requirement(line) for line in lines if line]
    assert "torch" in {r.name for r in requirements}
    for requirement in requirements:
        installed = version(requirement.name)
        assert requirement.specifier.contains(installed, prereleases=True), (
            f"{requirement} but {installed} is installed"
        )


def test_resources_stay_small() -> None:
    total = sum(p.stat().st_size for p in (ROOT / "resources").iterdir() if p.is_file())
    assert total < 2_000_000


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_layers(name: str) -> None:
    info = SAMPLES[name]
    layers = getattr(_sample_data, name)()
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels"]
    (image, image_kw, _), (labels, labels_kw, _) = layers
    assert image.shape == labels.shape == tuple(info["shape"])
    assert np.issubdtype(labels.dtype, np.integer)
    for kw in (image_kw, labels_kw):
        np.testing.assert_allclose(kw["scale"], info["spacing"], rtol=1e-6)
        np.testing.assert_allclose(kw["translate"], np.array(info["affine"])[:3, 3], atol=1e-4)
        np.testing.assert_allclose(
            kw["metadata"]["segpl_grid"]["affine"], info["affine"], atol=1e-4
        )
        assert kw["metadata"]["segpl_grid"]["shape"] == list(info["shape"])

    axis = info["axis"]
    other = tuple(a for a in range(3) if a != axis)
    labelled = np.flatnonzero(labels.any(axis=other)).tolist()
    assert labelled == info["labelled_slices"]
    assert len(labelled) == 3
    assert labels_kw["metadata"]["segpl_labelled_slices"] == labelled

    # The sparse slices are exact copies of the full ground truth, with every class present.
    full = _sample_data.load_sample(name, full_labels=True)[1][0]
    assert set(np.unique(full)) == {int(k) for k in info["classes"]}
    index = [slice(None)] * 3
    index[axis] = labelled
    np.testing.assert_array_equal(labels[tuple(index)], full[tuple(index)])
    assert (full > 0).any(axis=other).sum() > len(labelled)


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, affine), path)


def test_reader_opens_nifti_image_and_labels(tmp_path: Path) -> None:
    affine = np.array(
        [[0.8, 0, 0, -10.0], [0, 0.8, 0, 20.0], [0, 0, 2.5, -30.0], [0, 0, 0, 1]], dtype=float
    )
    rng = np.random.default_rng(0)
    image = rng.normal(size=(6, 5, 4)).astype(np.float32)
    labels = (image > 0).astype(np.uint8)
    image_path, label_path = tmp_path / "case.nii.gz", tmp_path / "case_label.nii"
    _write_nifti(image_path, image, affine)
    _write_nifti(label_path, labels, affine)

    assert _reader.get_reader(str(tmp_path / "notes.txt")) is None
    reader = _reader.get_reader(str(image_path))
    assert callable(reader)

    ((data, kwargs, layer_type),) = reader(str(image_path))
    assert layer_type == "image"
    np.testing.assert_allclose(data, image)
    assert kwargs["name"] == "case"
    np.testing.assert_allclose(kwargs["scale"], [0.8, 0.8, 2.5], rtol=1e-6)
    np.testing.assert_allclose(kwargs["translate"], [-10.0, 20.0, -30.0], atol=1e-5)
    np.testing.assert_allclose(kwargs["metadata"]["segpl_grid"]["affine"], affine, atol=1e-5)
    assert kwargs["metadata"]["segpl_grid"]["source"] == str(image_path)
    assert isinstance(kwargs["metadata"]["segpl_header"], nib.Nifti1Header)

    ((data, kwargs, layer_type),) = _reader.get_reader(str(label_path))(str(label_path))
    assert layer_type == "labels"
    assert kwargs["name"] == "case_label"
    np.testing.assert_array_equal(data, labels)


def test_reader_keeps_float_segmentation_as_image(tmp_path: Path) -> None:
    path = tmp_path / "probability_seg.nii.gz"
    _write_nifti(path, np.full((3, 3, 3), 0.5, dtype=np.float32), np.eye(4))
    ((_, _, layer_type),) = _reader.get_reader(str(path))(str(path))
    assert layer_type == "image"
