"""Self-loop uncertainty: a RECONSTRUCTION from the paper's description; no public code exists.

Reference: Li, Chen, Xie, Ma and Zheng, *Self-Loop Uncertainty: A Novel Pseudo-Label for
Semi-Supervised Medical Image Segmentation*, MICCAI 2020. What the paper describes and we follow:
the segmentation network's encoder also solves a self-supervised jigsaw task (images cut into
tiles, the tiles shuffled by one of a set of permutations, the permutation predicted), on
labelled and unlabelled images alike; each unlabelled image is shuffled by Q permutations,
segmented, and the Q segmentations moved back to the original layout; their mean is the
pseudo label and their disagreement its uncertainty (the "self-loop uncertainty", an
approximation of an ensemble's), which guides the loss on the unlabelled images.

What we had to guess (every number is a Param with its default below):
- the tiles: a ``grid`` x ``grid`` in-plane grid (2: 4 tiles, all 24 orders are the classes;
  larger grids: 24 fixed orders drawn once). A 3-slice stack is tiled the same on each slice.
  Rows and columns beyond the last whole tile stay in place;
- the pretext head: the deepest encoder features pooled into one cell per tile, then a
  two-layer perceptron over the cells in grid order (a position-aware jigsaw classifier, as
  Noroozi and Favaro's); cross-entropy weighted by ``ss_weight`` (0.1, so that its initial
  ln 24 = 3.2 does not swamp a Dice loss of at most 1);
- "recurrently optimising" the encoder between the Q looks: the paper takes optimisation steps
  between them; here the Q looks of one step share that step's weights, and the weights move
  between steps (one optimiser step per batch, as the engine's trainer does);
- the pseudo label: the mean of the Q restored probabilities cut at the configured threshold
  (one sigmoid channel per class; for exclusive classes at most one class a pixel, as the
  other methods), kept only where the Q looks agree (standard deviation <= ``max_std``),
  trained with the configured segmentation loss on the clean image's prediction, weighted by
  alpha with its warm-up (and the trainer's gate). The paper's uncertainty-guided loss may
  weigh pixels by their uncertainty instead of dropping them;
- ``views`` Q = 4 looks a step, made without gradient by the network being trained (no EMA
  teacher and no intensity evidence, which are this project's levers, not the paper's).
Where ours differs otherwise: sigmoid channels, our U-nets, our step counts; in 3D only the
centre slice of an unlabelled stack enters the loss, as for SegPL; with ``config.ema > 0`` (the
presets' 0.99) the weights' moving average becomes the model that predicts and is saved, as
for every method (``Method.finish``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import TrainConfig
from ..losses import segmentation_loss
from ..networks import UNet
from .base import Batch, Method, Param, StepOutput, per_channel, register

#: How many tile orders the pretext task tells apart.
PERMUTATION_CLASSES = 24


def permutations(grid: int) -> list[tuple[int, ...]]:
    """The pretext task's classes: tile orders (position j shows tile ``order[j]``, tiles
    numbered row by row). 2 x 2: all 24, in ``itertools`` order; larger grids: 24 fixed
    distinct orders (the identity first)."""
    tiles = grid * grid
    if math.factorial(tiles) <= PERMUTATION_CLASSES:
        return list(itertools.permutations(range(tiles)))
    rng, chosen = np.random.default_rng(0), [tuple(range(tiles))]
    while len(chosen) < PERMUTATION_CLASSES:
        order = tuple(int(i) for i in rng.permutation(tiles))
        if order not in chosen:
            chosen.append(order)
    return chosen


def tile_index(h: int, w: int, grid: int, order: tuple[int, ...]) -> torch.Tensor:
    """(h * w,) source pixel of each output pixel when the tiles are put in ``order``."""
    th, tw = h // grid, w // grid
    base = torch.arange(h * w).reshape(h, w)
    index = base.clone()
    for j, src in enumerate(order):
        (ty, tx), (sy, sx) = divmod(j, grid), divmod(src, grid)
        index[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw] = base[
            sy * th : (sy + 1) * th, sx * tw : (sx + 1) * tw
        ]
    return index.reshape(-1)


def gather_pixels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, ..., H, W) with each image's pixels taken at its ``index`` (N, H * W)."""
    flat = x.flatten(-2)
    shape = (index.shape[0],) + (1,) * (flat.ndim - 2) + (index.shape[1],)
    return flat.gather(-1, index.reshape(shape).expand_as(flat)).reshape(x.shape)


def encode(net: UNet, x: torch.Tensor) -> torch.Tensor:
    """The U-net's deepest encoder features (its forward pass up to the bottleneck)."""
    for i, block in enumerate(net.down):
        x = block(x if i == 0 else net.pool(x))
    return x


