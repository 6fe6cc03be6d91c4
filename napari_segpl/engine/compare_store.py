"""A compare's finished runs on disk, one file each, so a stopped compare keeps them.

A compare of every method trains for hours on a CPU; if only the final table were written, a
Ctrl-C, a kill or a crash in the last method would lose every finished run. ``RunStore`` writes
each (method, seed) run the moment it is scored to ``OUT/runs/METHOD-sSEED.json`` (to a
temporary name beside it, then renamed: ``atomic.write_atomically``), with everything the
table, plots and results.json need (``RunResult``'s fields but the cost ratio, which is
recomputed over every run) and the request it answered: the run's whole training
configuration (steps, the preset's values, the method's parameters), the preset's name, the
labelled and held-out slices, the scoring options, and the image's and labels' path, shape and
a digest of their voxels. The supervised run trained for the cost ratio alone (no supervised
among the methods) is kept the same way, in ``OUT/runs/supervised-reference.json``.

A resumed compare (``segpl compare --resume``) loads a saved run instead of training it only
when the saved request equals the current one; otherwise ``load`` raises ``ValueError`` naming
what differs, so runs of two different requests are never mixed in one table. Every file names
the process that timed it (``process``), because step times measured in different processes
(another day, another machine load) are less comparable: ``processes`` counts them for the
table's footnote.

Stdlib and NumPy only (no Qt, napari or torch here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import write_atomically

if TYPE_CHECKING:
    from .compare import RunResult
    from .config import TrainConfig

#: the folder under ``--out`` that holds the run files
RUNS = "runs"
#: the supervised run timed for the cost ratio alone
REFERENCE = "supervised-reference.json"
#: bumped when a run file's layout changes, so an old one is refused rather than misread
FORMAT = 1
_FLOATS = ("brier", "ece", "seconds_per_step", "seconds")
_FLOAT_LISTS = ("iou", "dice", "ood", "adversarial", "hd95")


def plain(value: Any) -> Any:
    """Plain JSON types (NaN and inf become None, tuples lists, NumPy numbers Python's)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _nan(values: Sequence[Any] | None) -> list[float] | None:
    return None if values is None else [float("nan") if v is None else float(v) for v in values]


#: how HD95 counted slices when a run was scored: "either" (a slice holding the class in the
#: prediction or the truth; in one only, its diagonal). Runs without it (before 0f6b8b7)
#: counted only slices holding it in both.
HD95_RULE = "either"


def scored_before_hd95_rule(run: Mapping[str, Any]) -> bool:
    """A run record (JSON) scored before records carried ``HD95_RULE``."""
    return run.get("hd95_rule") != HD95_RULE


def old_hd95_note(runs: Sequence[str], why: str = "") -> str:
    """What a table over ``runs`` (named "method sSEED") scored under the old rule must say."""
    return f"HD95 of {', '.join(runs)}{why} counts only slices holding the class in both"


def run_to_json(run: RunResult) -> dict[str, Any]:
    """A run's fields in plain JSON, without the cost ratio (it depends on the other runs)."""
    return plain(dataclasses.asdict(run) | {"cost_ratio": None, "hd95_rule": HD95_RULE})


def run_from_json(data: Mapping[str, Any]) -> RunResult:
    """Inverse of ``run_to_json``: None back to NaN where a number was not finite."""
    from .compare import RunResult  # here: compare imports this module

    values = {k: v for k, v in data.items() if k != "hd95_rule"}
    for key in _FLOATS:
        values[key] = float("nan") if values[key] is None else float(values[key])
    for key in _FLOAT_LISTS:
        values[key] = _nan(values.get(key))
    for name in ("calibration", "calibration_mc"):  # the MC bins: SegPL-VI's, since (pp)
        if values.get(name) is not None:
            bins = dict(values[name])
            values[name] = bins | {k: _nan(bins[k]) for k in ("mean_p", "freq")}
    return RunResult(**values)


def digest(array: np.ndarray) -> str:
    """A short fingerprint of an array's voxels, dtype and shape (another scan, same name)."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{array.dtype.str}{array.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return h.hexdigest()


def volume_identity(array: np.ndarray, path: Path | str | None, **more: Any) -> dict[str, Any]:
    """What names a compared volume in a request: its path, shape and digest (and ``more``)."""
    where = None if path is None else str(Path(path).resolve())
    return {"path": where, "shape": list(array.shape), "digest": digest(array), **more}


def _flat(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``name (saved X, now Y)`` for every setting that differs between two requests."""
    a, b = _flat(saved), _flat(now)
    names = {"config.extra": "method parameters", "labelled": "labelled slices",
             "holdout": "held-out slices", "config.steps": "steps"}  # fmt: skip
    return [f"{names.get(k, k)} (saved {a.get(k, 'absent')!r}, now {b.get(k, 'absent')!r})"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]  # fmt: skip


def completed(request: Mapping[str, Any]) -> dict[str, Any]:
    """A saved request with its configuration read through ``TrainConfig.from_dict``, as an
    older model file loads: fields added since take their defaults and levers removed since
    are dropped where they were off, so a run made before or after an option came or went at
    its default answers the same request. A removed lever that was on raises ConfigError."""
    from .config import TrainConfig

    config = request.get("config")
    if not isinstance(config, Mapping):
        return dict(request)
    return {**request, "config": plain(TrainConfig.from_dict(dict(config)).to_dict())}


class RunStore:
    """``OUT/runs/``: save each scored run at once, load the saved ones (module docstring).

    ``shared``: the request every run of this compare shares (slices, volumes, scoring);
    ``configs``: each method's configuration (``check_request``), seed and preview aside."""

    def __init__(
        self, out: Path, shared: Mapping[str, Any], configs: Mapping[str, TrainConfig]
    ) -> None:
        self.folder = Path(out) / RUNS
        self.shared = plain(dict(shared))
        self.configs = dict(configs)
        self.process = uuid.uuid4().hex[:12]
        #: the process that timed each run used (loaded or saved), by file name
        self.timed_by: dict[str, str] = {}
        #: loaded runs scored before run files said their HD95 rule (``HD95_RULE``)
        self.old_hd95: list[str] = []

    def path(self, method: str, seed: int) -> Path:
        return self.folder / f"{method}-s{seed}.json"

    def existing(self) -> list[Path]:
        """The run files already in the folder, of any request."""
        found = self.folder.glob("*.json") if self.folder.is_dir() else []
        return sorted(p for p in found if not p.name.startswith("."))  # not a temporary file

    def request(self, config: TrainConfig) -> dict[str, Any]:
        """The whole request one run answers (its configuration as the trainer got it)."""
        run = dataclasses.replace(config, preview_every=0)
        return plain(self.shared | {"config": run.to_dict()})

    def _write(self, path: Path, config: TrainConfig, body: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        saved = time.strftime("%Y-%m-%d %H:%M:%S")
        data = {"format": FORMAT, "process": self.process, "saved": saved,
                "request": self.request(config), **body}  # fmt: skip
        text = json.dumps(data, indent=1, allow_nan=False) + "\n"
        write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self.timed_by[path.name] = self.process
        return path

    def _read(self, path: Path, config: TrainConfig) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--resume: cannot read {path}: {exc}") from None
        if data.get("format") != FORMAT:
            raise ValueError(f"--resume: {path} is not a run file of this version of segpl")
        try:
            diff = differences(completed(data.get("request", {})), self.request(config))
        except ValueError as exc:  # ConfigError: a removed lever that was on, an unknown key
            diff = [str(exc)]
        if diff:
            raise ValueError(
                f"--resume: {path} was made for another request: {'; '.join(diff)}. "
                "Give the same options, or choose another --out"
            )
        self.timed_by[path.name] = str(data.get("process"))
        return data

    def save(self, run: RunResult) -> Path:
        """Write one scored run (its cost ratio left out)."""
        config = dataclasses.replace(self.configs[run.method], seed=run.seed)
        return self._write(self.path(run.method, run.seed), config, {"run": run_to_json(run)})

    def load(self, method: str, seed: int) -> RunResult | None:
        """The saved run of (method, seed), None if there is none; ValueError when it was
        made for another request or cannot be read."""
        config = dataclasses.replace(self.configs[method], seed=seed)
        data = self._read(self.path(method, seed), config)
        if data is not None and scored_before_hd95_rule(data["run"]):
            self.old_hd95.append(f"{method} s{seed}")
        return None if data is None else run_from_json(data["run"])

    def _reference_config(self, seed: int) -> TrainConfig:
        any_config = next(iter(self.configs.values()))
        return dataclasses.replace(any_config, method="supervised", seed=seed, extra={})

    def save_reference(self, seconds_per_step: float, seed: int) -> Path:
        """Keep the s/step of the supervised run trained for the cost ratio alone."""
        body = {"seconds_per_step": seconds_per_step}
        return self._write(self.folder / REFERENCE, self._reference_config(seed), body)

    def load_reference(self, seed: int) -> float | None:
        """The saved supervised s/step for the ratio, None if there is none."""
        data = self._read(self.folder / REFERENCE, self._reference_config(seed))
        return None if data is None else float(data["seconds_per_step"])

    def processes(self, names: Sequence[str]) -> int:
        """How many processes timed the runs saved under these file names."""
        return len({self.timed_by[n] for n in names if n in self.timed_by})


__all__ = ["REFERENCE", "RUNS", "RunStore", "plain", "run_from_json", "run_to_json"]
