"""Inference latency: PyTorch eager vs onnxruntime (CPU), baseline and DCA depth nets, in one run.

    python bench/infer_speed.py [--height 192 --width 640] [--runs 20] [--warmup 5] [--threads N]
        [--baseline-checkpoint CKPT] [--dca-checkpoint CKPT] [--models baseline,dca] [--json out.json]

Batch 1. Both engines run the same graph (network + sigmoid -> scaled disparity) on the same input
with the same number of threads; eager runs under ``torch.inference_mode``. The runs of the two
engines are interleaved (eager, onnxruntime, eager, ...) so that load from other processes hits both
alike; the median of ``--runs`` timed runs after ``--warmup`` untimed ones is reported. Without
checkpoints the networks are randomly initialised (latency does not depend on the weights).
Goal: onnxruntime <= 0.7x eager.
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
import torch

from depth.config import Config
from depth.io.onnx_file import DepthExportModel, export_onnx, onnx_session, verify_onnx
from depth.model import build_networks, load_model

GOAL = 0.7


def _model(kind: str, checkpoint: str | None):
    if checkpoint:
        nets, cfg = load_model(checkpoint)
        if cfg.model.dca != (kind == "dca"):
            raise SystemExit(f"{checkpoint}: model.dca={cfg.model.dca} does not match '{kind}'")
        return nets.depth_net, cfg
    cfg = Config()
    cfg.model.dca = kind == "dca"
    torch.manual_seed(0)
    return build_networks(cfg).depth_net.eval(), cfg


def interleaved_ms(model, sess, x: torch.Tensor, runs: int,
                   warmup: int) -> tuple[list[float], list[float]]:
    """Milliseconds of ``runs`` eager (``inference_mode``) and onnxruntime runs on ``x``, interleaved
    (eager, onnxruntime, eager, ...) after ``warmup`` untimed pairs."""
    feed = {sess.get_inputs()[0].name: x.numpy()}
    eager, ort_ms = [], []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t = time.perf_counter()
            model(x)
            e = time.perf_counter() - t
            t = time.perf_counter()
            sess.run(None, feed)
            o = time.perf_counter() - t
            if i >= warmup:
                eager.append(e * 1e3)
                ort_ms.append(o * 1e3)
    return eager, ort_ms


def export_and_time(model: DepthExportModel, path: Path, height: int, width: int, runs: int,
                    warmup: int, threads: int) -> dict:
    """Export ``model`` to ``path``, check it on one random input and time both engines on it
    (medians and minima of :func:`interleaved_ms`, the export time, the file size)."""
    t0 = time.perf_counter()
    export_onnx(model, path, height, width)
    export_s = time.perf_counter() - t0
    sess = onnx_session(path, "cpu", threads=threads)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    diff = verify_onnx(sess, model, {"x": x})["x"]
    eager, ort_ms = interleaved_ms(model, sess, x, runs, warmup)
    e_med, o_med = statistics.median(eager), statistics.median(ort_ms)
    return {"eager_ms": e_med, "ort_ms": o_med, "ratio": o_med / e_med,
            "eager_min_ms": min(eager), "ort_min_ms": min(ort_ms), "max_abs_diff": diff,
            "export_s": export_s, "onnx_mib": path.stat().st_size / 2 ** 20}


def bench_one(kind: str, checkpoint: str | None, height: int, width: int, runs: int, warmup: int,
              threads: int, workdir: Path) -> dict:
    net, cfg = _model(kind, checkpoint)
    model = DepthExportModel(net, "disparity", cfg.model.min_depth, cfg.model.max_depth).eval()
    timed = export_and_time(model, workdir / f"{kind}.onnx", height, width, runs, warmup, threads)
    return {"model": kind, **timed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--runs", type=int, default=20, help="timed runs per engine (median reported; >= 20)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="threads for both engines (default: torch's default)")
    p.add_argument("--models", default="baseline,dca")
    p.add_argument("--baseline-checkpoint", default=None)
    p.add_argument("--dca-checkpoint", default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if args.runs < 20:
        print("warning: fewer than 20 timed runs", file=sys.stderr)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    ckpts = {"baseline": args.baseline_checkpoint, "dca": args.dca_checkpoint}
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {threads} thread(s), "
          f"{os.cpu_count()} CPU(s), batch 1, {args.width}x{args.height}, median of {args.runs} after "
          f"{args.warmup} warm-up runs", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in [m.strip() for m in args.models.split(",") if m.strip()]:
            if kind not in ckpts:
                raise SystemExit(f"unknown model {kind!r} (baseline | dca)")
            rows.append(bench_one(kind, ckpts[kind], args.height, args.width, args.runs, args.warmup,
                                  threads, Path(tmp)))
            print(f"  {kind}: done", flush=True)
    print("\n| model | eager ms | onnxruntime ms | ort / eager | goal <= 0.7 | max abs diff | export s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['eager_ms']:.1f} | {r['ort_ms']:.1f} | {r['ratio']:.2f} | "
              f"{'yes' if r['ratio'] <= GOAL else 'no'} | {r['max_abs_diff']:.1e} | {r['export_s']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": threads, "height": args.height, "width": args.width,
                                               "runs": args.runs, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
