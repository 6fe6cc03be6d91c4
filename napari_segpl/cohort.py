"""A cohort for ``segpl predict --out``: many volumes on Dask's distributed scheduler.

Each scan of a cohort is a task on a Dask worker that reads its own input and writes its own
mask (atomically): volumes never travel through the scheduler. The model is scattered to every
worker once (``broadcast=True``) and each task gets the worker's copy. An input that names no
volume stops the cohort before any work (``--out`` is not made); a scan that fails is reported
and the others go on; a mask present, stamped by this input and model, is skipped: a stopped
run resumes. Dask and torch are imported only when a cohort runs (quick --help). Masks are
named in ``cohort_names.py``."""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib

from .cohort_names import MASK_SUFFIX, mask_names, out_folder
from .cohort_start import started_seeing_ctrl_c
from .volume import is_supported

__all__ = [
    "MASK_SUFFIX",
    "CohortReport",
    "Outcome",
    "Settings",
    "find_volumes",
    "mask_names",
    "named_volumes",
    "run_cohort",
]

# One prediction at a time per worker process: every task on a worker shares its one copy of
# the model, which predict_volume moves to the device and back.
_PREDICT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Settings:
    """How a cohort runs (the flags of ``segpl predict --out``); tasks get a copy."""

    overwrite: bool = False
    workers: int | None = None  # local workers (default: default_workers)
    threads: int | None = None  # torch threads per worker
    scheduler: str | None = None  # an existing cluster's address
    device: str = "auto"
    axis: int | None = None
    batch_size: int = 8
    series: str | None = None
    progress: bool = True


@dataclass
class Outcome:
    """What became of one input: ``written``, ``skipped`` (mask present) or ``failed``."""

    source: str
    target: Path | None
    status: str
    message: str = ""
    seconds: float = 0.0
    worker: str = ""
    model_id: int = 0  # id() of the worker's model copy: one per worker (the tests check it)


@dataclass
class CohortReport:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def summary(self) -> str:
        """One line: what was done, and every failure named before it, in the bar's output."""
        written, skipped, failed = map(self.count, ("written", "skipped", "failed"))
        text = f"{written} written, {skipped} skipped (present), {failed} failed of "
        text += f"{len(self.outcomes)} volumes in {self.seconds:.1f} s"
        return text + ("; --overwrite redoes present masks" if skipped else "")


def find_volumes(
    patterns: Sequence[str | Path], exclude: Path | None = None
) -> tuple[list[Path], list[Outcome]]:
    """Each volume the arguments name, in order, once: a file, a DICOM folder, and inside other
    folders (recursively) and glob matches the NIfTI, MHA/MHD, NRRD files and DICOM folders.
    A search skips hidden names (a killed write's ``.part`` file) and the masks in ``exclude``
    (``--out``, which may hold the scans: ``--out .``). What names nothing comes back failed."""
    skip = exclude.resolve() if exclude is not None else None
    found: list[Path] = []
    missing: list[Outcome] = []
    for text in map(str, patterns):
        path = Path(text)
        if path.exists():
            matches, named = [path], True
        elif set("*?[") & set(text):
            matches, named = [Path(m) for m in sorted(glob.glob(text, recursive=True))], False
            if not matches:
                missing.append(Outcome(text, None, "failed", "no file matches"))
                continue
        else:
            missing.append(Outcome(text, None, "failed", "file not found"))
            continue
        before = len(found)
        for match in matches:
            if match.is_dir():
                found.extend(v for v in _volumes_in_folder(match) if not _skipped(v, skip))
            elif named or (is_supported(match) and not _skipped(match, skip)):
                found.append(match)  # a file named outright is tried whatever it is
        if len(found) == before:
            missing.append(Outcome(text, None, "failed", "no volume found there"))
    unique: dict[Path, Path] = {}
    for p in found:
        unique.setdefault(p.resolve(), p)
    return list(unique.values()), missing


def named_volumes(patterns: Sequence[str | Path], exclude: Path | None = None) -> list[Path]:
    """``find_volumes``' volumes, or a ValueError naming every input that names none: a typo in
    a cohort's list stops the command before any work, not as one volume failed of fewer."""
    found, missing = find_volumes(patterns, exclude)
    if missing:  # the one-image form's words for a missing file: "<path>: file not found"
        said = (f"no file matches '{o.source}'" if o.message == "no file matches"
                else f"{o.source}: {o.message}" for o in missing)  # fmt: skip
        raise ValueError("; ".join(said))
    return found


