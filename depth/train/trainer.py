"""The training loop: one optimiser step, logging, validation, checkpoints, resume.

The trainer receives datasets (it never reads files itself) and a resolved :class:`Config`.
A batch flows once, one way: frames -> (zoom imitation) -> depth net on the jittered target,
pose net on jittered un-zoomed pairs -> reprojection loss on un-jittered frames -> optimiser.

Multi-process training (``torchrun``): when ``torch.distributed`` is initialised with a world size
above one, both networks are wrapped together in one ``DistributedDataParallel`` (one forward, one
backward, gradients averaged over ranks). ``train.batch_size`` is the **global** batch; each rank
loads ``batch_size / world_size`` samples of its shard of the epoch. Only rank 0 logs, validates,
shows progress and writes checkpoints.

Mixed precision (CUDA only): the networks run under ``torch.autocast`` (bf16 where supported,
else fp16 with a ``GradScaler``); the loss (SSIM, exp, log, warping) always runs in fp32.

Exact resume: the randomness of step ``s`` on rank ``r`` is a function of ``(seed, s, r)``
(per-step seeding), a sample's augmentation of ``(seed, epoch, index)``, the epoch order of
``(seed, epoch)``, and the learning rate of ``(step, epoch)``; a checkpoint stores those positions
with the model, optimiser and scaler states, so a resumed run repeats the uninterrupted one.
"""
from __future__ import annotations

import contextlib
import json
import random
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.atomic import atomic_write_text
from data.samples import BadBatchError, FrameBatch, collate
from depth.config import Config, to_dict
from depth.eval.metrics import compute_depth_metrics
from depth.eval.scale import stereo_scale
from depth.geometry import pose_vector_to_matrix
from depth.inference import predict_disparities
from depth.io.checkpoint import library_versions, load_checkpoint, save_checkpoint
from depth.model import LoadedModel, Networks, build_networks
from depth.train.distributed import all_reduce_, collective_device, is_distributed
from depth.train.finetune import init_networks
from depth.train.losses import LossTerms, self_supervised_loss
from depth.train.preemption import StopRequest
from depth.train.run_dir import check_run_dir, clear_checkpoints
from depth.train.sampling import EpochIndexed, ResumableSampler
from depth.train.zoom import sample_zoom_boxes, zoom_images, zoom_intrinsics
from depth.visualize import colorize_disparity

__all__ = ["Trainer", "ValidationData", "NonFiniteLossError", "collate", "TrainNets", "resolve_amp", "rng_states",
           "set_rng_states"]

TrainNets = Networks  # the name the trainer gave the module DistributedDataParallel wraps


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class ValidationData:
    """Validation frames at full resolution and their ground truth (metres, 0 = invalid) at the
    same size; scored exactly as ``evaluate.py depth`` scores them (:meth:`Trainer.validate`)."""

    images: Sequence[np.ndarray]  # H_i x W_i x 3 uint8 RGB, e.g. a data.kitti.KittiImageSet (read lazily)
    gt_depths: list  # list of (H_i, W_i) float32 arrays, or a sparse GT object of depth.eval.metrics


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


RANDOM_STREAMS = ("global", "zoom", "automask")
PROGRESS_LOSS_EVERY = 5  # steps between updates of the progress bar's loss (each is one host sync)


