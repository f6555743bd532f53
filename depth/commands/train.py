"""``python train.py`` once its arguments are parsed: the config (or the run to resume), the
checks that run before any data is read, the process group, the data, the trainer, and the exit
status (docstring of train.py)."""
from __future__ import annotations

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from data.datasets import build_run_data
from data.frames import BadSampleError
from depth.config import Config, ConfigError, load_config
from depth.io.checkpoint import find_checkpoint
from depth.model import check_encoders, imagenet_weights
from depth.train.finetune import open_init_from
from depth.train.placement import check_global_batch
from depth.train.preemption import StopRequest
from depth.train.run_dir import auto_resume, check_run_dir, run_dir_of
from depth.train.trainer import NonFiniteLossError, Trainer, ValidationData

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "configs" / "baseline_kitti_640x192.yaml"


def init_distributed(device: str) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; initialises torch.distributed when run under torchrun
    (``WORLD_SIZE`` > 1): NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        rank = int(os.environ.get("RANK", "0"))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", store=_attempt_store(rank, world),
                                rank=rank, world_size=world)
    return dist.get_rank(), dist.get_world_size(), local


def _attempt_store(rank: int, world: int) -> dist.Store:
    """The rendezvous store of this launch attempt: torchrun's (or rank 0's) TCPStore at
    ``MASTER_ADDR:MASTER_PORT`` under a prefix holding ``TORCHELASTIC_RESTART_COUNT``. Without the
    prefix, workers restarted by ``torchrun --max-restarts`` read the previous attempt's addresses
    from the agent's store and wait forever to connect to a dead worker."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent hosts the store
    store = dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500")),
                          world, is_master=not agent and rank == 0, timeout=timedelta(minutes=30),
                          multi_tenant=not agent)
    return dist.PrefixStore(f"dabdepth/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def load_resume(path: Path, overrides: list[str]) -> tuple[Config, dict]:
    """``(config, checkpoint)`` to continue the run of ``path`` (a run folder, its checkpoints/
    folder or a checkpoint file) *in that run folder*: ``output.dir`` is the folder given, not the
    one the saved config names (a copied run continues in the copy), unless an ``output.dir=``
    override says otherwise; ``output.overwrite`` applies only when given again. Prints the
    checkpoint used and any unreadable one skipped."""
    found = find_checkpoint(path)
    cfg = load_config(overrides=[f"output.dir={run_dir_of(path)}", "output.overwrite=false", *overrides],
                      saved=found.state["config"])
    if int(os.environ.get("RANK", "0")) == 0:
        for skipped in found.skipped:
            print(f"warning: skipped an unreadable checkpoint: {skipped}", file=sys.stderr, flush=True)
        print(f"resuming from {found.path} (step {found.state.get('step', '?')}) in {cfg.output.dir}", flush=True)
    return cfg, found.state


def run(args) -> int:
    """``python train.py`` with its parsed arguments (:func:`train.parse_args`)."""
    if args.no_progress:
        args.overrides.append("train.progress=false")
    if args.resume is not None:
        cfg, ckpt = load_resume(args.resume, args.overrides)
        check_run_dir(cfg.output.dir, int(ckpt.get("step", 0)), cfg.output.overwrite)
    else:
        cfg = load_config(args.config or DEFAULT_CONFIG, args.overrides)
        found = auto_resume(cfg) if cfg.train.resume == "auto" else None
        ckpt = found.state if found is not None else None
        if found is not None and int(os.environ.get("RANK", "0")) == 0:
            for skipped in found.skipped:
                print(f"warning: skipped an unreadable checkpoint: {skipped}", file=sys.stderr, flush=True)
            print(f"train.resume=auto: resuming from {found.path} (step {ckpt.get('step', '?')}) in "
                  f"{cfg.output.dir}", flush=True)
        check_run_dir(cfg.output.dir, None if ckpt is None else int(ckpt.get("step", 0)), cfg.output.overwrite)
    if ckpt is not None and (done := finished_message(cfg, ckpt)):
        if int(os.environ.get("RANK", "0")) == 0:
            print(done, flush=True)
        return 0
    if ckpt is None and cfg.model.init_from and not Path(cfg.model.init_from).exists():
        raise ConfigError(f"model.init_from: no such file or folder {cfg.model.init_from}")
    check_model(cfg, resumed=ckpt is not None)
    init_source = None
    if ckpt is None and cfg.model.init_from:  # read (and said) before any data is
        init_source = open_init_from(cfg.model.init_from)
        if int(os.environ.get("RANK", "0")) == 0:
            for line in init_source.lines():
                print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout, flush=True)

    rank, world, _ = init_distributed(cfg.train.device)
    check_global_batch(cfg.train.batch_size, world)
    try:
        return _train(cfg, ckpt, rank, world, init_source)
    finally:
        if world > 1:
            if dist.is_initialized():
                dist.destroy_process_group()


def finished_message(cfg: Config, ckpt: dict) -> str | None:
    """What to say, instead of training, when the checkpoint to continue from has already reached
    the run's budget (``train.max_steps``, or ``train.epochs`` when max_steps is 0); None otherwise."""
    step, epoch = int(ckpt.get("step", 0)), int(ckpt.get("epoch", 0))
    t, run = cfg.train, cfg.output.dir
    if t.max_steps > 0 and step >= t.max_steps:
        key, value = "train.max_steps", f"{t.max_steps} (checkpoint at step {step})"
        raise_to = f"train.max_steps={max(step, t.max_steps) * 2}"
    elif t.max_steps <= 0 and epoch >= t.epochs and int(ckpt.get("batch_in_epoch", 0)) == 0:
        key, value = "train.epochs", f"{t.epochs} (checkpoint at epoch {epoch}, step {step})"
        raise_to = f"train.epochs={max(epoch, t.epochs) + 10}"
    else:
        return None
    return (f"the run in {run} is already finished: {key}={value}; nothing trained, nothing written. "
            f"To train further, raise the budget: python train.py --resume {run} {raise_to}")


