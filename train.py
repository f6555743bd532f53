"""Train a self-supervised depth + pose network.

    python train.py --config configs/synthetic.yaml [key=value ...]
    python train.py --resume RUN_DIR [key=value ...]
    torchrun --nproc_per_node=N train.py --config ... [key=value ...]   # N processes, one DDP run

Without --config the KITTI baseline (configs/baseline_kitti_640x192.yaml) is trained at data.root.
Every config key can be overridden on the command line with its dotted name (train.max_steps=100).
--resume RUN_DIR continues in RUN_DIR (whatever output.dir its saved config names); a new run into
a folder that holds checkpoints stops before any work unless output.overwrite=true, or, with
train.resume=auto, continues from the newest complete checkpoint there when it was written with the
same config (exit 2 naming the differing keys otherwise) -- the setting for requeued jobs.
Under torchrun, train.batch_size is the global batch (split evenly over the processes); the gloo
backend is used on CPU and NCCL on CUDA (one GPU per process, LOCAL_RANK). Exit codes: 0 done,
2 bad config, data, checkpoint or run folder, or ImageNet weights asked for (model.pretrained=true)
and not found -- checked before any data is read (one line; --debug shows the traceback), 3 non-finite
loss (the last good checkpoint is kept).

SIGTERM, SIGUSR1 or SIGINT (Ctrl-C; a second one aborts) stop the run after the current step on every
process: rank 0 writes a checkpoint of that step, and every process exits 0 (no metrics.json: the run is
not finished; continue it with --resume RUN_DIR or train.resume=auto). See docs/training.md, Preemption.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth.cli import add_debug_flag, parse_then_run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None, help="YAML preset (default: KITTI baseline)")
    p.add_argument("--resume", type=Path, default=None,
                   help="run directory (or checkpoint file) to continue from and in; its saved config is used")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (the same as train.progress=false)")
    add_debug_flag(p)
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.batch_size=8")
    return p.parse_args(argv)


main = parse_then_run(parse_args, "depth.commands.train")


if __name__ == "__main__":
    sys.exit(main())
