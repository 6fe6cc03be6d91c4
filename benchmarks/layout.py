"""Issue 26: CPU levers for the 3-slice 3D U-net's training step that leave what is learnt as is.

Each candidate trains the same network (same seed, same weights, same batch of 2 + 4 images)
with the same Dice step and Adam; candidates are timed round-robin, one step each in turn, so
machine noise hits all alike, and each median is given as a ratio to the current code's (the
layout ``memory_format`` picks, ``nn.Conv3d``, ``nn.InstanceNorm3d``). A candidate is kept only
if it is >= 8 % faster at 1 and 2 threads and its logits and every parameter's gradient pass
``torch.testing.assert_close`` against the current code's; the ``equal`` column says which do.

Candidates (3D): ``contiguous`` (NCDHW instead of channels_last_3d); ``split-wgrad`` (the
convolution's weight gradient as three 2D weight gradients, one per slice offset, where the
2D oneDNN kernel beat the 3D one in a per-layer test); ``bn-per-image`` (instance norm as
batch norm on each image, which runs in channels_last_3d without the layout copies);
``group-norm`` (GroupNorm with one channel per group). With ``--dims 2``: channels_last.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from napari_segpl.engine.losses import segmentation_loss
from napari_segpl.engine.networks import UNet, memory_format

from .speed import round_robin


def _wgrad_2d(g2: torch.Tensor, x2: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    flags = [False, True, False]
    pad = [1, 1]
    return torch.ops.aten.convolution_backward(
        g2, x2, w2, None, [1, 1], pad, [1, 1], False, [0, 0], 1, flags
    )[1]


def _split_weight_grad(x: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The 3x3x3 weight gradient as 2D ones over the slices folded into the batch: offset 1
    pairs every slice with itself, offsets 0 and 2 pair neighbouring slices (flat index i-1
    or i+1), with the one slice that would pair across two images zeroed."""
    n, c, d, h, wd = x.shape

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2).reshape(n * d, t.shape[1], h, wd)

    g2, w2 = flat(g), w[:, :, 0]
    no_last, no_first = x.clone(), x.clone()
    no_last[:, :, -1] = 0
    no_first[:, :, 0] = 0
    grads = [
        _wgrad_2d(g2[1:], flat(no_last)[:-1], w2),
        _wgrad_2d(g2, flat(x), w2),
        _wgrad_2d(g2[:-1], flat(no_first)[1:], w2),
    ]
    return torch.stack(grads, 2)


class _SplitConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return F.conv3d(x, w, b, padding=1)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            flags = [True, False, False]
            gx = torch.ops.aten.convolution_backward(
                g, x, w, None, [1, 1, 1], [1, 1, 1], [1, 1, 1], False, [0, 0, 0], 1, flags
            )[0]
        if ctx.needs_input_grad[1]:
            gw = _split_weight_grad(x, g, w)
        if ctx.needs_input_grad[2]:
            gb = g.sum((0, 2, 3, 4))
        return gx, gw, gb


class SplitWgradConv3d(nn.Conv3d):
    """Conv3d whose weight gradient is computed slice offset by slice offset."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.device.type == "cpu":
            return _SplitConv.apply(x, self.weight, self.bias)
        return super().forward(x)


class BatchNormPerImage(nn.InstanceNorm3d):
    """Instance norm as training-mode batch norm on each image, in the layout it is in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [
            F.batch_norm(x[i : i + 1], None, None, self.weight, self.bias, True, 0.0, self.eps)
            for i in range(x.shape[0])
        ]
        return torch.cat(parts)


