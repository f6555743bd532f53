"""The training step and loop. The trainer receives datasets (it never reads files) and a resolved
:class:`Config`; its parts live beside it: where it computes (:mod:`~depth.train.placement`: ranks,
device, AMP, DDP), a batch's loss (:mod:`~depth.train.objective`), the lr
(:mod:`~depth.train.schedule`), the randomness (:mod:`~depth.train.randomness`), the checkpoint
state (:mod:`~depth.train.state`), the loader (:mod:`~depth.train.loader`), validation
(:mod:`~depth.train.validation`) and what the run shows (:mod:`~depth.train.run_log`)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

from common.atomic import atomic_write_text
from data.samples import FrameBatch, collate
from depth.config import Config, ConfigError
from depth.model import LoadedModel, build_networks
from depth.train.emulation import emulated_ddp_step
from depth.train.finetune import init_networks
from depth.train.loader import BadSamples, resolve_num_workers, training_loader
from depth.train.losses import LossTerms
from depth.train.objective import Objective
from depth.train.placement import apply_determinism, place, resolve_amp, wrap_networks
from depth.train.preemption import StopRequest
from depth.train.randomness import (RANDOM_STREAMS, rng_states, seed_everything, set_rng_states, step_seed,
                                    stream_seed)
from depth.train.run_dir import open_run_dir
from depth.train.run_log import PROGRESS_LOSS_EVERY, RunLog
from depth.train.sampling import ResumableSampler
from depth.train.schedule import learning_rate
from depth.train.state import Checkpoints, LateFiniteCheck, NonFiniteLossError, SittingClock, snapshot_buffers
from depth.train.validation import Validation, ValidationData

__all__ = ["Trainer", "ValidationData", "NonFiniteLossError", "collate", "resolve_amp", "rng_states",
           "set_rng_states", "RANDOM_STREAMS", "stream_seed", "step_seed", "PROGRESS_LOSS_EVERY"]

class Trainer:
    """Trains ``cfg``'s networks on ``train_set`` (samples of :class:`data.frames.FrameSampleDataset`).

    ``skip_errors``: exception types that drop a sample (counted) instead of stopping the run.
    ``init_weights``: apply ``model.init_from`` (``init_source``: that model already read; summary in
    ``init_summary``). ``pretrained``: ImageNet weights when ``model.pretrained`` says so (False when a
    checkpoint replaces them). Validation scores ``val``, else the loss on ``val_samples``. :meth:`fit`
    writes into ``output.dir`` (:func:`depth.train.run_dir.open_run_dir`; ``run_dir_checked``: the
    caller checked the folder already)."""

    def __init__(self, cfg: Config, train_set: Dataset, val: ValidationData | None = None,
                 device: str | None = None, rank: int | None = None, world_size: int | None = None,
                 skip_errors: tuple[type[BaseException], ...] = (), val_samples: Dataset | None = None,
                 init_weights: bool = True, pretrained: bool = True, init_source: LoadedModel | None = None,
                 run_dir_checked: bool = False):
        self.cfg, self.train_set, t = cfg, train_set, cfg.train
        self.where = where = place(cfg, device, rank, world_size)
        self.rank, self.world_size, self.is_main = where.rank, where.world_size, where.is_main
        self.device, self.batch_per_rank = where.device, where.batch_per_rank
        self.amp_dtype, self.channels_last = where.amp_dtype, where.channels_last
        seed_everything(t.seed)
        apply_determinism(cfg, self.device)
        fine_tune = bool(init_weights and cfg.model.init_from)
        nets = build_networks(cfg, pretrained=pretrained and not fine_tune).to(self.device)
        self.init_summary = init_networks(nets, cfg.model.init_from, init_source) if fine_tune else ""
        self.nets, self.model = wrap_networks(nets, where, t.sync_bn)
        self.depth_net, self.pose_net = self.nets.depth_net, self.nets.pose_net  # no pose net: stereo-only
        self.modules = [m for m in (self.depth_net, self.pose_net) if m is not None]
        if t.compile:  # in place: parameters, state_dict keys and checkpoints stay those of the modules
            for m in self.modules:
                m.compile()
        self.params = [p for m in self.modules for p in m.parameters()]
        self.objective = Objective(cfg, where)
        # fused: one kernel for the whole update on CUDA (the same arithmetic as the default loop)
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                          fused=True if self.device.type == "cuda" else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.sampler = ResumableSampler(len(train_set), t.seed, True, self.rank, self.world_size, with_epoch=True)
        self.steps_per_epoch = self.sampler.per_rank // self.batch_per_rank
        if self.steps_per_epoch == 0:
            raise ConfigError(f"train.batch_size={t.batch_size} is larger than the training split "
                              f"({len(train_set)} samples)")
        self.skip_errors = tuple(skip_errors)
        self.step_count, self.epoch, self.batch_in_epoch, self.skipped_steps = 0, 0, 0, 0
        self.resumed_at: int | None = None  # the step a checkpoint restored (None: a new run)
        self.out_dir = Path(cfg.output.dir)
        self.run_dir_checked, self.run_dir_claimed = run_dir_checked, False
        self.checkpoints = Checkpoints(self.out_dir, t.keep_checkpoints)
        self.late_check = LateFiniteCheck(self.device.type == "cuda" and t.nan_policy == "error"
                                          and not where.collectives)
        self.clock = SittingClock()
        self.log = RunLog(self.is_main, t.progress, t.log_every, t.image_every)
        self.validation = Validation(cfg, val, val_samples, self.batch_per_rank)
        self.bad_samples = BadSamples(where)
        self.loader = None  # built by the first fit(): its workers live as long as the trainer
        self.stop_request = StopRequest()  # SIGTERM / SIGUSR1 / SIGINT (train.py installs the handlers)
        self.stop_agreed = False  # every rank's view of the stop requests, agreed in the step's collective

    @property
    def collective_device(self) -> torch.device | None:
        return self.where.collective_device

    @property
    def last_metrics(self) -> dict:
        return self.validation.last_metrics

    def lr_at(self, step: int, epoch: int) -> float:
        return learning_rate(self.cfg.optim, step, epoch)

    def total_steps(self) -> int:
        t = self.cfg.train
        return t.max_steps if t.max_steps > 0 else t.epochs * self.steps_per_epoch

    def compute_loss(self, batch: FrameBatch, step: int | None = None, rank: int | None = None,
                     model: nn.Module | None = None, zoom: bool = True) -> tuple[LossTerms, list[Tensor]]:
        """:class:`depth.train.objective.Objective` of one batch at ``step`` (default: the current one)
        on ``rank`` (default: this process's), through ``model`` (default: the possibly DDP-wrapped
        networks); ``zoom=False`` skips zoom imitation (validation)."""
        return self.objective(self.model if model is None else model, batch,
                              self.step_count if step is None else step, self.rank if rank is None else rank, zoom)

    def zoom_boxes(self, step: int, rank: int, batch: int, height: int, width: int) -> Tensor:
        return self.objective.zoom_boxes(step, rank, batch, height, width)

    def begin_step(self) -> float:
        lr = self.lr_at(self.step_count, self.epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        for m in self.modules:
            m.train()
        return lr

    def optimizer_step(self) -> None:
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def train_step(self, batch: FrameBatch) -> LossTerms | None:
        """One optimiser step on this rank's part of the global batch; None if it was skipped
        (non-finite loss with ``train.nan_policy=skip``)."""
        self.late_check.check(self.checkpoints)  # the previous step's loss (CUDA: read one step late)
        self.begin_step()
        # dropout is a function of (step, rank) alone (zoom and auto-mask noise have their own streams)
        torch.manual_seed(step_seed(self.cfg.train.seed, self.step_count, self.rank))
        skip_policy = self.cfg.train.nan_policy == "skip"
        # a skipped step must not leave its BatchNorm statistics behind either
        restore_buffers = snapshot_buffers(self.modules) if skip_policy else None
        terms, disparities = self.compute_loss(batch, self.step_count)
        if self.late_check.enabled:  # CUDA, error policy, one process: read when the next step begins
            self.late_check.put(terms.total, self.step_count)
            ok = True
        else:
            ok = torch.isfinite(terms.total.detach())
        if self.where.collectives:  # every rank decides alike (a lone rank skipping would hang the others)
            all_ok, no_stop = self.where.all_reduce([int(ok), int(not self.stop_request.requested)],
                                                    torch.distributed.ReduceOp.MIN)
            ok, self.stop_agreed = all_ok > 0, no_stop == 0
        ok = bool(ok)
        if not ok and not skip_policy:
            raise self.checkpoints.nonfinite(terms.total.item(), self.step_count)
        self.optimizer.zero_grad(set_to_none=True)
        if ok or self.world_size > 1:  # DDP needs every rank in the backward's all-reduce
            self.scaler.scale(terms.total).backward()
        if not ok:
            self.optimizer.zero_grad(set_to_none=True)
            restore_buffers()
            self.skipped_steps += 1
            return None
        self.optimizer_step()
        if self.log.wants_images():  # detached (frees the graph)
            self.log.keep_images(batch, disparities[0])
        return terms

    def train_step_emulated(self, batches: list[FrameBatch]) -> list[LossTerms]:
        """:func:`depth.train.emulation.emulated_ddp_step`: the reference multi-process runs are tested against."""
        return emulated_ddp_step(self, batches)

    def validate(self) -> dict:
        """:meth:`depth.train.validation.Validation.run` on this trainer's depth net."""
        return self.validation.run(self.depth_net, self.modules, self.device,
                                   lambda b: self.compute_loss(b, step=0, rank=0, model=self.nets, zoom=False)[0])

    def _validate_and_log(self) -> dict:
        self.late_check.check(self.checkpoints)
        return self.validation.once(self.step_count, self.is_main, self.log, self.validate)

    def state_dict(self) -> dict:
        return self.checkpoints.state(self)

    def save(self) -> Path | None:
        self.late_check.check(self.checkpoints)  # never a checkpoint of weights a non-finite loss made
        return self.checkpoints.save(self)

    def load_state(self, ckpt: dict) -> None:
        self.checkpoints.restore(self, ckpt)

    def fit(self) -> dict:
        t = self.cfg.train
        if not self.run_dir_claimed:  # the folder's checkpoints are this run's from here on
            open_run_dir(self.out_dir, self.cfg, self.resumed_at, self.run_dir_checked, self.is_main)
            self.run_dir_claimed = True
        self.log.open(self.out_dir, self.total_steps(), self.step_count)
        total, t0 = self.total_steps(), self.clock.start()
        if self.loader is None:
            self.loader = training_loader(self.train_set, self.sampler, self.where,
                                          resolve_num_workers(t.num_workers), self.skip_errors)
        while self.step_count < total:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch * self.batch_per_rank)
            for batch in self.loader:
                self.batch_in_epoch += 1
                batch = self.bad_samples.keep(batch, self.epoch, self.batch_in_epoch)
                if batch is None:
                    continue
                terms = self.train_step(batch)
                self.step_count += 1
                self.log.step(self.step_count, terms, self.optimizer.param_groups[0]["lr"])
                if t.val_every and self.step_count % t.val_every == 0:
                    self._validate_and_log()
                if t.checkpoint_every and self.step_count % t.checkpoint_every == 0:
                    self.save()
                if self.step_count >= total:
                    break
                if self.stop_agreed if self.where.collectives else self.stop_request.requested:
                    return self._stop()
            else:  # epoch finished: the scheduler steps at the end of the epoch
                self.bad_samples.end_epoch(self.epoch, self.log, self.step_count)
                self.epoch += 1
                self.batch_in_epoch = 0
                if not t.val_every:
                    self._validate_and_log()
                if not t.checkpoint_every:
                    self.save()
        self.log.close_bar()
        if self.bad_samples.epoch or self.where.collectives:  # (a collective: every rank calls it)
            self.bad_samples.end_epoch(self.epoch, self.log, self.step_count)
        metrics = self._validate_and_log()
        if metrics or not self.checkpoints.holds(self.step_count):  # no duplicate write
            self.save()
        self.log.close()
        # seconds: training time over every sitting; seconds_this_sitting: since this fit() began
        result = {"steps": self.step_count, "epochs": self.epoch, "seconds": self.clock.seconds(),
                  "seconds_this_sitting": time.time() - t0, "skipped_steps": self.skipped_steps,
                  "bad_samples": self.bad_samples.total, **metrics}
        if self.is_main:
            atomic_write_text(self.out_dir / "metrics.json", json.dumps(result, indent=2))
        return result

    def _stop(self) -> dict:
        """End a run asked to stop (:attr:`stop_request`) after the step just taken: rank 0 writes a
        checkpoint of this step (unless one was just written), every rank waits for it, no final
        validation and no ``metrics.json`` (the run is not finished). Returns ``steps``, ``epochs``,
        ``stopped`` (the signal's name) and ``checkpoint`` (the file, on rank 0)."""
        self.log.close_bar()
        path = None
        if self.is_main:
            path = self.checkpoints.path_of(self.step_count) if self.checkpoints.holds(self.step_count) else self.save()
        if self.where.collectives:  # the other ranks exit once rank 0's checkpoint is complete
            self.where.all_reduce([1])
        self.log.close()
        return {"steps": self.step_count, "epochs": self.epoch,
                "stopped": self.stop_request.name or "a stop request of another rank",
                "checkpoint": str(path) if path is not None else None}
