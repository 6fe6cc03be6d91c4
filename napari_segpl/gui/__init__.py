"""The Qt side of the plugin: a thin dock over the engine (the engine never imports this)."""

from .dock import SegPLDock

__all__ = ["SegPLDock"]