def check_model(cfg: Config, resumed: bool) -> None:
    """Raise (a bad-input error: ``command_errors`` prints it) when the encoder names are unusable or
    the ImageNet weights asked for are missing. Checked before any data is read; a resumed run takes
    its weights from the checkpoint, a fine-tuned one (``model.init_from``) from that model."""
    check_encoders(cfg)
    if not resumed and not cfg.model.init_from:
        imagenet_weights(cfg)


def skipped_errors(cfg: Config) -> tuple[type[BaseException], ...]:
    """The errors of a sample that drop it instead of stopping the run (``data.on_bad_sample``)."""
    return (BadSampleError,) if cfg.data.on_bad_sample == "skip" else ()


def _train(cfg: Config, ckpt: dict | None, rank: int, world: int, init_source=None) -> int:
    # rank 0 first: it generates synthetic data / builds the image cache once, the others then read
    if rank != 0:
        _barrier(world)
    try:
        data = build_run_data(cfg.data, cfg.augment, cfg.train.seed, progress=rank == 0 and cfg.train.progress)
    finally:
        if rank == 0:
            _barrier(world)

    val = ValidationData(data.val_images, data.val_gt) if data.val_images is not None else None
    trainer = Trainer(cfg, data.train_set, val, skip_errors=skipped_errors(cfg), val_samples=data.val_samples,
                      init_weights=ckpt is None, pretrained=ckpt is None, init_source=init_source,
                      run_dir_checked=True)
    if ckpt is not None:
        trainer.load_state(ckpt)
    if rank == 0:
        amp = str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype is not None else "off"
        print(f"training {len(data.train_set)} samples, {trainer.total_steps()} steps, global batch "
              f"{cfg.train.batch_size} = {world} process(es) x {trainer.batch_per_rank}, "
              f"{cfg.data.width}x{cfg.data.height}, encoder={cfg.model.encoder}, "
              f"recipe={cfg.loss.recipe}, dca={cfg.model.dca}, "
              f"zoom_prob={cfg.augment.zoom_prob}, device={trainer.device}, amp={amp}, "
              f"channels_last={trainer.channels_last}; run dir {cfg.output.dir}"
              + (f"; resumed at step {trainer.step_count} (epoch {trainer.epoch}, batch "
                 f"{trainer.batch_in_epoch})" if ckpt is not None else "")
              + (f"; {trainer.init_summary}" if trainer.init_summary else ""), flush=True)
    try:
        with StopRequest() as trainer.stop_request:
            result = trainer.fit()
    except NonFiniteLossError as e:
        print(f"training stopped: {e}", file=sys.stderr)
        return 3
    if result.get("stopped"):
        if rank == 0:
            print(f"stopped by {result['stopped']} after step {result['steps']}: checkpoint {result['checkpoint']}; "
                  f"continue with `python train.py --resume {cfg.output.dir}` (or train.resume=auto)", flush=True)
        return 0
    if rank == 0:
        print(json.dumps(result, indent=2))
    return 0

