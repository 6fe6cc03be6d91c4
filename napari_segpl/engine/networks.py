"""The paper's backbones: a 2D U-net (16 channels) and a 3-slice 3D U-net (8 channels).

Both return logits, one channel per class (the paper's "multi-channel sigmoid"), and the last
decoder's feature map, which the SegPL-VI threshold head reads. Instance normalisation is used
rather than batch normalisation because a batch mixes labelled and unlabelled images (2 and 4 by
default, up to 2 and 10 in the paper presets) of different statistics and inference runs on other
batch sizes; per-image statistics behave the same in training and inference. The 3D network
convolves across its 3 slices but pools in-plane only, so a 3-slice stack stays 3 slices deep at
every level.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(dims: int, cin: int, cout: int, kernel: int = 3) -> nn.Module:
    cls = nn.Conv2d if dims == 2 else nn.Conv3d
    return cls(cin, cout, kernel, padding=kernel // 2)


def _norm(dims: int, channels: int) -> nn.Module:
    cls = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
    return cls(channels, affine=True)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by instance normalisation and ReLU."""

    def __init__(self, dims: int, cin: int, cout: int) -> None:
        super().__init__(
            _conv(dims, cin, cout),
            _norm(dims, cout),
            nn.ReLU(inplace=True),
            _conv(dims, cout, cout),
            _norm(dims, cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """A U-net over (N, C, H, W) images (dims=2) or (N, C, 3, H, W) slice stacks (dims=3).

    In-plane sizes must be multiples of ``2**depth``; the sampler and the predictor pad to that.
    """

    def __init__(
        self, dims: int, in_channels: int, out_channels: int, base: int = 16, depth: int = 4
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError("dims must be 2 or 3")
        self.dims, self.depth = dims, depth
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for width in widths:
            self.down.append(ConvBlock(dims, cin, width))
            cin = width
        if dims == 2:
            self.pool: nn.Module = nn.MaxPool2d(2)
            up_cls, k = nn.ConvTranspose2d, 2
        else:
            self.pool = nn.MaxPool3d((1, 2, 2))
            up_cls, k = nn.ConvTranspose3d, (1, 2, 2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for deep, shallow in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.up.append(up_cls(deep, shallow, k, stride=k))
            self.merge.append(ConvBlock(dims, 2 * shallow, shallow))
        self.head = _conv(dims, widths[0], out_channels, kernel=1)
        self.feature_channels = widths[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (logits, last decoder features), both at the input resolution."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x), x


class ThresholdHead(nn.Module):
    """The SegPL-VI head phi: features -> (mu, log sigma) of the threshold T, per image and class.

    As in the paper: average pooling, one 3x3 conv block with normalisation and ReLU, then two
    1x1 convolutions for mu and log sigma, here averaged over space to give one distribution per
    image. mu passes through a sigmoid so that it always lies inside (0, 1), like T itself.
    """

    def __init__(self, dims: int, channels: int, classes: int) -> None:
        super().__init__()
        pool = nn.AvgPool2d(2) if dims == 2 else nn.AvgPool3d((1, 2, 2))
        self.body = nn.Sequential(
            pool, _conv(dims, channels, channels), _norm(dims, channels), nn.ReLU(inplace=True)
        )
        self.mu = _conv(dims, channels, classes, kernel=1)
        self.log_sigma = _conv(dims, channels, classes, kernel=1)
        # Start near T = 0.5 with a moderate spread rather than wherever random weights land.
        for conv, bias in ((self.mu, 0.0), (self.log_sigma, -2.3)):
            nn.init.zeros_(conv.weight)
            nn.init.constant_(conv.bias, bias)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mu, sigma), each (N, classes)."""
        h = self.body(features)
        spatial = tuple(range(2, h.ndim))
        mu = torch.sigmoid(self.mu(h).mean(dim=spatial))
        log_sigma = self.log_sigma(h).mean(dim=spatial).clamp(-9.0, 2.0)
        return mu, log_sigma.exp()


def memory_format(dims: int) -> torch.memory_format:
    """The layout measured fastest on a 2-core CPU for these networks, instance norm included:
    channels_last_3d for the 3D U-net, contiguous for the 2D one (benchmarks/RESULTS.md (z))."""
    return torch.contiguous_format if dims == 2 else torch.channels_last_3d