class JigsawHead(nn.Module):
    """Deepest encoder features -> logits over the tile orders: one pooled cell per tile,
    read in grid order by a two-layer perceptron."""

    def __init__(self, channels: int, grid: int, classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.grid = grid
        self.mlp = nn.Sequential(
            nn.Linear(channels * grid * grid, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, classes),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 5:  # a 3-slice stack: the slices' mean
            features = features.mean(dim=2)
        cells = F.adaptive_avg_pool2d(features.float(), self.grid)
        return self.mlp(cells.flatten(1))


@register
class SelfLoop(Method):
    """Jigsaw pretext task on a shared encoder; pseudo labels where Q shuffled looks agree."""

    name = "selfloop"
    title = "Self-loop uncertainty"
    uses_unlabelled = True
    cuts_pseudo_labels = True
    params = {
        "views": Param(4, "shuffled looks Q at each unlabelled image a step", 2, 16),
        "grid": Param(2, "jigsaw tiles per side (2: 4 tiles, 24 orders)", 2, 4),
        "ss_weight": Param(0.1, "weight of the jigsaw (pretext) loss", 0.0, 10.0),
        "max_std": Param(0.1, "pixels whose Q looks spread more are left out", 0.0, 0.5),
    }

    def __init__(self, config: TrainConfig, num_classes: int) -> None:
        super().__init__(config, num_classes)
        self.orders = permutations(int(self.param("grid")))
        width = self.model.feature_channels * 2**config.depth
        self.head = JigsawHead(width, int(self.param("grid")), len(self.orders))
        self._index: dict[tuple[int, int, str], torch.Tensor] = {}

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "jigsaw": self.head}

    def _table(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(classes, h * w) source indices of every tile order, made once per size."""
        key = (h, w, str(device))
        if key not in self._index:
            grid = int(self.param("grid"))
            rows = [tile_index(h, w, grid, order) for order in self.orders]
            self._index[key] = torch.stack(rows).to(device)
        return self._index[key]

    def shuffle(
        self, x: torch.Tensor, classes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each image's tiles in a random order (or ``classes``' orders): (shuffled, the
        pretext targets (N,), the (N, H * W) source indices to restore with)."""
        if classes is None:
            classes = torch.randint(len(self.orders), (x.shape[0],), device=x.device)
        index = self._table(x.shape[-2], x.shape[-1], x.device)[classes]
        return gather_pixels(x, index), classes, index

    @staticmethod
    def restore(y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Undo ``shuffle``'s move of the pixels (for a prediction of a shuffled image)."""
        return gather_pixels(y, index.argsort(dim=-1))

    @torch.no_grad()
    def self_loop(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) over Q shuffled looks of the restored float32 probabilities: the
        pseudo label's source and its uncertainty. No gradient."""
        looks = []
        for _ in range(int(self.param("views"))):
            shuffled, _, index = self.shuffle(x)
            p = torch.sigmoid(self.model(shuffled)[0].float())
            looks.append(self.restore(p, index))
        stack = torch.stack(looks)
        return stack.mean(0), stack.std(0, unbiased=False)

    def compute_loss(self, batch: Batch, step: int, alpha_fn: Callable[[int], float]) -> StepOutput:
        config, n = self.config, batch.x_l.shape[0]
        x = batch.x_l if batch.x_u is None else torch.cat([batch.x_l, batch.x_u])
        logits, _ = self.model(x)
        sup = segmentation_loss(logits[:n], batch.y_l, config.loss, batch.mask_l)
        shuffled, targets, _ = self.shuffle(x)  # the pretext task, on every image
        ss = F.cross_entropy(self.head(encode(self.model, shuffled)), targets)
        loss = sup + self.param("ss_weight") * ss
        alpha = alpha_fn(step)
        logs = {"sup": sup.item(), "ss": ss.item(), "alpha": alpha}
        if not batch.has_unlabelled:
            logs["loss"] = loss.item()
            return StepOutput(loss, logs)
        logits_u = logits[n:]
        pseudo, mask = self.pseudo_targets(batch.x_u, logits_u.dtype)
        unsup = segmentation_loss(
            logits_u, pseudo, config.loss, mask, per_image=config.unsup_dice == "image"
        )
        loss = loss + alpha * unsup
        logs.update(unsup=unsup.item(), loss=loss.item(), kept=mask.float().mean().item())
        if pseudo.ndim == 5:  # the guard watches the centre slices
            pseudo = pseudo[:, :, pseudo.shape[2] // 2]
        return StepOutput(loss, logs, pseudo=pseudo)

    @torch.no_grad()
    def pseudo_targets(
        self, x_u: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pseudo labels, mask) of unlabelled images, constants for the loss: the self-loop
        mean cut at the threshold, kept where the looks agree (and, in 3D, on the centre
        slice; with the trainer's gate, on the classes it let in)."""
        mean, std = self.self_loop(x_u)
        pseudo = self.cut(mean, self.config.threshold).to(dtype)
        mask = (std <= self.param("max_std")).to(dtype)
        if pseudo.ndim == 5:
            centre = torch.zeros_like(mask[:1, :1, :, :1, :1])
            centre[:, :, mask.shape[2] // 2] = 1
            mask = mask * centre
        if self.pseudo_classes is not None and not all(self.pseudo_classes):
            gate = torch.tensor(self.pseudo_classes, dtype=dtype, device=mask.device)
            mask = mask * gate.reshape((1, -1) + (1,) * (mask.ndim - 2))
        return pseudo, mask

    def pseudo_labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The dock's preview: the self-loop mean and its cut at the fixed threshold (new
        random looks each time it is asked)."""
        mean, _ = self.self_loop(x)
        t = torch.full(
            (x.shape[0], self.num_classes), float(self.config.threshold), device=x.device
        )
        return mean, self.cut(mean, per_channel(t, mean.ndim)), t
