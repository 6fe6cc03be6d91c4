"""(J2): a 3D convolution over depth-3 stacks as one 2D convolution, against conv3d.

python benchmarks/results/J2/conv_probe.py [threads]
"""

import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
torch.manual_seed(0)


def slab_conv(x, weight, bias):
    # x: (N, C, D, H, W); weight (Co, Ci, kd, 3, 3); depth padding 1
    N, C, D, H, W = x.shape
    Co, Ci, K = weight.shape[:3]
    x2 = x.permute(0, 2, 1, 3, 4).reshape(N * D, C, H, W)
    w2 = weight.permute(2, 0, 1, 3, 4).reshape(K * Co, Ci, 3, 3)
    y = F.conv2d(x2, w2, padding=1).view(N, D, K, Co, H, W)
    outs = []
    for d in range(D):
        acc = None
        for k in range(K):
            s = d + k - 1
            if 0 <= s < D:
                t = y[:, s, k]
                acc = t if acc is None else acc + t
        outs.append(acc)
    out = torch.stack(outs, dim=2)  # (N, Co, D, H, W)
    return out + bias.view(1, -1, 1, 1, 1)


def conv3(x, w, b):
    return F.conv3d(x, w, b, padding=1)


def bench(fn, x, w, b, reps=10):
    for _ in range(2):
        y = fn(x, w, b)
        y.square().sum().backward()
    t = time.perf_counter()
    for _ in range(reps):
        y = fn(x, w, b)
        y.square().sum().backward()
    return (time.perf_counter() - t) / reps


for cin, cout, hw in [
    (1, 8, 176),
    (8, 8, 176),
    (16, 16, 88),
    (32, 32, 44),
    (64, 64, 22),
    (128, 128, 11),
]:
    x = torch.randn(6, cin, 3, hw, hw).to(memory_format=torch.channels_last_3d).requires_grad_()
    w = torch.randn(cout, cin, 3, 3, 3, requires_grad=True)
    b = torch.randn(cout, requires_grad=True)
    y3 = conv3(x, w, b)
    y2 = slab_conv(x, w, b)
    err = (y3 - y2).abs().max().item()
    t3 = bench(conv3, x, w, b)
    t2 = bench(slab_conv, x, w, b)
    xc = x.detach().contiguous().requires_grad_()
    t2c = bench(slab_conv, xc, w, b)
    print(
        f"{cin}->{cout} @{hw}: conv3d {t3 * 1e3:.1f} ms, slab {t2 * 1e3:.1f} ms (cl), "
        f"slab contiguous {t2c * 1e3:.1f} ms, ratio {t2 / t3:.2f}, maxerr {err:.1e}"
    )
