"""Encoders side by side (CPU): size, compute, inference latency and training-step time, in one run.

    python bench/encoders.py [--encoders resnet18,resnet50,hrnet_w18,hrnet_w18+diffnet+dca,efficientnet_b0,convnext_tiny]
        [--sizes 640x192 1024x320] [--runs 10] [--warmup 2] [--train-steps 3] [--threads 1] [--json out.json]

For each timm encoder (``model.encoder``) with the baseline decoder, randomly initialised -- or, for
an entry ``ENCODER+DECODER[+dca]`` (e.g. ``hrnet_w18+diffnet+dca``, the DaB-Net authors' exact
network: their concatenated HRNet features, DIFFNet decoder, DCA and head, raw RGB in), that pair:

* parameters of the encoder and of the whole depth net, and GMACs of the depth net at 640x192
  (``torch.utils.flop_counter``: FLOPs / 2, i.e. multiply-accumulates, the unit the Lite-Mono table
  calls "FLOPs");
* inference latency, batch 1, at each ``--sizes``: PyTorch eager (``inference_mode``) and
  onnxruntime on the exported graph (``depth.export``; max |difference| printed), runs interleaved,
  median of ``--runs`` after ``--warmup``;
* one training step (``Trainer.train_step``: depth + ResNet-18 pose net, 2 sources, loss, backward,
  Adam) at 192x64, batch 6 (the synthetic preset), median of ``--train-steps`` after one warm-up.

The reference measured in the same run is the ``resnet18`` row (Monodepth2's encoder, this
project's default): the ratios are to it. The published reference is Lite-Mono (640x192): 3.1 M
parameters and 5.0 G multiply-accumulates ("FLOPs" in its paper), printed as its own row.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import timm
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.infer_speed import export_and_time
from data.samples import FrameBatch
from depth.config import load_config
from depth.io.onnx_file import DepthExportModel
from depth.model import build_networks
from depth.networks import DepthNet
from depth.train.trainer import Trainer

ENCODERS = "resnet18,resnet50,hrnet_w18,hrnet_w18+diffnet+dca,efficientnet_b0,convnext_tiny"
REFERENCE = "resnet18"
LITE_MONO = {"params_m": 3.1, "gmacs": 5.0}  # published, 640x192 (Zhang et al., CVPR 2023)


def _n(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def gmacs(net: torch.nn.Module, height: int, width: int) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.rand(1, 3, height, width))
    return counter.get_total_flops() / 2e9


def latency(name: str, net: DepthNet, height: int, width: int, runs: int, warmup: int, threads: int,
            workdir: Path) -> dict:
    path = workdir / f"{name}_{width}x{height}.onnx"
    return export_and_time(DepthExportModel(net).eval(), path, height, width, runs, warmup, threads)


def _batch(b: int, h: int, w: int) -> FrameBatch:
    g = torch.Generator().manual_seed(0)
    low = torch.rand(b * 3, 3, h // 8, w // 8, generator=g)
    color = F.interpolate(low, (h, w), mode="bilinear", align_corners=False).view(b, 3, 3, h, w).clamp(0, 1)
    K = torch.tensor([[0.58 * w, 0, 0.5 * w], [0, 1.92 * h, 0.5 * h], [0, 0, 1]]).expand(b, 3, 3).clone()
    return FrameBatch(color, color, K, torch.arange(b))


def network_of(entry: str) -> tuple[str, list[str]]:
    """``(encoder, config overrides)`` of a ``--encoders`` entry: ``ENCODER`` or ``ENCODER+DECODER[+dca]``."""
    encoder, *rest = entry.split("+")
    overrides = [f"model.decoder={rest[0]}"] if rest else []
    if "dca" in rest[1:]:
        overrides.append("model.dca=true")
    return encoder, overrides


def build_depth_net(entry: str) -> DepthNet:
    """The depth net of a ``--encoders`` entry, built as every run builds it (depth.model.build_networks:
    random initialisation from the config's seed)."""
    encoder, overrides = network_of(entry)
    cfg = load_config(None, [f"model.encoder={encoder}", "model.pretrained=false", *overrides])
    return build_networks(cfg).depth_net


def train_step_s(name: str, steps: int, height: int = 64, width: int = 192, batch: int = 6) -> float:
    name, overrides = network_of(name)
    cfg = load_config(None, [f"model.encoder={name}", *overrides, "model.pretrained=false", f"data.height={height}",
                             f"data.width={width}", f"train.batch_size={batch}", "train.device=cpu",
                             "output.dir=/tmp/unused_bench_encoders"])
    torch.manual_seed(0)
    trainer = Trainer(cfg, [None] * (4 * batch))
    b = _batch(batch, height, width)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        trainer.train_step(b)
        if i:  # the first step is a warm-up
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoders", default=ENCODERS)
    p.add_argument("--sizes", nargs="+", default=["640x192", "1024x320"], help="WxH for latency")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n.strip() for n in args.encoders.split(",") if n.strip()]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, timm {timm.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"{args.threads} thread(s), {os.cpu_count()} CPU(s), load average {load:.1f} at start; "
          f"latency: batch 1, median of {args.runs} after {args.warmup}; "
          f"train step: 192x64 batch 6, median of {args.train_steps}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            net = build_depth_net(name).eval()
            row = {"encoder": name, "encoder_params_m": _n(net.encoder) / 1e6, "params_m": _n(net) / 1e6,
                   "gmacs_640x192": gmacs(net, 192, 640), "latency": {}}
            for w, h in sizes:
                row["latency"][f"{w}x{h}"] = latency(name, net, h, w, args.runs, args.warmup, args.threads,
                                                     Path(tmp))
            row["train_step_s"] = train_step_s(name, args.train_steps)
            rows.append(row)
            print(f"  {name}: done", flush=True)
    ref = next((r for r in rows if r["encoder"] == REFERENCE), rows[0])
    size_cols = [f"{w}x{h}" for w, h in sizes]
    head = " | ".join(f"{s} eager ms | {s} ort ms" for s in size_cols)
    print(f"\n| encoder | encoder M params | depth net M params | GMACs 640x192 | {head} "
          f"| train step s (192x64 b6) "
          f"| step / {ref['encoder']} | max ONNX diff |")
    print("|---" * (7 + 2 * len(size_cols)) + "|")
    for r in rows:
        lat = " | ".join(f"{r['latency'][s]['eager_ms']:.0f} | {r['latency'][s]['ort_ms']:.0f}"
                         for s in size_cols)
        diff = max(r["latency"][s]["max_abs_diff"] for s in size_cols)
        ratio = r["train_step_s"] / ref["train_step_s"]
        print(f"| {r['encoder']} | {r['encoder_params_m']:.2f} | {r['params_m']:.2f} | "
              f"{r['gmacs_640x192']:.2f} | {lat} | {r['train_step_s']:.2f} | {ratio:.2f} | {diff:.1e} |")
    blank = " | ".join("—" for _ in range(2 * len(size_cols)))
    print(f"| Lite-Mono (published) | — | {LITE_MONO['params_m']:.1f} | {LITE_MONO['gmacs']:.1f} | {blank} "
          f"| — | — | — |")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "rows": rows, "lite_mono": LITE_MONO},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
