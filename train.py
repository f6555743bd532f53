"""Train a self-supervised depth + pose network.

    python train.py --config configs/synthetic.yaml [key=value ...]
    python train.py --resume RUN_DIR [key=value ...]

Without --config the KITTI baseline (configs/baseline_kitti_640x192.yaml) is trained at data.root.
Every config key can be overridden on the command line with its dotted name (train.max_steps=100).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "configs" / "baseline_kitti_640x192.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None, help="YAML preset (default: KITTI baseline)")
    p.add_argument("--resume", type=Path, default=None,
                   help="run directory (or checkpoint file) to continue from; its saved config is used")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.batch_size=8")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from depth.config import ConfigError, load_config

    try:
        if args.resume is not None:
            from depth.checkpoint import load_checkpoint

            ckpt = load_checkpoint(args.resume)
            cfg = load_config(overrides=args.overrides, saved=ckpt["config"])
        else:
            cfg = load_config(args.config or DEFAULT_CONFIG, args.overrides)
            ckpt = None
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2

    from data.datasets import DatasetNotFound, build_training_data

    try:
        train_set, val_images, val_gt = build_training_data(cfg.data, cfg.augment, cfg.train.seed)
    except DatasetNotFound as e:
        print(str(e), file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2

    from depth.trainer import Trainer, ValidationData

    val = ValidationData(val_images, val_gt) if val_images is not None else None
    trainer = Trainer(cfg, train_set, val)
    if ckpt is not None:
        trainer.load_state(ckpt)
    print(f"training {len(train_set)} samples, {trainer.total_steps()} steps, batch {cfg.train.batch_size}, "
          f"{cfg.data.width}x{cfg.data.height}, recipe={cfg.loss.recipe}, dca={cfg.model.dca}, "
          f"zoom_prob={cfg.augment.zoom_prob}, device={trainer.device}; run dir {cfg.output.dir}")
    result = trainer.fit()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
