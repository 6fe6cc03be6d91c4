"""Build the small sample volumes shipped in ``resources/`` from ``../shared/data``.

Run from anywhere: ``.venv/bin/python resources/make_samples.py``.
This is the only file in the project that reads the shared data folder;
the package and the tests only read the files written here.

For each sample it writes (NIfTI-1, qform = sform = the physical affine):

* ``<name>_image.nii.gz``        the image
* ``<name>_label_full.nii.gz``   the complete label volume (ground truth for tests)
* ``<name>_label_sparse.nii.gz`` the same labels with only three slices kept
  (along ``axis``; every voxel of a kept slice is annotated, 0 = background)

and a ``samples.json`` describing them. Output is byte-for-byte reproducible
(gzip with a fixed timestamp).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parent.parent / "shared" / "data"
SPARSE_AXIS = 2  # axial slices for both samples (RAS: axis 2 = inferior -> superior)
N_LABELLED = 3


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = nib.load(SOURCE / f"{name}_image.nii.gz")
    label = nib.load(SOURCE / f"{name}_label.nii.gz")
    if not np.allclose(image.affine, label.affine) or image.shape != label.shape:
        raise SystemExit(f"{name}: image and label grids differ")
    return np.asanyarray(image.dataobj), np.asanyarray(label.dataobj), image.affine


def downsample2(
    image: np.ndarray, label: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Halve the grid: 2x2x2 block mean for the image, block majority for the labels.

    A new voxel i covers old voxels 2i and 2i+1, so its centre sits at old index
    2i + 0.5: the affine becomes ``affine @ [[2, 0, 0, .5], [0, 2, 0, .5], ...]``.
    A trailing odd slice is dropped on each axis.
    """
    even = tuple(slice(0, s - s % 2) for s in image.shape)
    image, label = image[even], label[even]
    new_shape = tuple(s // 2 for s in image.shape)

    def blocks(a: np.ndarray) -> np.ndarray:
        a = a.reshape(new_shape[0], 2, new_shape[1], 2, new_shape[2], 2)
        return a.transpose(0, 2, 4, 1, 3, 5).reshape(*new_shape, 8)

    small_image = blocks(image.astype(np.float64)).mean(axis=-1)
    classes = np.arange(int(label.max()) + 1)
    counts = (blocks(label)[..., None] == classes).sum(axis=-2)
    # Ties go to the higher class, so thin structures survive the halving.
    small_label = (len(classes) - 1 - np.argmax(counts[..., ::-1], axis=-1)).astype(np.uint8)

    step = np.diag([2.0, 2.0, 2.0, 1.0])
    step[:3, 3] = 0.5
    new_affine = affine @ step
    # Check: the centre of new voxel (0,0,0) is the mean of its 8 old voxel centres.
    old = np.array([[i, j, k, 1.0] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    assert np.allclose((affine @ old.T).T.mean(axis=0), new_affine[:, 3])
    return small_image, small_label, new_affine


def pick_slices(label: np.ndarray, axis: int, n: int = N_LABELLED) -> list[int]:
    """``n`` slices spread through the range of slices holding every class."""
    others = tuple(a for a in range(3) if a != axis)
    classes = [c for c in np.unique(label) if c != 0]
    holds_all = np.ones(label.shape[axis], dtype=bool)
    for c in classes:
        holds_all &= (label == c).any(axis=others)
    candidates = np.flatnonzero(holds_all)
    first, last = candidates[0], candidates[-1]
    wanted = [first + (last - first) * (i + 1) / (n + 1) for i in range(n)]
    return [int(candidates[np.argmin(np.abs(candidates - w))]) for w in wanted]


def sparse(label: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    out = np.zeros_like(label)
    index = [slice(None)] * 3
    index[axis] = slices
    out[tuple(index)] = label[tuple(index)]
    return out


def save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_data_dtype(array.dtype)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        gz.write(img.to_bytes())


def main() -> None:
    samples: dict[str, dict] = {}

    # CT: the full lungs volume fits easily once stored as int16.
    image, label, affine = load("lungs_ct")
    assert image.min() >= np.iinfo(np.int16).min and image.max() <= np.iinfo(np.int16).max
    samples["lungs_ct"] = dict(
        display_name="Chest CT, lungs (SegPL sample)",
        modality="CT",
        units="HU",
        image=image.astype(np.int16),
        label=label.astype(np.uint8),
        affine=affine,
        classes={"0": "background", "1": "right lung", "2": "left lung"},
        licence="MIT (slicerio 1.4.0 wheel, Copyright (c) 2021 Andras Lasso); "
        "no separate licence is stated for the CT itself",
        provenance="shared/data/lungs_ct (slicerio 1.4.0: slicerio/data/CTChest4.nrrd and "
        "slicerio/data/Segmentation.seg.nrrd; 5 -> 1 right lung, 6 -> 2 left lung)",
        processing="full 128x128x34 grid kept, image int32 -> int16 (values in range)",
    )

    # MRI: halve the grid to keep the file small.
    image, label, affine = load("brain_tissue_mri")
    small_image, small_label, small_affine = downsample2(image, label, affine)
    samples["brain_tissue_mri"] = dict(
        display_name="Brain T1 MRI, grey/white matter (SegPL sample)",
        modality="MRI",
        units="arbitrary (0-255)",
        image=np.clip(np.rint(small_image), 0, 255).astype(np.uint8),
        label=small_label,
        affine=small_affine,
        classes={"0": "background", "1": "grey matter", "2": "white matter"},
        licence="nilearn 0.14.1 (BSD-3-Clause code); nilearn's description of the ICBM152 "
        "2009 template says 'License: unknown'",
        provenance="shared/data/brain_tissue_mri (nilearn 0.14.1: MNI ICBM152 2009a T1 "
        "template, label = argmax of the grey/white matter probability maps)",
        processing="2x2x2 downsampling (image: block mean, labels: block majority, ties to "
        "the higher class; trailing odd slice dropped); affine updated so that each new voxel "
        "centre is the mean of the 8 source voxel centres",
    )

    index: dict[str, object] = {
        "about": "Sample volumes for napari-segpl, written by resources/make_samples.py. "
        "Sparse label files keep only `labelled_slices` along `axis` (array axis as loaded "
        "by nibabel); in those slices every voxel is annotated (0 = background), all other "
        "slices are unlabelled.",
        "samples": {},
    }
    for name, s in samples.items():
        files = {
            "image": f"{name}_image.nii.gz",
            "label_sparse": f"{name}_label_sparse.nii.gz",
            "label_full": f"{name}_label_full.nii.gz",
        }
        slices = pick_slices(s["label"], SPARSE_AXIS)
        save(s["image"], s["affine"], HERE / files["image"])
        save(s["label"], s["affine"], HERE / files["label_full"])
        save(sparse(s["label"], SPARSE_AXIS, slices), s["affine"], HERE / files["label_sparse"])
        spacing = np.sqrt((s["affine"][:3, :3] ** 2).sum(axis=0))
        index["samples"][name] = {
            "display_name": s["display_name"],
            "modality": s["modality"],
            "units": s["units"],
            "files": files,
            "shape": list(s["image"].shape),
            "spacing": [round(float(v), 6) for v in spacing],
            "affine": [[round(float(v), 6) for v in row] for row in s["affine"]],
            "axis": SPARSE_AXIS,
            "labelled_slices": slices,
            "classes": s["classes"],
            "licence": s["licence"],
            "provenance": s["provenance"],
            "processing": s["processing"],
        }
        sizes = {k: (HERE / f).stat().st_size for k, f in files.items()}
        print(name, s["image"].shape, "slices", slices, sizes)

    (HERE / "samples.json").write_text(json.dumps(index, indent=2) + "\n")


if __name__ == "__main__":
    main()