def stream_seed(seed: int, step: int, rank: int, stream: str) -> int:
    """The seed of one random consumer at optimiser step ``step`` on rank ``rank``.

    Each consumer has its own stream, derived with ``numpy.random.SeedSequence`` from
    ``(seed, step, rank, stream)``: ``global`` seeds torch's global generator (dropout, e.g. the
    DCA's ``Dropout2d``), ``zoom`` the zoom-imitation draws, ``automask`` the auto-masking tie-break
    noise. Streams never share a seed, so the zoom draws do not correlate with dropout masks and do
    not change when a network with or without dropout is trained. Returns a 63-bit integer.
    """
    if stream not in RANDOM_STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; one of {RANDOM_STREAMS}")
    words = np.random.SeedSequence([seed % 2 ** 63, step, rank, RANDOM_STREAMS.index(stream)]).generate_state(2)
    return (int(words[0]) & 0x7FFF_FFFF) << 32 | int(words[1])


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's global generator at optimiser step ``step`` on rank ``rank`` (dropout)."""
    return stream_seed(seed, step, rank, "global")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full fp32).

    ``auto``: bf16 on CUDA devices that support it, else fp16 (with a GradScaler); off on CPU.
    Explicit ``bf16``/``fp16`` on a CPU run are ignored with a warning (CPU autocast is not used:
    its gradients drift from fp32, see the docs)."""
    if amp == "off":
        return None
    if device.type != "cuda":
        if amp in ("bf16", "fp16"):
            warnings.warn(f"train.amp={amp} is for CUDA; training in fp32 on {device.type}", stacklevel=2)
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def rng_states() -> dict:
    """The global generators' states as plain values (a checkpoint loads with weights_only=True):
    Python's ``random`` as ``[version, [625 ints], gauss]``, NumPy's legacy generator as a dict with
    its MT19937 key as an int64 tensor, torch's (and CUDA's) as byte tensors."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(rng: dict) -> None:
    """Restore :func:`rng_states`; also reads the form older checkpoints stored (``random.getstate()``
    and ``np.random.get_state()`` tuples, the key an array or, read back, a list)."""
    if "python" not in rng:
        return
    version, internal, gauss = rng["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    n = rng["numpy"]
    if isinstance(n, dict):
        n = (n["bit_generator"], n["key"], n["pos"], n["has_gauss"], n["cached_gaussian"])
    name, key, pos, has_gauss, cached = n
    key = key.cpu().numpy() if isinstance(key, torch.Tensor) else key
    np.random.set_state((name, np.asarray(key, dtype=np.int64).astype(np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        except (RuntimeError, IndexError):  # another GPU count: per-step seeding covers it
            pass


class Trainer:
    """Trains ``cfg``'s networks on ``train_set`` (samples of :class:`data.frames.FrameSampleDataset`).

    ``skip_errors``: exception types a sample may raise that drop the sample (counted and
    reported) instead of stopping the run -- what ``train.py`` passes for
    ``data.on_bad_sample=skip``. ``init_weights``: apply ``model.init_from`` right after the
    networks are built (:func:`depth.train.finetune.init_networks`; its summary is ``self.init_summary``);
    ``train.py`` passes False when resuming, whose checkpoint replaces the weights anyway.
    ``pretrained``: start the encoders from ImageNet weights when ``model.pretrained`` says so
    (False when a checkpoint's weights replace them: resuming; skipped when ``model.init_from``
    replaces them). ``init_source``: the model of ``model.init_from`` already read
    (:func:`depth.model.open_model`; ``train.py`` reads it before the data), else read here.
    Validation scores ``val`` (frames with GT: depth metrics) or, when there is
    none, reports the photometric loss on ``val_samples`` (held-out samples of the same kind as
    ``train_set``'s, without augmentation): :meth:`validate`.

    :meth:`fit` writes into ``cfg.output.dir``; a new (not resumed) run stops with
    :class:`depth.train.run_dir.RunExistsError` when that folder holds checkpoints, unless
    ``output.overwrite`` (then they are removed first).
    """

    def __init__(self, cfg: Config, train_set: Dataset, val: ValidationData | None = None,
                 device: str | None = None, rank: int | None = None, world_size: int | None = None,
                 skip_errors: tuple[type[BaseException], ...] = (), val_samples: Dataset | None = None,
                 init_weights: bool = True, pretrained: bool = True, init_source: LoadedModel | None = None):
        self.cfg = cfg
        self.val_samples = val_samples if val_samples is not None and len(val_samples) > 0 else None
        self.skip_errors = tuple(skip_errors)
        dist = is_distributed()
        if rank is None:
            rank = torch.distributed.get_rank() if dist else 0
        if world_size is None:
            world_size = torch.distributed.get_world_size() if dist else 1
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        # collectives (depth.train.distributed.all_reduce_) run whenever a process group is up, on
        # the device its backend reduces (CUDA for NCCL, CPU for gloo)
        self.collectives = dist
        self.collective_device = collective_device() if dist else None
        t = cfg.train
        if t.batch_size % world_size:
            raise ValueError(f"train.batch_size={t.batch_size} is the global batch and must be divisible by "
                             f"the number of processes ({world_size})")
        if world_size > 1 and not dist:
            raise RuntimeError("world_size > 1 needs torch.distributed initialised (run under torchrun)")
        self.batch_per_rank = t.batch_size // world_size
        dev = device or t.device
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(dev)
        if self.device.type == "cuda" and self.device.index is None and world_size > 1:
            self.device = torch.device("cuda", torch.cuda.current_device())
        seed_everything(t.seed)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            if self.device.type == "cuda":
                torch.backends.cudnn.benchmark = False
        self.amp_dtype = resolve_amp(t.amp, self.device)
        self.channels_last = bool(t.channels_last) and self.device.type == "cuda"
        self.train_set, self.val = train_set, val
        fine_tune = bool(init_weights and cfg.model.init_from)
        nets = build_networks(cfg, pretrained=pretrained and not fine_tune).to(self.device)
        self.init_summary = init_networks(nets, cfg.model.init_from, init_source) if fine_tune else ""
        self.depth_net, self.pose_net = nets.depth_net, nets.pose_net
        if world_size > 1 and t.sync_bn:
            if self.device.type != "cuda":
                raise ValueError("train.sync_bn=true needs CUDA (PyTorch's SyncBatchNorm has no CPU kernel); "
                                 "on CPU every process keeps its own BatchNorm statistics")
            nets = nn.SyncBatchNorm.convert_sync_batchnorm(nets)
            self.depth_net, self.pose_net = nets.depth_net, nets.pose_net
        if self.channels_last:
            nets = nets.to(memory_format=torch.channels_last)
        self.nets = nets
        self.model: nn.Module = nets
        if world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(nets, device_ids=ids, output_device=ids[0] if ids else None)
        # stereo-only runs (data.frame_ids=[0], data.stereo=true) have no pose net (build_networks)
        self.modules = [m for m in (self.depth_net, self.pose_net) if m is not None]
        self.params = [p for m in self.modules for p in m.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.sampler = ResumableSampler(len(train_set), t.seed, True, rank, world_size, with_epoch=True)
        self.steps_per_epoch = self.sampler.per_rank // self.batch_per_rank
        if self.steps_per_epoch == 0:
            raise ValueError(f"train.batch_size={t.batch_size} is larger than the training split "
                             f"({len(train_set)} samples)")
        self.step_count, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.out_dir = Path(cfg.output.dir)
        self.writer = None
        self.last_metrics: dict = {}
        self.skipped_steps = 0
        self.bad_samples = 0  # this epoch, this rank
        self.bad_samples_total = 0
        self._loader: DataLoader | None = None
        self._saved_step = -1
        self._resumed_at: int | None = None  # the step load_state restored (None: a new run)
        self._seconds_before = 0.0  # training seconds of the earlier sittings of a resumed run
        self._sitting_start: float | None = None  # time.time() when this sitting's fit() began
        self._claimed_out_dir = False
        # SIGTERM / SIGUSR1 / SIGINT (train.py installs the handlers): stop after the current step
        self.stop_request = StopRequest()
        self._stop_agreed = False  # every rank's view of the stop requests, agreed in the step's collective

    # -- learning rate --------------------------------------------------------------------------
    def lr_at(self, step: int, epoch: int) -> float:
        o = self.cfg.optim
        if o.step_milestones:
            lr = o.lr * (o.gamma ** sum(step >= m for m in o.step_milestones))
        else:
            lr = o.lr * (o.gamma ** sum(epoch >= m for m in o.milestones))
        if o.warmup_steps and step < o.warmup_steps:
            f0 = o.warmup_start_factor
            lr *= f0 + (1 - f0) * step / o.warmup_steps
        return lr

    # -- one step ----------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def compute_loss(self, batch: FrameBatch, step: int | None = None, rank: int | None = None,
                     model: nn.Module | None = None, zoom: bool = True) -> tuple[LossTerms, list[Tensor]]:
        """Forward both networks and the loss for one batch (no optimiser work).

        ``rank`` (default: this process's) only picks the zoom draw; ``model`` defaults to the
        (possibly DDP-wrapped) :class:`depth.model.Networks`; ``zoom=False`` skips zoom imitation
        (validation)."""
        cfg = self.cfg
        rank = self.rank if rank is None else rank
        model = self.model if model is None else model
        color = batch.color.to(self.device, non_blocking=True)  # B F 3 H W, un-jittered
        color_aug = batch.color_aug.to(self.device, non_blocking=True)
        K = batch.K.to(self.device).float()
        frame_ids = tuple(cfg.data.frame_ids)

        step = self.step_count if step is None else step
        depth_in = color_aug[:, 0]
        if zoom and cfg.augment.zoom_prob > 0:
            b, _, _, h, w = color.shape
            boxes = self.zoom_boxes(step, rank, b, h, w).to(self.device)
            color = zoom_images(color, boxes)
            depth_in = zoom_images(depth_in, boxes)
            K = zoom_intrinsics(K, boxes, h, w)
        if self.channels_last:
            depth_in = depth_in.contiguous(memory_format=torch.channels_last)

        with self._autocast():
            disparities, pose_vectors = model(color_aug, depth_in, frame_ids)
        # the loss in fp32 whatever the networks ran in (SSIM, exp, log, warping)
        disparities = [d.float() for d in disparities]
        poses = [pose_vector_to_matrix(aa.float(), t.float(), invert=f < 0)
                 for (aa, t), f in zip(pose_vectors, frame_ids[1:])]
        if cfg.data.stereo:
            poses.append(batch.T_stereo.to(self.device).float())
        sources = [color[:, i] for i in range(1, color.shape[1])]
        noise = torch.Generator(device=self.device).manual_seed(
            stream_seed(cfg.train.seed, step, rank, "automask"))
        terms = self_supervised_loss(
            disparities, color[:, 0], sources, K, poses, recipe=cfg.loss.recipe,
            min_depth=cfg.model.min_depth, max_depth=cfg.model.max_depth, ssim_weight=cfg.loss.ssim_weight,
            smoothness_weight=cfg.loss.smoothness_weight, automask=cfg.loss.automask,
            min_reprojection_loss=cfg.loss.min_reprojection, noise_generator=noise)
        return terms, disparities

    def zoom_boxes(self, step: int, rank: int, batch: int, height: int, width: int) -> Tensor:
        """The zoom-imitation crop boxes of step ``step`` on rank ``rank`` (CPU, ``(batch, 4)``),
        drawn from the ``zoom`` stream alone (:func:`stream_seed`)."""
        a = self.cfg.augment
        gen = torch.Generator().manual_seed(stream_seed(self.cfg.train.seed, step, rank, "zoom"))
        return sample_zoom_boxes(batch, height, width, a.zoom_prob, a.zoom_min_scale, gen)

    def _begin_step(self) -> float:
        lr = self.lr_at(self.step_count, self.epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        for m in self.modules:
            m.train()
        return lr

    def _nonfinite(self, value: float) -> NonFiniteLossError:
        last = self.out_dir / "checkpoints" / "last.pt"
        where = (f"the last good checkpoint is {last}" if last.is_file()
                 else "no checkpoint was written before it")
        return NonFiniteLossError(
            f"non-finite loss ({value}) at step {self.step_count + 1} (after {self.step_count} completed "
            f"steps); {where} (set train.nan_policy=skip to skip such steps)")

    def _optimizer_step(self) -> None:
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def train_step(self, batch: FrameBatch) -> LossTerms | None:
        """One optimiser step on this rank's part of the global batch; None if it was skipped
        (non-finite loss with ``train.nan_policy=skip``)."""
        self._begin_step()
        # Per-step seeding makes dropout a function of (step, rank) alone (zoom and auto-mask noise
        # have their own streams: stream_seed).
        torch.manual_seed(step_seed(self.cfg.train.seed, self.step_count, self.rank))
        skip_policy = self.cfg.train.nan_policy == "skip"
        if skip_policy:  # a skipped step must not leave its BatchNorm statistics behind either
            buffers = [b for m in self.modules for b in m.buffers()]
            saved = [b.detach().clone() for b in buffers]
        terms, disparities = self.compute_loss(batch, self.step_count)
        ok = torch.isfinite(terms.total.detach())
        distributed = self.world_size > 1
        if self.collectives:  # every rank takes the same decisions (a lone rank skipping would hang the others)
            # one collective: the loss is finite everywhere, no rank was asked to stop
            all_ok, no_stop = self._all_reduce([int(ok), int(not self.stop_request.requested)],
                                               torch.distributed.ReduceOp.MIN)
            ok, self._stop_agreed = all_ok > 0, no_stop == 0
        ok = bool(ok)
        if not ok and not skip_policy:
            raise self._nonfinite(terms.total.item())
        self.optimizer.zero_grad(set_to_none=True)
        if ok or distributed:  # DDP needs every rank in the backward's all-reduce
            self.scaler.scale(terms.total).backward()
        if not ok:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buf, old in zip(buffers, saved):
                    buf.copy_(old)
            self.skipped_steps += 1
            return None
        self._optimizer_step()
        if self.cfg.train.image_every and self.is_main:  # for image logging; detached (frees the graph)
            self._last_batch = (batch, [disparities[0][:1].detach()])
        return terms

    def train_step_emulated(self, batches: list[FrameBatch]) -> list[LossTerms]:
        """One optimiser step over ``len(batches)`` micro-batches in this one process, computed as
        ``DistributedDataParallel`` with one micro-batch per rank computes it: micro-batch ``r`` is
        seeded as rank ``r``, the gradients are averaged, and BatchNorm running statistics end as
        rank 0's (DDP broadcasts rank 0's buffers at every forward). The reference that multi-process
        runs are tested against; not used by :meth:`fit`."""
        n = len(batches)
        self._begin_step()
        self.optimizer.zero_grad(set_to_none=True)
        grads: list[Tensor | None] = [None] * len(self.params)
        buffers = [b for m in self.modules for b in m.buffers()]
        saved = None
        out = []
        for r, batch in enumerate(batches):
            torch.manual_seed(step_seed(self.cfg.train.seed, self.step_count, r))
            terms, _ = self.compute_loss(batch, self.step_count, rank=r, model=self.nets)
            if r == 0:
                saved = [b.detach().clone() for b in buffers]
            terms.total.backward()
            for j, p in enumerate(self.params):
                if p.grad is not None:
                    grads[j] = p.grad / n if grads[j] is None else grads[j] + p.grad / n
            self.optimizer.zero_grad(set_to_none=True)
            out.append(terms)
        with torch.no_grad():
            for b, s in zip(buffers, saved):
                b.copy_(s)
        for g, p in zip(grads, self.params):
            p.grad = g
        self._optimizer_step()
        return out

    # -- validation --------------------------------------------------------------------------
    def validate(self) -> dict:
        """Eigen metrics of the depth net on the validation frames: :func:`depth.inference.predict_disparities`
        and :func:`depth.eval.metrics.compute_depth_metrics` as ``evaluate.py depth`` runs them (velodyne
        protocol: Garg crop, ``1e-3 < gt < 80``). Without GT frames, the photometric loss on the
        held-out samples (:meth:`validation_loss`); without either, ``{}``."""
        if self.val is None:
            if self.val_samples is not None:
                self.last_metrics = self.validation_loss()
                return self.last_metrics
            return {}
        self.depth_net.eval()
        m = self.cfg.model
        disp = predict_disparities(self.depth_net, self.val.images, (self.cfg.data.width, self.cfg.data.height),
                                   min_depth=m.min_depth, max_depth=m.max_depth, device=self.device)
        # stereo-trained models are scored at the scale their baseline fixes, without median scaling
        factor = stereo_scale(self.cfg)
        metrics = compute_depth_metrics(disp, self.val.gt_depths, median_scaling=factor is None,
                                        fixed_scale=factor)
        self.last_metrics = {k: float(v) for k, v in metrics.items()}
        return self.last_metrics

    @torch.no_grad()
    def validation_loss(self) -> dict:
        """The loss of :meth:`compute_loss` on every held-out sample (``val_samples``, in order),
        without gradients: networks in eval mode (BatchNorm running statistics, no dropout), no zoom
        imitation, the auto-mask noise of step 0; the mean over samples of the total loss
        (``val_loss``) and of its photometric term (``val_photometric``), plus ``n_val_samples``.
        Leaves the global random state untouched."""
        for m in self.modules:
            m.eval()
        totals, photometric, n = 0.0, 0.0, 0
        indices = list(range(len(self.val_samples)))
        for start in range(0, len(indices), self.batch_per_rank):
            batch = collate([self.val_samples[i] for i in indices[start:start + self.batch_per_rank]])
            terms, _ = self.compute_loss(batch, step=0, rank=0, model=self.nets, zoom=False)
            totals += float(terms.total) * len(batch)
            photometric += float(terms.photometric) * len(batch)
            n += len(batch)
        return {"val_loss": totals / n, "val_photometric": photometric / n, "n_val_samples": float(n)}

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        o = self.cfg.optim
        return {
            "depth_net": self.depth_net.state_dict(),
            "pose_net": self.pose_net.state_dict() if self.pose_net is not None else None,
            "optimizer": self.optimizer.state_dict(),
            # the lr is a pure function of (step, epoch): Trainer.lr_at; stored for the record
            "scheduler": {"type": "lr_at(step, epoch)", "lr": self.lr_at(self.step_count, self.epoch),
                          "base_lr": o.lr, "milestones": list(o.milestones),
                          "step_milestones": list(o.step_milestones), "gamma": o.gamma,
                          "warmup_steps": o.warmup_steps, "warmup_start_factor": o.warmup_start_factor},
            "scaler": self.scaler.state_dict(),
            "config": to_dict(self.cfg),
            "seed": self.cfg.train.seed,
            "versions": library_versions(),
            "step": self.step_count,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "sampler": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                        "samples_per_rank_done": self.batch_in_epoch * self.batch_per_rank,
                        "world_size": self.world_size, "global_batch": self.cfg.train.batch_size},
            "skipped_steps": self.skipped_steps,
            "bad_samples": self.bad_samples_total,
            "rng": rng_states(),
            "metrics": self.last_metrics,
            "train_seconds": self.train_seconds(),
        }

    def train_seconds(self) -> float:
        """Seconds spent in :meth:`fit` over every sitting of this run (resumes add up)."""
        sitting = time.time() - self._sitting_start if self._sitting_start is not None else 0.0
        return self._seconds_before + sitting

    def save(self) -> Path | None:
        if not self.is_main:
            return None
        path = save_checkpoint(self.state_dict(), self.out_dir / "checkpoints", self.step_count,
                               self.cfg.train.keep_checkpoints)
        self._saved_step = self.step_count
        return path

    def load_state(self, ckpt: dict) -> None:
        self.depth_net.load_state_dict(ckpt["depth_net"])
        if self.pose_net is not None:
            self.pose_net.load_state_dict(ckpt["pose_net"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step_count, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_in_epoch = int(ckpt.get("batch_in_epoch", 0))
        saved_world = (ckpt.get("sampler") or {}).get("world_size", self.world_size)
        if saved_world != self.world_size and self.batch_in_epoch:
            warnings.warn(f"resuming mid-epoch with {self.world_size} processes from a run with "
                          f"{saved_world}: "
                          f"the rest of epoch {self.epoch} is re-sharded, so the run will not repeat the "
                          f"original exactly", stacklevel=2)
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        self.bad_samples_total = int(ckpt.get("bad_samples", 0))
        set_rng_states(ckpt.get("rng") or {})
        self.last_metrics = ckpt.get("metrics", {})
        self._seconds_before = float(ckpt.get("train_seconds", 0.0))
        self._resumed_at = self.step_count

    def resume(self, path: str | Path) -> None:
        self.load_state(load_checkpoint(path, map_location=self.device))

    # -- logging -------------------------------------------------------------------------------
    def _log(self, terms: LossTerms, lr: float) -> None:
        if self.writer is None:
            return
        s = self.step_count
        self.writer.add_scalar("loss/total", terms.total.item(), s)
        self.writer.add_scalar("loss/photometric", terms.photometric.item(), s)
        self.writer.add_scalar("loss/smoothness", float(terms.smoothness.detach()), s)
        self.writer.add_scalar("loss/automask_kept", terms.automask.mean().item(), s)
        self.writer.add_scalar("lr", lr, s)

    def _log_images(self) -> None:
        if self.writer is None or not hasattr(self, "_last_batch"):
            return
        batch, disparities = self._last_batch
        self.writer.add_image("input/target", batch.color_aug[0, 0], self.step_count)
        self.writer.add_image("disparity/scale0", colorize_disparity(disparities[0][0]), self.step_count)

    # -- the loop ------------------------------------------------------------------------------
    def total_steps(self) -> int:
        t = self.cfg.train
        return t.max_steps if t.max_steps > 0 else t.epochs * self.steps_per_epoch

    def _make_loader(self) -> DataLoader:
        t = self.cfg.train
        workers = t.num_workers
        return DataLoader(EpochIndexed(self.train_set, self.skip_errors), batch_size=self.batch_per_rank,
                          sampler=self.sampler, num_workers=workers, collate_fn=collate, drop_last=True,
                          pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                          prefetch_factor=2 if workers > 0 else None)

    def _count_bad(self, batch: FrameBatch) -> FrameBatch | None:
        """Count the batch's dropped samples; None when none is left."""
        bad = batch.bad_samples
        if bad:
            if self.bad_samples == 0 and self.is_main:
                print(f"data.on_bad_sample=skip: skipping {bad[0]}", file=sys.stderr)
            self.bad_samples += len(bad)
        if len(batch) > 0:
            return batch
        if self.world_size > 1:
            raise BadBatchError(f"rank {self.rank}: every sample of a batch at epoch {self.epoch}, batch "
                                f"{self.batch_in_epoch} was bad; with several processes such a batch "
                                f"stops the run (first: {bad[0] if bad else '?'})")
        return None

    def _all_reduce(self, values: list[int], op=torch.distributed.ReduceOp.SUM) -> list[int]:
        """All-reduce a few integers over the ranks (one collective on ``self.collective_device``)."""
        t = torch.tensor(values, dtype=torch.int64)
        return [int(v) for v in all_reduce_(t, op, self.collective_device).tolist()]

    def _end_epoch_report(self) -> None:
        n = self.bad_samples
        if self.collectives:
            n = self._all_reduce([n])[0]
        if n and self.is_main:
            print(f"epoch {self.epoch}: skipped {n} bad samples (data.on_bad_sample=skip)", file=sys.stderr)
            if self.writer is not None:
                self.writer.add_scalar("data/bad_samples", n, self.step_count)
        self.bad_samples_total += n
        self.bad_samples = 0

    def fit(self) -> dict:
        cfg = self.cfg
        if not self._claimed_out_dir:  # the folder's checkpoints are this run's from here on
            check_run_dir(self.out_dir, self._resumed_at, cfg.output.overwrite)
            if self.is_main and cfg.output.overwrite:
                clear_checkpoints(self.out_dir, self._resumed_at)
            self._claimed_out_dir = True
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
            atomic_write_text(self.out_dir / "versions.json", json.dumps(library_versions(), indent=2))
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        total = self.total_steps()
        # the bar's loss is at most PROGRESS_LOSS_EVERY steps old (one host sync each time)
        bar_every = min(cfg.train.log_every, PROGRESS_LOSS_EVERY) if self.is_main and cfg.train.progress else 0
        bar = tqdm(total=total, initial=self.step_count, disable=not (self.is_main and cfg.train.progress),
                   dynamic_ncols=True, desc="train", file=sys.stdout)
        t0 = self._sitting_start = time.time()
        if self._loader is None:
            self._loader = self._make_loader()
        loader = self._loader
        while self.step_count < total:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch * self.batch_per_rank)
            for batch in loader:
                self.batch_in_epoch += 1
                batch = self._count_bad(batch)
                if batch is None:
                    continue
                terms = self.train_step(batch)
                self.step_count += 1
                bar.update(1)
                if terms is not None and self.is_main:
                    if self.step_count % cfg.train.log_every == 0 or self.step_count == 1:
                        self._log(terms, self.optimizer.param_groups[0]["lr"])
                    if bar_every and (self.step_count % bar_every == 0 or self.step_count == 1):
                        bar.set_postfix(loss=f"{terms.total.item():.4f}", refresh=False)
                    if cfg.train.image_every and self.step_count % cfg.train.image_every == 0:
                        self._log_images()
                if cfg.train.val_every and self.step_count % cfg.train.val_every == 0:
                    self._validate_and_log()
                if cfg.train.checkpoint_every and self.step_count % cfg.train.checkpoint_every == 0:
                    self.save()
                if self.step_count >= total:
                    break
                if self._stop_agreed if self.collectives else self.stop_request.requested:
                    return self._stop(bar)
            else:  # epoch finished: the scheduler steps at the end of the epoch
                self._end_epoch_report()
                self.epoch += 1
                self.batch_in_epoch = 0
                if not cfg.train.val_every:
                    self._validate_and_log()
                if not cfg.train.checkpoint_every:
                    self.save()
        bar.close()
        if self.bad_samples or self.collectives:  # (a collective: every rank calls it)
            self._end_epoch_report()
        metrics = self._validate_and_log()
        last = self.out_dir / "checkpoints" / f"step_{self.step_count:08d}.pt"
        if metrics or not (last.is_file() and self._saved_step == self.step_count):  # no duplicate write
            self.save()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        # seconds: training time over every sitting; seconds_this_sitting: since this fit() began
        result = {"steps": self.step_count, "epochs": self.epoch, "seconds": self.train_seconds(),
                  "seconds_this_sitting": time.time() - t0,
                  "skipped_steps": self.skipped_steps, "bad_samples": self.bad_samples_total, **metrics}
        if self.is_main:
            atomic_write_text(self.out_dir / "metrics.json", json.dumps(result, indent=2))
        return result

    def _stop(self, bar) -> dict:
        """End a run asked to stop (:attr:`stop_request`) after the step just taken: rank 0 writes a
        checkpoint of this step (unless one was just written), every rank waits for it, no final
        validation and no ``metrics.json`` (the run is not finished). Returns ``steps``, ``epochs``,
        ``stopped`` (the signal's name) and ``checkpoint`` (the file, on rank 0)."""
        bar.close()
        path = None
        if self.is_main:
            last = self.out_dir / "checkpoints" / f"step_{self.step_count:08d}.pt"
            path = last if (self._saved_step == self.step_count and last.is_file()) else self.save()
        if self.collectives:  # the other ranks exit once rank 0's checkpoint is complete
            self._all_reduce([1])
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        return {"steps": self.step_count, "epochs": self.epoch,
                "stopped": self.stop_request.name or "a stop request of another rank",
                "checkpoint": str(path) if path is not None else None}

    def _validate_and_log(self) -> dict:
        if not self.is_main:
            return {}
        if getattr(self, "_validated_at", None) == self.step_count:  # e.g. val_every hit the last step
            return self.last_metrics
        self._validated_at = self.step_count
        metrics = self.validate()
        if metrics and self.writer is not None:
            for k, v in metrics.items():
                self.writer.add_scalar(f"val/{k}", v, self.step_count)
            if self.cfg.train.image_every:
                self._log_images()
        return metrics
