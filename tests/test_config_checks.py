"""TrainConfig.validate refuses what no run can use, before any training starts."""

from __future__ import annotations

import pytest

from napari_segpl.engine import TrainConfig
from napari_segpl.engine.config import ConfigError


def test_a_patch_the_unet_cannot_halve_depth_times_is_refused():
    """--patch 100 with depth 4 cropped images wider than it to 100 x 100, and the U-net's
    skip connections failed to rejoin (25 against 24) in the first step."""
    with pytest.raises(ConfigError, match="patch must be a multiple of 16"):
        TrainConfig(patch=100, depth=4).validate()
    TrainConfig(patch=96, depth=4).validate()
    with pytest.raises(ConfigError, match="multiple of 4"):
        TrainConfig(patch=30, depth=2).validate()
