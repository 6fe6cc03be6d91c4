"""Every registered method trains a few steps through `segpl train` on the CT sample shipped in
resources/ and writes a mask on the source grid (issue 24's check that each is usable)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from test_cli import CT, CT_SPARSE

from napari_segpl.cli import main
from napari_segpl.engine import METHODS, TrainedModel

TINY = ["--steps", "2", "--patch", "32", "--channels", "4", "--ratio", "1", "--dims", "2"]
#: the method's own model is saved: the safeguard (on by default) would keep a supervised twin
#: in place of a 2-step model that lost a class (tests/test_cli_safeguard.py checks it)
TINY += ["--no-safeguard"]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_and_writes_a_mask(method, tmp_path):
    model, mask = tmp_path / "m.pt", tmp_path / "mask.nii.gz"
    extra = ["--param", "members=2"] if method == "ensemble" else []
    args = ["train", str(CT), str(CT_SPARSE), "--method", method, "--model", str(model)]
    assert main([*args, "--mask", str(mask), "--quiet", *TINY, *extra]) == 0
    saved = TrainedModel.load(model)
    assert saved.config.method == method and saved.steps_done >= 2
    source, out = nib.load(CT), nib.load(mask)
    assert out.shape == source.shape and np.allclose(out.affine, source.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2}
