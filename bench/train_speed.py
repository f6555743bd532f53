"""Training-step speed: the project's ``Trainer.train_step`` against a minimal Monodepth2-style step.

The minimal step is written here from docs/method.md alone (same ResNet-18 depth and pose networks,
the same loss maths: back-projection, projection, ``grid_sample(align_corners=True)``, 3x3-box
SSIM, per-pixel minimum with auto-masking, edge-aware smoothness on mean-normalised disparity,
4 scales upsampled to full resolution, Adam) with no framework around it: no config, no loss
dataclass, no seeding, no logging. Both run on the same pre-built batch (data loading excluded),
interleaved (minimal, project, minimal, project, ...) so that load from other users of a shared
CPU hits both alike; the table gives medians.

    python bench/train_speed.py                   # 640x192 b4 and 192x64 b12, baseline and DCA+zoom
    python bench/train_speed.py --reps 5 --sizes 192x64x12
    python bench/train_speed.py --device cuda --amp bf16   # same comparison on a GPU
    python bench/train_speed.py --jitter          # + the step on uint8 frames, colour jitter in the step

``project+jitter`` is the project step as the loader feeds it by default
(``augment.color_jitter_on=device``): uint8 frames, converted and jittered inside the step (work the
minimal step leaves to its loader).

Goal: project / minimal <= 1.0 for the baseline recipe, <= 1.15 with DCA + zoom on. On a CPU shared
with other jobs use ``--threads 1``: with 2 intra-op threads and one core taken by someone else, every
parallel region waits for the descheduled thread (steps 3-5x slower and very noisy).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from data.color_jitter import IDENTITY, draw_color_jitter
from data.samples import FrameBatch
from depth.config import Config, load_config
from depth.model import build_networks
from depth.train.trainer import Trainer

# ------------------------------------------------------------------ the minimal step (docs/method.md)

def _axisangle_to_matrix(aa, t, invert):
    angle = aa.norm(dim=1, keepdim=True).clamp_min(1e-7)
    axis = aa / angle
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    c, s = torch.cos(angle[:, 0]), torch.sin(angle[:, 0])
    C = 1 - c
    R = torch.stack([
        torch.stack([x * x * C + c, x * y * C - z * s, x * z * C + y * s], 1),
        torch.stack([y * x * C + z * s, y * y * C + c, y * z * C - x * s], 1),
        torch.stack([z * x * C - y * s, z * y * C + x * s, z * z * C + c], 1)], 1)
    t = t.unsqueeze(-1)
    if invert:
        R = R.transpose(1, 2)
        t = -R @ t
    T = torch.zeros(aa.shape[0], 4, 4, dtype=aa.dtype, device=aa.device)
    T[:, :3, :3], T[:, :3, 3:], T[:, 3, 3] = R, t, 1
    return T


def _ssim(x, y):
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mx, my = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sx = F.avg_pool2d(x * x, 3, 1) - mx ** 2
    sy = F.avg_pool2d(y * y, 3, 1) - my ** 2
    sxy = F.avg_pool2d(x * y, 3, 1) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sx + sy + c2))


def _pe(a, b):
    l1 = (a - b).abs().mean(1, True)
    return 0.85 * torch.clamp((1 - _ssim(a, b)) / 2, 0, 1).mean(1, True) + 0.15 * l1


class MinimalStep:
    def __init__(self, depth_net, pose_net, h, w, device):
        self.depth_net, self.pose_net = depth_net, pose_net
        self.opt = torch.optim.Adam(list(depth_net.parameters()) + list(pose_net.parameters()), 1e-4)
        v, u = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                              torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
        self.pix = torch.stack([u, v, torch.ones_like(u)], 0).view(1, 3, -1)
        self.h, self.w = h, w

    def __call__(self, color, color_aug, K):
        h, w = self.h, self.w
        b = color.shape[0]
        poses = []
        for i, f in ((1, -1), (2, 1)):
            pair = (color_aug[:, i], color_aug[:, 0]) if f < 0 else (color_aug[:, 0], color_aug[:, i])
            aa, t = self.pose_net(*pair)
            poses.append(_axisangle_to_matrix(aa, t, f < 0))
        disps = self.depth_net.forward_scales(color_aug[:, 0])
        target = color[:, 0]
        sources = [color[:, 1], color[:, 2]]
        identity = torch.cat([_pe(s, target) for s in sources], 1)
        identity = identity + torch.randn_like(identity) * 1e-5
        Kinv = torch.inverse(K)
        total = 0
        for s, disp in enumerate(disps):
            d = F.interpolate(disp, (h, w), mode="bilinear", align_corners=False)
            depth = 1 / (0.01 + (10 - 0.01) * d)
            cam = (Kinv @ self.pix) * depth.view(b, 1, -1)
            cam = torch.cat([cam, torch.ones_like(cam[:, :1])], 1)
            reps = []
            for src, T in zip(sources, poses):
                p = K @ (T @ cam)[:, :3]
                uv = p[:, :2] / (p[:, 2:3] + 1e-7)
                gx = uv[:, 0] / (w - 1) * 2 - 1
                gy = uv[:, 1] / (h - 1) * 2 - 1
                grid = torch.stack([gx, gy], -1).view(b, h, w, 2)
                reps.append(_pe(F.grid_sample(src, grid, padding_mode="border", align_corners=True), target))
            loss = torch.cat([identity, torch.cat(reps, 1)], 1).min(1)[0].mean()
            img = target if s == 0 else F.interpolate(target, disp.shape[-2:], mode="area")
            nd = disp / (disp.mean((2, 3), True) + 1e-7)
            gdx, gdy = (nd[..., :-1] - nd[..., 1:]).abs(), (nd[..., :-1, :] - nd[..., 1:, :]).abs()
            gix = (img[..., :-1] - img[..., 1:]).abs().mean(1, True)
            giy = (img[..., :-1, :] - img[..., 1:, :]).abs().mean(1, True)
            smooth = (gdx * torch.exp(-gix)).mean() + (gdy * torch.exp(-giy)).mean()
            total = total + loss + 1e-3 * smooth / 2 ** s
        total = total / len(disps)
        self.opt.zero_grad()
        total.backward()
        self.opt.step()
        return total


# ------------------------------------------------------------------ harness

def make_batch(b, h, w, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, 3, h // 8, w // 8, generator=g)
    color = F.interpolate(low.view(b * 3, 3, h // 8, w // 8), (h, w), mode="bilinear",
                          align_corners=False).view(b, 3, 3, h, w).clamp(0, 1)
    K = torch.tensor([[0.58 * w, 0, 0.5 * w], [0, 1.92 * h, 0.5 * h], [0, 0, 1]]).expand(b, 3, 3).clone()
    return FrameBatch(color, color, K, torch.arange(b)).to(device)


def jittered_batch(batch: FrameBatch, seed: int = 0) -> FrameBatch:
    """``batch``'s frames as the loader ships them (uint8, ``augment.color_jitter_on=device``): the
    colour jitter of half the samples (the preset's probability 0.5) to be applied in the step."""
    b = len(batch)
    draws = [draw_color_jitter(seed * 1000 + i, 0.2, 0.2, 0.2, 0.1) if i % 2 == 0 else
             (np.asarray(IDENTITY, np.float32), np.arange(4)) for i in range(b)]
    # channels innermost, the layout of the decoded images the loader ships (data.frames.frames_to_uint8)
    color = batch.color.mul(255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return FrameBatch(color, None, batch.K, batch.index, jitter=torch.from_numpy(np.stack([f for f, _ in draws])),
                      jitter_order=torch.from_numpy(np.stack([o for _, o in draws])))


def project_trainer(h, w, b, device, amp, dca_zoom, compile_=False):
    extra = (["model.dca=true", "augment.zoom_prob=0.5"] if dca_zoom else []) + (["train.compile=true"] if compile_ else [])
    cfg = load_config(None, [f"data.height={h}", f"data.width={w}", f"train.batch_size={b}",
                             f"train.device={device}", f"train.amp='{amp}'", "model.pretrained=false",
                             "output.dir=/tmp/unused_train_speed", *extra])
    return Trainer(cfg, [None] * (4 * b))


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def run_size(h, w, b, reps, device, amp, variants):
    torch.manual_seed(0)
    batch = make_batch(b, h, w, device)
    runners = {}
    nets = build_networks(Config()).to(device)  # ResNet-18 baseline, random weights
    minimal = MinimalStep(nets.depth_net, nets.pose_net, h, w, device)
    runners["minimal"] = lambda: minimal(batch.color, batch.color_aug, batch.K)
    for name, dz, comp, jit in variants:
        tr = project_trainer(h, w, b, device, amp, dz, comp)
        runners[name] = (lambda t=tr, bt=jittered_batch(batch) if jit else batch: t.train_step(bt))
    times = {k: [] for k in runners}
    for k, fn in runners.items():  # warm-up (train.compile: the compilation)
        t = timed(fn, device)
        if "compile" in k:
            print(f"  {k}: first step (compiling) {t:.1f} s", flush=True)
        timed(fn, device)
    for _ in range(reps):
        for k, fn in runners.items():
            times[k].append(timed(fn, device))
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}, times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["640x192x4", "192x64x12"], help="WxHxB")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="off", help="train.amp of the project step (the minimal one is fp32)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-dca", action="store_true", help="skip the DCA + zoom variant")
    ap.add_argument("--compile", action="store_true", help="also the project step with train.compile=true")
    ap.add_argument("--jitter", action="store_true",
                    help="also the project step on uint8 frames with the colour jitter applied in the step")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [("project", False, False, False)] + ([] if args.no_dca else [("project+dca+zoom", True, False, False)]) \
        + ([("project+compile", False, True, False)] if args.compile else []) \
        + ([("project+jitter", False, False, True)] if args.jitter else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load average {load:.1f} at start"
          + (" (the CPU is shared: absolute times are noisy; the runs are interleaved, compare ratios)"
             if args.device == "cpu" else ""))
    print(f"{'size':>10} {'batch':>5} {'step':>18} {'s/step median':>14} {'ratio':>6} {'s/step min':>11} "
          f"{'ratio':>6}  all runs")
    for spec in args.sizes:
        w, h, b = (int(x) for x in spec.split("x"))
        med, times = run_size(h, w, b, args.reps, args.device, args.amp, variants)
        m0, n0 = med["minimal"]
        for k, (m, n) in med.items():
            print(f"{f'{w}x{h}':>10} {b:>5} {k:>18} {m:>14.3f} {m / m0:>6.3f} {n:>11.3f} {n / n0:>6.3f}  "
                  + " ".join(f"{t:.2f}" for t in times[k]), flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