def _skipped(path: Path, skip: Path | None) -> bool:
    """A search result left out: a hidden name, or a mask in the ``skip`` folder itself."""
    if path.name.startswith("."):
        return True
    return skip is not None and path.name.endswith(MASK_SUFFIX) and path.parent.resolve() == skip


def _volumes_in_folder(folder: Path) -> list[Path]:
    if is_supported(folder):  # a folder holding DICOM files is one volume
        return [folder]
    volumes = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        kept = []
        for d in (d for d in dirs if not d.startswith(".")):
            (volumes if is_supported(Path(root, d)) else kept).append(Path(root, d))
        dirs[:] = [d.name for d in kept]  # do not walk into a DICOM folder
        volumes += [Path(root, f) for f in sorted(files) if is_supported(Path(root, f))]
    return sorted(volumes)


def predict_one(
    model: Any, source: str, target: str, settings: Settings, stamp: str = ""
) -> dict[str, Any]:
    """A Dask task: a scan read, predicted and its mask written (stamped, whole); errors too."""
    import torch

    from ._cli_support import check_slices
    from .engine import predict_volume
    from .volume import read_volume, write_nifti

    start = time.perf_counter()
    worker, device = _on_worker(settings.device)
    out: dict[str, Any] = {"worker": worker, "model_id": id(model), "message": ""}
    try:
        if settings.threads:
            torch.set_num_threads(settings.threads)
        image = read_volume(source, settings.series)
        check_slices(model, image, settings.axis)
        with _PREDICT_LOCK:
            pred = predict_volume(model, image.array, axis=settings.axis,
                                  batch_size=settings.batch_size, device=device,
                                  probabilities=False)  # masks only  # fmt: skip
        write_nifti(pred.labels, image, target, description=stamp)  # "segpl MODEL INPUT"
        out.update(status="written", message=image.note)
    except Exception as exc:  # any reason a volume cannot be done is reported, not raised
        first = (str(exc).strip().splitlines() or [""])[0]
        message = first if isinstance(exc, ValueError) else f"{type(exc).__name__}: {first}"
        out.update(status="failed", message=message)
    out["seconds"] = time.perf_counter() - start
    return out


def _not_this(target: Path, stamp: str) -> str:
    """Why the mask present at ``target`` is not this input's by this model ('' when it is, or
    without a stamp: an older run's), as masks are named by file name alone."""
    try:
        found = nib.load(target).header["descrip"].item().decode(errors="replace").split()
    except Exception:  # not a NIfTI file we can read: not ours to judge
        return ""
    if len(found) != 3 or found[0] != "segpl" or found == stamp.split():
        return ""
    if found[2] != stamp.split()[2]:
        return f"{target} holds the mask of another scan of this name; --overwrite replaces it"
    return f"{target} was predicted by another model; --overwrite redoes it"


def _as_typed(result: dict[str, Any], sent: str, source: Path) -> dict[str, Any]:
    """The task's result with the absolute path it was sent (``sent``) written back as the
    user named the input: _failure_line then sees the message name it, and names it once."""
    message = result.get("message")
    if isinstance(message, str) and sent != str(source):
        result = {**result, "message": message.replace(sent, str(source))}
    return result


def _failure_line(outcome: Outcome) -> str:
    """``failed: <input>: <reason>``, the input named once (volume errors name it already)."""
    named = outcome.message.startswith(outcome.source)
    return f"failed: {'' if named else outcome.source + ': '}{outcome.message}"


def _on_worker(device: str) -> tuple[str, str]:
    """This worker's address and device: with ``auto``, local worker N takes GPU N (mod count)."""
    import torch
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:  # called outside a worker (a test of the task itself)
        return "", device
    if device == "auto" and torch.cuda.is_available():
        index = worker.name if isinstance(worker.name, int) else 0
        device = f"cuda:{index % torch.cuda.device_count()}"
    return str(worker.address), device


