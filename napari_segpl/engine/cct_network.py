"""The U-net of cross-consistency training (CCT): one shared trunk, a main decoder and
auxiliary decoders that each read a perturbed copy of the trunk's features.

CCT (Ouali et al., CVPR 2020) shares the encoder and gives each decoder only the last block:
here everything of our ``UNet`` up to the last decoder block (encoder, bottleneck and every
decoder block but the last) is the shared trunk, and the main decoder is the U-net's own last
block (``merge[-1]``) and 1x1 head. An auxiliary decoder is a copy of that block and head, fed
with the trunk's features (the upsampled deep features concatenated with the first skip
connection) after one perturbation of CCT's feature-level kinds: multiplicative uniform noise,
channel dropout, or dropping the most activated region. With three auxiliary decoders this adds
21 075 parameters to the 2D U-net of 16 channels (1 943 761 -> 1 964 836); the SegPL paper's
U-net grew by 20.0 K (626.7 K -> 646.7 K).

``forward`` is the plain U-net's (main decoder only), so prediction, the EMA teacher and every
front end treat this network as a ``UNet``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .networks import ConvBlock, UNet, _conv

#: CCT's feature-noise range: features times (1 + u), u uniform in [-0.3, 0.3].
NOISE_RANGE = 0.3
#: CCT's spatial dropout rate.
DROP_RATE = 0.5
#: CCT's feature drop: positions whose mean activation exceeds a fraction, uniform in this
#: range, of the image's largest are zeroed.
FEATURE_DROP_RANGE = (0.7, 0.9)


def feature_noise(x: torch.Tensor) -> torch.Tensor:
    """``x + x * u``, u uniform in [-0.3, 0.3] of shape ``x.shape[1:]``, one draw shared by
    the batch as in CCT."""
    u = torch.empty(x.shape[1:], device=x.device, dtype=x.dtype)
    u.uniform_(-NOISE_RANGE, NOISE_RANGE)
    return x + x * u.unsqueeze(0)


def feature_dropout(x: torch.Tensor) -> torch.Tensor:
    """Whole channels zeroed with probability 0.5 (the rest scaled by 2), per image."""
    drop = F.dropout2d if x.ndim == 4 else F.dropout3d
    return drop(x, DROP_RATE, training=True)


def feature_drop(x: torch.Tensor) -> torch.Tensor:
    """CCT's feature drop: the channel-mean activation is the attention; positions whose
    attention reaches ``gamma`` times the image's largest (gamma uniform in [0.7, 0.9], one draw
    a batch) are zeroed in every channel, so the decoder must work without the most salient
    region."""
    attention = x.mean(dim=1, keepdim=True)
    peak = attention.flatten(1).max(dim=1).values
    gamma = torch.empty((), device=x.device, dtype=x.dtype).uniform_(*FEATURE_DROP_RANGE)
    threshold = (peak * gamma).reshape((-1,) + (1,) * (x.ndim - 1))
    return x * (attention < threshold).to(x.dtype)


#: The perturbation of auxiliary decoder i is ``PERTURBATIONS[i % 3]`` (the three kinds of
#: SSL4MIS's U-net CCT; CCT's VAT and mask-guided kinds need more than a feature map).
PERTURBATIONS: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (
    feature_noise,
    feature_dropout,
    feature_drop,
)


class AuxDecoder(nn.Module):
    """A copy of the U-net's last decoder block and head, reading perturbed features."""

    def __init__(self, dims: int, width: int, out_channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(dims, 2 * width, width)
        self.head = _conv(dims, width, out_channels, kernel=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(features))


class CCTNetwork(UNet):
    """``UNet`` plus ``aux`` auxiliary decoders on the shared trunk's perturbed features."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        base: int = 16,
        depth: int = 4,
        aux: int = 3,
    ) -> None:
        super().__init__(dims, in_channels, out_channels, base, depth)
        self.aux = nn.ModuleList(AuxDecoder(dims, base, out_channels) for _ in range(aux))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The shared part: the features entering the last decoder block."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up[:-1], self.merge[:-1], strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return torch.cat([self.up[-1](x), skips.pop()], dim=1)

    def main(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The main decoder's (logits, last features) from the trunk's features."""
        last = self.merge[-1](features)
        return self.head(last), last

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As ``UNet.forward``: the main decoder's (logits, last features)."""
        return self.main(self.trunk(x))

    def auxiliary(self, features: torch.Tensor) -> list[torch.Tensor]:
        """Each auxiliary decoder's logits, from its own perturbation of ``features``."""
        return [
            decoder(PERTURBATIONS[i % len(PERTURBATIONS)](features))
            for i, decoder in enumerate(self.aux)
        ]
