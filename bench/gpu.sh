#!/usr/bin/env bash
# GPU check (one CUDA GPU, about 5 minutes): training bursts with AMP on and off, printing
# steps/s and peak GPU memory per configuration:
#   baseline  640x192 batch 12
#   DCA       640x192 batch 12
#   DCA      1024x320 batch 12
# Each burst is the project's Trainer.train_step on a pre-built batch (data loading excluded),
# a few warm-up steps, then timed steps (CUDA-synchronised). Not part of CI.
#
#   bash bench/gpu.sh            # all bursts
#   STEPS=10 bash bench/gpu.sh   # fewer timed steps
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-3}
export STEPS WARMUP
$PY - <<'PYEOF'
import os, sys, time
import torch
sys.path.insert(0, ".")
if not torch.cuda.is_available():
    sys.exit("bench/gpu.sh needs a CUDA GPU")
from depth.config import load_config
from depth.trainer import Trainer
from bench.train_speed import make_batch

steps, warm = int(os.environ["STEPS"]), int(os.environ["WARMUP"])
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, bf16 supported: {torch.cuda.is_bf16_supported()}")
print(f"{'config':>10} {'size':>9} {'batch':>5} {'amp':>5} {'steps/s':>8} {'images/s':>9} {'peak GiB':>9}")
bursts = [("baseline", 640, 192, 12, []), ("dca", 640, 192, 12, ["model.dca=true", "augment.zoom_prob=0.5"]),
          ("dca", 1024, 320, 12, ["model.dca=true", "augment.zoom_prob=0.5"])]
for name, w, h, b, extra in bursts:
    for amp in ("off", "auto"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cfg = load_config(None, [f"data.height={h}", f"data.width={w}", f"train.batch_size={b}", "train.device=cuda",
                                 f"train.amp='{amp}'", "train.channels_last=true", "output.dir=/tmp/gpu_bench", *extra])
        trainer = Trainer(cfg, [None] * (4 * b))
        batch = make_batch(b, h, w, "cuda")
        try:
            for _ in range(warm):
                trainer.train_step(batch)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.train_step(batch)
            torch.cuda.synchronize()
            dt = (time.perf_counter() - t0) / steps
            label = "off" if trainer.amp_dtype is None else str(trainer.amp_dtype).replace("torch.", "")
            print(f"{name:>10} {w:>4}x{h:<4} {b:>5} {label:>5} {1 / dt:>8.2f} {b / dt:>9.1f} "
                  f"{torch.cuda.max_memory_allocated() / 2**30:>9.2f}", flush=True)
        except torch.cuda.OutOfMemoryError:
            print(f"{name:>10} {w:>4}x{h:<4} {b:>5} {amp:>5}  out of memory", flush=True)
        del trainer, batch
PYEOF