def cpu_cores() -> int:
    """The cores this process may use (a container or taskset may allow fewer than exist)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def default_workers(device: str) -> int:
    """One worker per GPU when predicting on CUDA (one on a GPU named), else a few CPU ones."""
    import torch

    name = (device or "auto").strip().lower()
    if name.startswith("cuda:"):
        return 1
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, min(4, cpu_cores()))


def local_cluster(workers: int, threads: int) -> Any:
    """A LocalCluster of ``workers`` single-task processes, each with ``threads`` torch
    threads; no memory limit (a big scan must not get its worker killed), any free port."""
    from distributed import LocalCluster

    env = {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    return LocalCluster(
        n_workers=workers, threads_per_worker=1, memory_limit=0, env=env,
        silence_logs=logging.CRITICAL, dashboard_address=":0",
    )  # fmt: skip


def run_cohort(
    model_path: str | Path, images: Sequence[str | Path], out: str | Path,
    settings: Settings = Settings(), echo: Callable[[str], None] | None = None,
) -> CohortReport:  # fmt: skip
    """Predict every volume ``images`` name into ``out``; returns what became of each."""
    from .engine import TrainedModel

    start = time.perf_counter()
    echo = echo or (lambda line: print(line, file=sys.stderr))
    out = Path(out)
    sources = named_volumes(images, exclude=out)  # before DIR is made: a refusal leaves none
    model = TrainedModel.load(model_path)  # a bad model file is the user's error: stop here
    with out_folder(out):  # made here; removed again if this stops (Ctrl-C) with it empty
        if not os.access(out, os.W_OK | os.X_OK):
            raise ValueError(f"--out {out}: cannot write in this folder")
        digest = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()[:16]
        inputs = {p.resolve() for p in sources}
        report_list: list[Outcome] = []
        jobs: list[tuple[Path, Path, str]] = []
        for source, name in zip(sources, mask_names(sources), strict=True):
            real = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16]
            target, stamp = out / name, f"segpl {digest} {real}"  # the masks' descrip
            if target.resolve() in inputs:
                report_list.append(
                    Outcome(str(source), target, "failed", "mask would overwrite input")
                )
            elif target.exists() and not settings.overwrite:
                why = _not_this(target, stamp)
                report_list.append(
                    Outcome(str(source), target, "failed" if why else "skipped", why)
                )
            else:
                jobs.append((source, target, stamp))
        report = CohortReport(report_list)
        for failed in (o for o in report_list if o.status == "failed"):
            echo(_failure_line(failed))
        if jobs:
            _run_jobs(model, jobs, settings, report, echo)
        report.seconds = time.perf_counter() - start
        return report


def send_model(client: Any, model: Any) -> Any:
    """The model to every worker now, once each (not with every task): tasks get its future."""
    return client.scatter(model, broadcast=True)


def _run_jobs(
    model: Any, jobs: list[tuple[Path, Path, str]], settings: Settings, report: CohortReport,
    echo: Callable[[str], None],
) -> None:  # fmt: skip
    """Submit one task per job and gather outcomes as they finish; leaving (Ctrl-C included)
    closes the client and the local cluster: the masks written so far stay, whole."""
    import torch
    from distributed import Client, as_completed
    from tqdm import tqdm

    with ExitStack() as stack:
        if settings.scheduler is None:
            n = settings.workers or default_workers(settings.device)
            settings = replace(settings, threads=settings.threads or max(1, cpu_cores() // n))
            start = partial(local_cluster, min(n, len(jobs)), settings.threads)
            stopping = partial(_say_stopping, echo, 0, len(jobs), "they were starting")
            cluster = stack.enter_context(started_seeing_ctrl_c(start, stopping))
            client = stack.enter_context(Client(cluster))
        else:
            client = stack.enter_context(Client(settings.scheduler))
            if settings.threads is None:  # each worker's thread count: one prediction at a time
                client.run(lambda dask_worker: torch.set_num_threads(dask_worker.state.nthreads))
        shared = send_model(client, model)
        futures = {}
        for s, t, stamp in jobs:  # absolute paths: a cluster's workers may run elsewhere
            paths = (str(s.absolute()), str(t.absolute()))
            futures[client.submit(predict_one, shared, *paths, settings, stamp, pure=False)] = s, t
        bar = tqdm(total=len(jobs), unit="volume", file=sys.stderr, dynamic_ncols=True,
                   disable=not settings.progress, desc="predict")  # fmt: skip
        say = bar.write if settings.progress else echo
        try:
            for future in as_completed(futures):
                source, target = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the task never ran to its end: a worker died
                    result = {"status": "failed", "message": f"{type(exc).__name__}: {exc}"}
                result = _as_typed(result, str(source.absolute()), source)
                outcome = Outcome(str(source), target, **result)
                report.outcomes.append(outcome)
                if outcome.status == "failed":
                    say(_failure_line(outcome))
                elif outcome.message:
                    say(f"note: {outcome.message}")
                bar.update(1)
        except KeyboardInterrupt:
            _say_stopping(echo, report.count("written"), len(jobs), "tasks under way may still end")
            client.cancel(list(futures))
            raise
        finally:
            bar.close()


def _say_stopping(echo: Callable[[str], None], written: int, total: int, why: str) -> None:
    echo(f"\nCtrl-C: stopping the workers ({written} of {total} masks reported so far; {why})")
