"""What every run started from the dock checks first (Train and Compare alike), so both refuse
the same inputs with the same words, before any background thread starts."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..engine import ConfigError, DataError, TrainConfig, labelled_slices
from ..engine.guard import run_dims
from ..engine.sampling import check_in_plane
from . import notify


def run_inputs(
    state: Any,
    config_for: Callable[[int, Any], TrainConfig],
    who: str,
    labelled: Sequence[int] = (),
    holdout: Sequence[int] = (),
) -> tuple[Any, Any, TrainConfig] | None:
    """(image layer, labels layer, configuration) for a run, or None after telling the user
    why not: a layer missing, labels on another grid, a value no run can use, or slices too
    small for the 2D U-net the run would train (the trainer's own check, in its words; with
    ``dims`` 0 the network is chosen from the painted slices as the trainer will choose it).
    ``labelled``, ``holdout``: the slices the run trains on and those it keeps out."""
    image, labels = state.image, state.labels
    if image is None or labels is None:
        notify.error(f"{who}: choose an image layer and a labels layer (or press New labels).")
        return None
    if image.data.shape != labels.data.shape:
        notify.error(
            f"{who}: labels shape {labels.data.shape} does not match image shape "
            f"{image.data.shape}: use New labels to make one on the image's grid."
        )
        return None
    try:
        config = config_for(state.axis, image.data)
        if network(np.asarray(labels.data), config, labelled, holdout) == 2:
            plane = [n for a, n in enumerate(image.data.shape) if a != config.axis]
            check_in_plane(plane, dataclasses.replace(config, dims=2))
    except (ConfigError, DataError) as exc:
        notify.error(f"{who}: {exc}")
        return None
    return image, labels, config


def network(
    labels: np.ndarray, config: TrainConfig, labelled: Sequence[int], holdout: Sequence[int]
) -> int:
    """The ``dims`` the run's Trainer will build (``engine.guard.run_dims``) on the slices the
    worker trains on (``session.training_events``: ``labelled`` less ``holdout``, else the
    painted ones less ``holdout``); 0 when the labels cannot train, which the worker reports
    in its own words, as it does for a fixed network."""
    if config.dims:
        return config.dims
    held = set(holdout)
    slices = [s for s in labelled if s not in held]
    slices = slices or [s for s in labelled_slices(labels, config.axis) if s not in held]
    if not slices:
        return 0
    try:
        return run_dims(labels, config, slices)
    except DataError:
        return 0