class GroupNormPerChannel(nn.InstanceNorm3d):
    """Instance norm as GroupNorm with one channel per group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)


def _swap(net: nn.Module, conv: type | None = None, norm: type | None = None) -> nn.Module:
    """Re-class the 3x3x3 convolutions and/or instance norms; parameters stay as they are."""
    for module in net.modules():
        for child in module.children():
            if conv and type(child) is nn.Conv3d and child.kernel_size == (3, 3, 3):
                child.__class__ = conv
            if norm and type(child) in (nn.InstanceNorm3d,):
                child.__class__ = norm
    return net


Variant = tuple[torch.memory_format, type | None, type | None]


def variants(dims: int) -> dict[str, Variant]:
    """name -> (layout, convolution class, norm class); ``current`` first."""
    if dims == 2:
        return {
            "current": (memory_format(2), None, None),
            "channels_last": (torch.channels_last, None, None),
        }
    return {
        "current": (memory_format(3), None, None),
        "contiguous": (torch.contiguous_format, None, None),
        "split-wgrad": (memory_format(3), SplitWgradConv3d, None),
        "bn-per-image": (memory_format(3), None, BatchNormPerImage),
        "group-norm": (memory_format(3), None, GroupNormPerChannel),
    }


def _data(dims: int, size: int, images: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    depth = (3,) if dims == 3 else ()
    x = torch.randn(images, 1, *depth, size, size, generator=g)
    y = (torch.rand(images, 1, *depth, size, size, generator=g) > 0.8).float()
    return x, y


def build(dims: int, size: int, images: int = 6) -> dict[str, tuple[nn.Module, Callable]]:
    """name -> (network, one training step), all from the same initial weights and batch."""
    torch.manual_seed(0)
    base = UNet(dims, 1, 1, 16 if dims == 2 else 8, 4)
    x0, y0 = _data(dims, size, images)
    out = {}
    for name, (fmt, conv, norm) in variants(dims).items():
        net = _swap(copy.deepcopy(base), conv, norm).to(memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), lr=0.003)
        x, y = x0.contiguous(memory_format=fmt), y0.contiguous(memory_format=fmt)

        def step(net=net, opt=opt, x=x, y=y) -> None:
            opt.zero_grad(set_to_none=True)
            logits, _ = net(x)
            segmentation_loss(logits, y, "dice", None).backward()
            opt.step()

        out[name] = (net, step)
    return out


def equal_to_current(dims: int, size: int) -> dict[str, bool]:
    """Whether each candidate's logits and gradients pass assert_close against current's."""
    nets = {k: v[0] for k, v in build(dims, size).items()}
    x, y = _data(dims, size, 6)
    results = {}
    for name, net in nets.items():
        fmt = variants(dims)[name][0]
        net.zero_grad(set_to_none=True)
        logits, _ = net(x.contiguous(memory_format=fmt))
        segmentation_loss(logits, y.contiguous(memory_format=fmt), "dice", None).backward()
        grads = [p.grad.clone() for p in net.parameters()]
        results[name] = (logits.detach(), grads)
    ref_logits, ref_grads = results["current"]
    verdict = {}
    for name, (logits, grads) in results.items():
        try:
            torch.testing.assert_close(logits, ref_logits)
            for got, want in zip(grads, ref_grads, strict=True):
                torch.testing.assert_close(got, want)
            verdict[name] = True
        except AssertionError:
            verdict[name] = False
    return verdict


def time_ratios(dims: int, size: int, repeats: int) -> tuple[float, dict[str, float]]:
    """Current's median seconds per step and every candidate's median as a ratio to it."""
    steps = {k: v[1] for k, v in build(dims, size).items()}
    times = round_robin(steps, repeats)
    ref = statistics.median(times["current"])
    return ref, {k: statistics.median(v) / ref for k, v in times.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks layout")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=3)
    parser.add_argument("--size", type=int, default=176)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.dims}D, {args.size}px, 6 images, load {load:.1f}")
    torch.set_num_threads(1)
    equal = equal_to_current(args.dims, 64)
    print("| threads | current s/step | candidate | ratio | equal to current | >= 8 % faster |")
    print("|---|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        ref, ratios = time_ratios(args.dims, args.size, args.repeats)
        for name, ratio in ratios.items():
            fast = "-" if name == "current" else ("faster" if ratio <= 0.92 else "no")
            same = "yes" if equal[name] else "no"
            print(f"| {threads} | {ref:.2f} | {name} | {ratio:.3f} | {same} | {fast} |", flush=True)
    return 0
