"""What every run started from the dock checks first (Train and Compare alike), so both refuse
the same inputs with the same words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import ConfigError, TrainConfig
from . import notify


def run_inputs(
    state: Any, config_for: Callable[[int, Any], TrainConfig], who: str
) -> tuple[Any, Any, TrainConfig] | None:
    """(image layer, labels layer, configuration) for a run, or None after telling the user
    why not: a layer missing, labels on another grid, or a value no run can use."""
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
    except ConfigError as exc:
        notify.error(f"{who}: {exc}")
        return None
    return image, labels, config
