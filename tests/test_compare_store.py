"""compare_store: a run file written before a configuration field existed, or while a lever
since removed was still there and off, answers the same request (as an older model file
loads), and only then."""

import dataclasses
import json

import pytest

from napari_segpl.engine import TrainConfig
from napari_segpl.engine.compare_store import RunStore


def _saved(tmp_path, config: TrainConfig, **edit) -> tuple[RunStore, object]:
    """A run file of ``config`` whose saved configuration is then edited (None: key deleted)."""
    store = RunStore(tmp_path, {"holdout": [3, 4]}, {"segpl-vi": config})
    path = store._write(store.path("segpl-vi", 0), config, {"run": {}})
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in edit.items():
        if value is None:
            del data["request"]["config"][key]
        else:
            data["request"]["config"][key] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    return store, path


def test_a_field_added_since_a_run_was_saved_is_taken_at_its_default(tmp_path):
    config = TrainConfig(method="segpl-vi")
    store, path = _saved(tmp_path, config, mix=None)  # as a file from before "mix" existed
    assert store._read(path, config) is not None  # the default: the same request
    with pytest.raises(ValueError, match=r"mix \(saved 0.0, now 0.5\)"):
        store._read(path, dataclasses.replace(config, mix=0.5))
    with pytest.raises(ValueError, match=r"steps \(saved 300, now 7\)"):  # compared as before
        store._read(path, dataclasses.replace(config, steps=7))


def test_a_lever_removed_since_counts_only_where_it_was_off(tmp_path):
    config = TrainConfig(method="segpl-vi")
    store, path = _saved(tmp_path / "off", config, threshold_fit="dice")
    assert store._read(path, config) is not None
    store, path = _saved(tmp_path / "on", config, threshold_fit="likelihood")
    refused = r"another request: threshold_fit = 'likelihood': a removed lever"
    with pytest.raises(ValueError, match=refused):
        store._read(path, config)
