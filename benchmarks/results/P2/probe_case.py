"""The case both (P2) probes train on: K = 3 painted slices of a shared volume, the default
preset for its intensities, one method at one seed."""

import numpy as np

from benchmarks.accuracy import DATASETS, load_case
from napari_segpl.engine import TrainConfig
from napari_segpl.engine.components import painted_slices
from napari_segpl.engine.config import suggest_preset


def probe_case(name: str, method: str, seed: int) -> dict:
    axis = DATASETS[name]
    image, truth, chosen, sparse, _ = load_case(name, axis, 3)
    preset = suggest_preset(image.array)
    return {
        "axis": axis, "image": image, "truth": truth, "chosen": chosen, "sparse": sparse,
        "paint": painted_slices(sparse, chosen, axis),
        "classes": [int(c) for c in np.unique(truth) if c],
        "config": TrainConfig.from_preset(
            preset, method=method, axis=axis, seed=seed, preview_every=0
        ),
    }  # fmt: skip
