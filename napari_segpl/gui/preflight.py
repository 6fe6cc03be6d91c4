"""What every run started from the dock checks first (Train and Compare alike), so both refuse
the same inputs with the same words, before any background thread starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import ConfigError, DataError, TrainConfig
from ..engine.sampling import check_in_plane
from . import notify


def run_inputs(
    state: Any, config_for: Callable[[int, Any], TrainConfig], who: str
) -> tuple[Any, Any, TrainConfig] | None:
    """(image layer, labels layer, configuration) for a run, or None after telling the user
    why not: a layer missing, labels on another grid, a value no run can use, or slices too
    small for the 2D U-net chosen (the trainer's own check, in its words; with ``dims`` 0 the
    network is chosen from the painted slices in the worker, which says it the same way)."""
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
        if config.dims == 2:
            check_in_plane([n for a, n in enumerate(image.data.shape) if a != config.axis], config)
    except (ConfigError, DataError) as exc:
        notify.error(f"{who}: {exc}")
        return None
    return image, labels, config
