#!/usr/bin/env python3
"""PyTorch eager baseline for bioseg's GPU training benchmark.

The same classic U-Net as bioseg-train (zhixuhao layout: 4 levels of [Conv3x3+ReLU]x2 + MaxPool,
bottleneck, nearest upsampling + Conv2x2 + ReLU, concat, [Conv3x3+ReLU]x2, head Conv3x3 with 2
filters + ReLU, Conv1x1, sigmoid inside BCE-with-logits), NCHW float32, Adam, batch of synthetic
images. Prints one line per configuration: images/s and ms/step after warm-up steps.

Usage: python3 torch_unet_bench.py [--steps 20] [--configs 64:512:4,16:256:2]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return F.relu(self.c2(F.relu(self.c1(x))))


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 2)
        self.block = Block(2 * cout, cout)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.relu(self.conv(F.pad(x, (0, 1, 0, 1))))
        return self.block(torch.cat([skip, x], 1))


class UNet(nn.Module):
    def __init__(self, f=64, depth=4):
        super().__init__()
        chans = [f << i for i in range(depth + 1)]
        self.down = nn.ModuleList([Block(1 if i == 0 else chans[i - 1], chans[i]) for i in range(depth)])
        self.bottleneck = Block(chans[depth - 1], chans[depth])
        self.up = nn.ModuleList([Up(chans[i + 1], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(f, 2, 3, padding=1)
        self.out = nn.Conv2d(2, 1, 1)

    def forward(self, x):
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for u in self.up:
            x = u(x, skips.pop())
        return self.out(F.relu(self.head(x)))


def bench(f, size, batch, steps, device):
    torch.manual_seed(0)
    model = UNet(f).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, size, size, device=device)
    y = (torch.rand(batch, 1, size, size, device=device) > 0.5).float()
    for i in range(steps + 3):
        if i == 3:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return steps * batch / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--configs", default="64:512:4,16:256:2")
    a = ap.parse_args()
    device = "cuda"
    torch.backends.cudnn.benchmark = True
    for c in a.configs.split(","):
        f, size, batch = map(int, c.split(":"))
        ips = bench(f, size, batch, a.steps, device)
        print(f"pytorch {torch.__version__} eager fp32 U-Net F={f} {size}x{size} batch {batch}: "
              f"{ips:.1f} images/s, {1000 * batch / ips:.1f} ms/step")


if __name__ == "__main__":
    main()
