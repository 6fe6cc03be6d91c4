"""compare_store: a run file written before a configuration field existed still answers the
same request when that field is at its default (as an older model file loads), and only then."""

import dataclasses
import json

import pytest

from napari_segpl.engine import TrainConfig
from napari_segpl.engine.compare_store import RunStore


def _store(tmp_path, config: TrainConfig) -> RunStore:
    return RunStore(tmp_path, {"holdout": [3, 4]}, {"segpl-vi": config})


def test_a_field_added_since_a_run_was_saved_is_taken_at_its_default(tmp_path):
    config = TrainConfig(method="segpl-vi")
    store = _store(tmp_path, config)
    path = store._write(store.path("segpl-vi", 0), config, {"run": {}})
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["request"]["config"]["threshold_fit"]  # as a file of the previous version
    path.write_text(json.dumps(data), encoding="utf-8")

    assert store._read(path, config) is not None  # the default: the same request
    changed = dataclasses.replace(config, threshold_fit="likelihood")
    with pytest.raises(ValueError, match=r"threshold_fit \(saved 'dice', now 'likelihood'\)"):
        store._read(path, changed)
    steps = dataclasses.replace(config, steps=7)  # a field the file holds: compared as before
    with pytest.raises(ValueError, match=r"steps \(saved 300, now 7\)"):
        store._read(path, steps)
