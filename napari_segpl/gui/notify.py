"""The one place the dock's panels tell the user something through napari's notifications.

Every panel calls these instead of napari's ``show_*`` directly, so a test can catch every
message of the dock by patching this module alone."""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info, show_warning


def error(message: str) -> None:
    show_error(message)


def info(message: str) -> None:
    show_info(message)


def warning(message: str) -> None:
    show_warning(message)
