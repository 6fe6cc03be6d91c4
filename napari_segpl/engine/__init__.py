"""The SegPL engine: torch and numpy (MONAI for HD95, imported only when asked). Nothing below
this package imports Qt or napari."""

from .components import keep_painted_parts, paint_note, painted_slices, removed_note
from .config import PRESETS, ConfigError, TrainConfig
from .device import DeviceError, available_devices, resolve_device
from .guard import CollapseWarning
from .inference import (
    Prediction,
    PredictionStopped,
    check_slice_size,
    labels_from_probabilities,
    labels_from_pseudo,
    predict_volume,
    stop_between_batches,
)
from .methods import METHODS, Method, get_method
from .metrics import brier_score, exported_scores, overlap_scores
from .model import CheckpointError, TrainedModel
from .retry import RetriedRun, RetryDecision, RetryEvent
from .safeguard import GuardedTrainer, HeldoutEvent, SafeguardEvent, SafeguardProgress
from .sampling import DataError, TrainingData, labelled_slices, prepare_data
from .trainer import FillStopped, FinishedEvent, PreviewEvent, StepEvent, Trainer, train

__all__ = [
    "METHODS",
    "PRESETS",
    "CheckpointError",
    "CollapseWarning",
    "ConfigError",
    "DataError",
    "DeviceError",
    "FillStopped",
    "FinishedEvent",
    "GuardedTrainer",
    "HeldoutEvent",
    "Method",
    "Prediction",
    "PredictionStopped",
    "PreviewEvent",
    "SafeguardEvent",
    "SafeguardProgress",
    "StepEvent",
    "TrainConfig",
    "TrainedModel",
    "Trainer",
    "TrainingData",
    "available_devices",
    "brier_score",
    "check_slice_size",
    "get_method",
    "keep_painted_parts",
    "labelled_slices",
    "labels_from_probabilities",
    "labels_from_pseudo",
    "exported_scores",
    "overlap_scores",
    "paint_note",
    "painted_slices",
    "predict_volume",
    "prepare_data",
    "removed_note",
    "resolve_device",
    "stop_between_batches",
    "train",
    "RetriedRun",
    "RetryDecision",
    "RetryEvent",
]
