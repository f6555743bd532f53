"""GPU check: training-step rates, peak memory, host-device syncs and loader-fed throughput, one table.

Run by ``bench/gpu.sh`` (which installs the carried wheels first); ``--cpu-smoke`` runs the same
code on the CPU with tiny sizes and one or two steps per burst. What it measures, in this order
(cheap rows first; every row is skipped rather than started when the time budget cannot hold it):

1. **step** rows, compile off: the project's ``Trainer.train_step`` on one batch already on the
   device (made by the project's dataset and ``collate`` from synthetic KITTI-size frames), for
   ``baseline`` (``configs/baseline_kitti_640x192.yaml``: ResNet-18, Monodepth2 decoder),
   ``dca`` (the same + ``model.dca=true augment.zoom_prob=0.5``), ``dabnet``
   (``configs/dabnet_kitti_640x192.yaml`` + ``model.decoder=diffnet``; only when the config has
   ``model.decoder``) and ``minimal`` (``bench/train_speed.MinimalStep``, a Monodepth2-style step
   with no framework; under AMP its networks run in autocast, its loss in fp32), at each
   ``--sizes`` and ``train.amp`` ``off`` and ``auto``; ``model.pretrained=false`` throughout.
2. **e2e** rows: ``Trainer.fit`` fed by the trainer's own loader from synthetic 1242x375 PNG frames
   in the KITTI raw layout, ``train.num_workers`` = ``auto`` when the config accepts it, else the
   cores available to the process; ``loader`` is the same with a step that only copies the batch
   to the device (the loader's ceiling). Two direct steps before ``fit`` take compilation and
   cuDNN warm-up out of the loader's start; the rate is taken over ``--e2e-steps`` steps after
   ``2 x workers + 4`` (the loader's prefetch backlog).
3. The same with compile on (baseline and minimal at the first size with AMP auto, then the e2e
   baseline, then the rest): ``train.compile=true`` where the config has it, else
   ``torch.compile`` of the trainer's ``model`` (both networks; the loss stays eager), and of the
   minimal step's two networks. The compile time is the warm-up column.

Each timed burst runs under ``torch.cuda.set_sync_debug_mode("warn")``; the warnings are counted
(``syncs``, per step) and their first source lines kept. ``20 ep KITTI`` is the time 20 epochs of
the Eigen-Zhou split (39,810 samples) would take at that rate. A failing row prints its error
and the run goes on. Every row is appended to ``<out>/results.jsonl`` as it finishes;
``--resume`` skips the rows already there (a row that was started and never finished, because
the process died in it, is recorded as crashed) and ``--table`` prints the table of that file.

    python bench/gpu_check.py [--sizes 640x192 1024x320] [--batch 12] [--budget 450]
    python bench/gpu_check.py --cpu-smoke            # the same code on the CPU, tiny
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import gc
import importlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

import torch

ROOT = Path(__file__).resolve().parents[1]

KITTI_EPOCH = 39_810  # Eigen-Zhou training samples (Monodepth2's split)
EPOCHS = 20
MONODEPTH2_RATE = EPOCHS * KITTI_EPOCH / (12 * 3600)  # published: 20 epochs in 12 h on a Titan Xp
E2E_GOAL = 12 * MONODEPTH2_RATE
PRESET_BASELINE = "configs/baseline_kitti_640x192.yaml"
PRESET_DABNET = "configs/dabnet_kitti_640x192.yaml"
DATE = "2000_01_01"
DRIVE = f"{DATE}_drive_0001_sync"
FRAME_W, FRAME_H = 1242, 375
NETS = ("baseline", "dca", "dabnet", "minimal")


class BudgetExceeded(BaseException):
    """Raised by the alarm at the time budget (a BaseException: library code does not swallow it)."""


# ------------------------------------------------------------------ the project, through its public names

def _first(modules: list[str], name: str):
    """``name`` from the first of ``modules`` that has it (modules move; names stay)."""
    errors = []
    for m in modules:
        try:
            mod = importlib.import_module(m)
        except ImportError as e:
            errors.append(f"{m}: {e}")
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
        errors.append(f"{m} has no {name}")
    raise ImportError(f"cannot find {name}: " + "; ".join(errors))


class Project:
    """The project's public functions the check calls: config loading, the trainer, the datasets,
    the batch collation, the networks, and the bench's minimal step."""

    def __init__(self):
        cfg_mod = importlib.import_module("depth.config")
        self.load_config, self.Config = cfg_mod.load_config, cfg_mod.Config
        self.ConfigError = getattr(cfg_mod, "ConfigError", ValueError)
        self.Trainer = _first(["depth.trainer", "depth.train.trainer", "depth.train"], "Trainer")
        trainer_mod = sys.modules[self.Trainer.__module__]
        self.collate = getattr(trainer_mod, "collate", None) or _first(["data.frames", "depth.batch"], "collate")
        self.build_run_data = _first(["data.datasets"], "build_run_data")
        self.build_networks = _first(["depth.model", "depth.networks"], "build_networks")
        self.MinimalStep = _first(["bench.train_speed"], "MinimalStep")
        self.keys = set(self._keys(self.Config()))

    def _keys(self, node, prefix=""):
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if dataclasses.is_dataclass(v):
                yield from self._keys(v, f"{prefix}{f.name}.")
            else:
                yield f"{prefix}{f.name}"

    def config(self, preset: str | None, overrides: list[str]):
        return self.load_config(ROOT / preset if preset else None, overrides)

    def accepts(self, preset: str, override: str) -> str | None:
        """None when ``override`` loads on ``preset``, else the error's first line."""
        try:
            self.config(preset, ["model.pretrained=false", override])
            return None
        except (self.ConfigError, ValueError, TypeError) as e:
            return str(e).splitlines()[0]


# ------------------------------------------------------------------ synthetic KITTI-layout frames

def _calib_text() -> str:
    fx, cx, cy = 7.215377e02, 6.095593e02, 1.728540e02
    lines = ["calib_time: 01-Jan-2000 00:00:00", "corner_dist: 9.950000e-02", "R_rect_00: " + " ".join(
        f"{v:.6e}" for v in np.eye(3).ravel())]
    for cam, tx in ((2, 4.485728e01), (3, -3.395242e02)):
        P = [fx, 0, cx, tx, 0, fx, cy, 0, 0, 0, 1, 0]
        lines += [f"S_rect_0{cam}: {FRAME_W:.6e} {FRAME_H:.6e}", f"R_rect_0{cam}: " + " ".join(
            f"{v:.6e}" for v in np.eye(3).ravel()), f"P_rect_0{cam}: " + " ".join(f"{v:.6e}" for v in P)]
    return "\n".join(lines) + "\n"


_BASE = None


def _frame_init(seed: int) -> None:
    """Pool initialiser: one smooth texture (3 octaves of bicubic noise) twice the frame width."""
    global _BASE
    import cv2
    cv2.setNumThreads(1)
    rng = np.random.default_rng(seed)
    base = np.zeros((FRAME_H, 2 * FRAME_W, 3), np.float32)
    for div, amp in ((64, 90.0), (16, 45.0), (4, 25.0)):
        small = rng.random((FRAME_H // div + 2, 2 * FRAME_W // div + 2, 3), dtype=np.float32)
        base += amp * cv2.resize(small, (2 * FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)
    _BASE = np.clip(base - base.mean() + 110, 3, 250).astype(np.uint8)


def _frame_write(args) -> int:
    """Frame ``i``: the texture seen through a window moving 7 px a frame, plus +-4 grain; PNG."""
    import cv2
    i, path = args
    rng = np.random.default_rng(i)
    off = (i * 7) % FRAME_W
    img = _BASE[:, off:off + FRAME_W].astype(np.int16) + rng.integers(-4, 5, (FRAME_H, FRAME_W, 3), dtype=np.int16)
    if not cv2.imwrite(path, np.clip(img, 0, 255).astype(np.uint8)):
        raise OSError(f"could not write {path}")
    return os.path.getsize(path)


def write_frames(root: Path, n: int, workers: int, seed: int = 0) -> dict:
    """``n`` frames (1242x375 PNG, ~750 KB each, like KITTI raw's) of one drive in the KITTI raw layout
    under ``root``, its ``calib_cam_to_cam.txt`` and ``splits/train_files.txt`` (frames 1..n-2, left
    camera); reused when ``root/frames.json`` says the same. Returns ``{frames, mean_kb, decode_ms}``
    (decode: OpenCV on one thread, the mean over 8 frames)."""
    import cv2
    t0 = time.perf_counter()
    marker = root / "frames.json"
    want = {"frames": n, "width": FRAME_W, "height": FRAME_H, "seed": seed, "version": 1}
    if marker.is_file() and json.loads(marker.read_text()).get("spec") == want:
        info = json.loads(marker.read_text())
    else:
        if root.exists():
            shutil.rmtree(root)
        folder = root / DATE / DRIVE / "image_02" / "data"
        folder.mkdir(parents=True)
        (root / DATE / "calib_cam_to_cam.txt").write_text(_calib_text())
        jobs = [(i, str(folder / f"{i:010d}.png")) for i in range(n)]
        if workers <= 1:
            _frame_init(seed)
            sizes = [_frame_write(job) for job in jobs]
        else:
            # spawn, not fork: a forked child of a process whose OpenCV/OpenMP thread pools already
            # started can deadlock in its first cv2 call
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_frame_init, initargs=(seed,)) as pool:
                sizes = list(pool.imap_unordered(_frame_write, jobs, chunksize=8))
        (root / "splits").mkdir()
        (root / "splits" / "train_files.txt").write_text(
            "".join(f"{DATE}/{DRIVE} {i} l\n" for i in range(1, n - 1)))
        info = {"spec": want, "mean_kb": float(np.mean(sizes)) / 1e3}
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, marker)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    paths = sorted((root / DATE / DRIVE / "image_02" / "data").glob("*.png"))[:8]
    blobs = [np.fromfile(p, np.uint8) for p in paths]
    t0 = time.perf_counter()
    for b in blobs:
        cv2.imdecode(b, cv2.IMREAD_COLOR)
    decode_ms = (time.perf_counter() - t0) / len(blobs) * 1e3
    cv2.setNumThreads(threads)
    return {"frames": n, "mean_kb": info["mean_kb"], "decode_ms": decode_ms, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------ timing helpers

class SyncWatch:
    """Counts the warnings of ``torch.cuda.set_sync_debug_mode("warn")`` between start and stop
    (CUDA only; None elsewhere) and the source lines they came from."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self._cm = None
        self.count: int | None = None
        self.sites: collections.Counter = collections.Counter()

    def start(self):
        self._cm = warnings.catch_warnings(record=True)
        self._rec = self._cm.__enter__()
        warnings.simplefilter("always")
        if self.cuda:
            torch.cuda.set_sync_debug_mode("warn")

    def stop(self):
        if self._cm is None:
            return
        if self.cuda:
            torch.cuda.set_sync_debug_mode(0)
        self._cm.__exit__(None, None, None)
        self._cm = None
        syncs = [w for w in self._rec if "synchroniz" in str(w.message).lower()]
        for w in syncs:
            try:
                where = str(Path(w.filename).resolve().relative_to(ROOT))
            except ValueError:
                where = Path(w.filename).name
            self.sites[f"{where}:{w.lineno}"] += 1
        self.count = len(syncs) if self.cuda else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None


def _amp_dtype(amp: str, device: torch.device):
    """The dtype ``train.amp=auto`` gives on ``device`` (the minimal step's autocast)."""
    if amp == "off" or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _dtype_label(dtype) -> str:
    return "off" if dtype is None else str(dtype).replace("torch.", "")


class _AutocastDepth:
    """The minimal step's depth net under autocast (float outputs), optionally compiled."""

    def __init__(self, net, dtype, backend: str | None):
        self.net, self.dtype = net, dtype
        self.fn = torch.compile(net.forward_scales, backend=backend) if backend else net.forward_scales

    def parameters(self):
        return self.net.parameters()

    def forward_scales(self, x):
        ctx = torch.autocast("cuda", dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()
        with ctx:
            out = self.fn(x)
        return [o.float() for o in out]


class _AutocastPose:
    def __init__(self, net, dtype, backend: str | None):
        self.net, self.dtype = net, dtype
        self.fn = torch.compile(net, backend=backend) if backend else net

    def parameters(self):
        return self.net.parameters()

    def __call__(self, a, b):
        ctx = torch.autocast("cuda", dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()
        with ctx:
            aa, t = self.fn(a, b)
        return aa.float(), t.float()


# ------------------------------------------------------------------ rows

@dataclasses.dataclass
class Row:
    kind: str  # step | e2e | loader
    net: str
    size: tuple[int, int]  # (W, H)
    amp: str  # off | auto (the train.amp value)
    compile: bool
    key: str = ""

    def __post_init__(self):
        self.key = f"{self.kind}:{self.net}:{self.size[0]}x{self.size[1]}:{self.amp}:{'c' if self.compile else 'e'}"


class Check:
    def __init__(self, args, project: Project, device: torch.device, data_root: Path, out: Path, work: Path,
                 deadline: float):
        self.a, self.p, self.device = args, project, device
        self.data_root, self.out, self.work, self.deadline = data_root, out, work, deadline
        self.results: dict[str, dict] = {}
        self.compile_times: dict[str, float] = {}
        self._batches: dict = {}
        self.has_compile = "train.compile" in project.keys
        self.has_decoder = "model.decoder" in project.keys
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.workers = "auto" if project.accepts(PRESET_BASELINE, "train.num_workers=auto") is None \
            else str(self.cores)

    # -- configs --------------------------------------------------------------------------------
    def _net_preset(self, net: str) -> tuple[str, list[str]]:
        if net == "dca":
            return PRESET_BASELINE, ["model.dca=true", "augment.zoom_prob=0.5"]
        if net == "dabnet":
            return PRESET_DABNET, ["model.decoder=diffnet"]
        return PRESET_BASELINE, []

    def _overrides(self, row: Row, extra: list[str]) -> list[str]:
        w, h = row.size
        o = ["model.pretrained=false", f"train.device={self.device.type}", f"data.height={h}", f"data.width={w}",
             f"train.batch_size={self.a.batch}", f"train.amp='{row.amp}'", f"output.dir={self.work / 'runs' / row.key.replace(':', '_')}",
             "output.overwrite=true", "train.progress=false", "train.log_every=1000000000", "train.image_every=0",
             "train.val_every=0", "train.checkpoint_every=1000000000", f"data.root={self.data_root}",
             f"data.split={self.data_root / 'splits'}", "data.img_ext=png", "data.val_gt=none",
             "data.synthetic.generate=false"]
        if self.has_compile:
            o.append(f"train.compile={'true' if row.compile else 'false'}")
        return o + extra

    def _cfg(self, row: Row, extra: list[str] = ()):
        preset, net_extra = self._net_preset(row.net)
        return self.p.config(preset, self._overrides(row, [*net_extra, *extra]))

    def _data(self, cfg):
        return self.p.build_run_data(cfg.data, cfg.augment, cfg.train.seed).train_set

    def _batch(self, cfg, train_set):
        d = cfg.data
        key = (d.width, d.height, tuple(d.frame_ids), d.intrinsics, d.stereo)
        if key not in self._batches:
            self._batches[key] = self.p.collate([train_set[i] for i in range(self.a.batch)])
        return self._batches[key].to(self.device)

    def _compile_trainer(self, trainer) -> str:
        if self.has_compile:
            return "train.compile"
        trainer.model = torch.compile(trainer.model, backend=self.a.compile_backend)
        return f"torch.compile(model, {self.a.compile_backend})"

    # -- one row --------------------------------------------------------------------------------
    def estimate(self, row: Row) -> float:
        gpu = self.device.type == "cuda"
        base = (12.0 if gpu else 8.0) if row.kind == "step" else (45.0 if gpu else 40.0)
        if not row.compile:
            return base
        seen = self.compile_times.get(row.net) or max(self.compile_times.values(), default=0.0)
        return base + (1.3 * seen if seen else (120.0 if gpu else 240.0))

    def run(self, row: Row) -> dict:
        rec = {"key": row.key, "kind": row.kind, "net": row.net, "size": f"{row.size[0]}x{row.size[1]}",
               "batch": self.a.batch, "amp": row.amp, "compile": "on" if row.compile else "off"}
        if row.net == "dabnet" and not self.has_decoder:
            return {**rec, "status": "skipped", "note": "no model.decoder key in the config (no DaB-Net network yet)"}
        if row.net == "dabnet":
            why = self.p.accepts(PRESET_DABNET, "model.decoder=diffnet")
            if why:
                return {**rec, "status": "skipped", "note": f"model.decoder=diffnet not accepted: {why}"}
        left = self.deadline - time.time()
        need = self.estimate(row)
        if left - need < self.a.margin:
            return {**rec, "status": "skipped", "note": f"time budget: ~{need:.0f} s needed, {left:.0f} s left"}
        t0 = time.time()
        try:
            _free(self.device)
            if row.compile:
                torch._dynamo.reset()
                with contextlib.suppress(Exception):
                    torch._dynamo.utils.counters.clear()
            if row.kind == "step":
                rec.update(self._step(row))
            else:
                rec.update(self._e2e(row))
            rec["status"] = "ok"
            if row.compile:
                with contextlib.suppress(Exception):
                    c = torch._dynamo.utils.counters
                    rec["graph_breaks"] = int(sum(c["graph_break"].values()))
                    rec["graphs"] = int(c["stats"]["unique_graphs"])
        except torch.cuda.OutOfMemoryError as e:
            rec.update(status="oom", note=str(e).splitlines()[0][:120])
        except BudgetExceeded:
            rec.update(status="stopped", note="stopped at the time budget")
            raise
        except Exception as e:  # a failing burst is reported and the run goes on
            rec.update(status="failed", note=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160])
            print(f"  {row.key} failed:\n" + "".join(traceback.format_exc().splitlines(True)[-8:]), flush=True)
        finally:
            rec["seconds"] = time.time() - t0
            if row.compile:
                with contextlib.suppress(Exception):
                    torch._dynamo.reset()
            _free(self.device)
        if rec.get("status") == "ok" and row.compile and rec.get("warmup_s") is not None:
            self.compile_times[row.net] = max(self.compile_times.get(row.net, 0.0), rec["warmup_s"])
        return rec

    def _timed(self, fn, warm: int, steps: int) -> dict:
        dev = self.device
        t0 = time.perf_counter()
        for _ in range(warm):
            fn()
        _sync(dev)
        warm_s = time.perf_counter() - t0
        watch = SyncWatch(dev.type == "cuda")
        watch.start()
        try:
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
        finally:
            watch.stop()
        _sync(dev)
        dt = (time.perf_counter() - t0) / steps
        return {"warmup_s": warm_s, "steps_s": 1 / dt, "samples_s": self.a.batch / dt, "peak_gib": _peak_gib(dev),
                "syncs": watch.count, "syncs_per_step": None if watch.count is None else watch.count / steps,
                "sync_sites": watch.sites.most_common(4)}

    def _step(self, row: Row) -> dict:
        dev = self.device
        cfg = self._cfg(row)
        train_set = self._data(cfg)
        batch = self._batch(cfg, train_set)
        if row.net == "minimal":
            nets = self.p.build_networks(cfg).to(dev)
            dtype = _amp_dtype(row.amp, dev)
            backend = self.a.compile_backend if row.compile else None
            step = self.p.MinimalStep(_AutocastDepth(nets.depth_net, dtype, backend),
                                      _AutocastPose(nets.pose_net, dtype, backend), cfg.data.height,
                                      cfg.data.width, dev)
            color, color_aug, _ = batch.network_images(dev)
            K = batch.K.float()
            out = self._timed(lambda: step(color, color_aug, K), self.a.warmup, self.a.steps)
            return {**out, "amp_dtype": _dtype_label(dtype), "how": f"torch.compile(nets, {backend})" if backend else ""}
        trainer = self.p.Trainer(cfg, train_set)
        how = self._compile_trainer(trainer) if row.compile else ""
        out = self._timed(lambda: trainer.train_step(batch), self.a.warmup, self.a.steps)
        return {**out, "amp_dtype": _dtype_label(getattr(trainer, "amp_dtype", None)), "how": how}

    def _e2e(self, row: Row) -> dict:
        dev, a = self.device, self.a
        workers = self.workers
        n_workers = self.cores if workers == "auto" else int(workers)
        warm = 2 * n_workers + 4
        extra = [f"train.num_workers={workers}", f"train.max_steps={warm + a.e2e_steps}"]
        cfg = self._cfg(row, extra)
        if getattr(cfg.data, "cache_dir", ""):  # the preset's frame cache: a fresh one here, built before fit
            cfg = self._cfg(row, [*extra, f"data.cache_dir={self.work / 'cache' / row.key.replace(':', '_')}"])
        t_data = time.perf_counter()
        train_set = self._data(cfg)
        data_s = time.perf_counter() - t_data
        trainer = self.p.Trainer(cfg, train_set)
        how = self._compile_trainer(trainer) if row.compile else ""
        # compilation and cuDNN warm-up before the loader starts (train_step does not advance the run)
        batch = self._batch(cfg, train_set)
        t0 = time.perf_counter()
        for _ in range(2):
            if row.kind == "e2e":
                trainer.train_step(batch)
        _sync(dev)
        warm_s = time.perf_counter() - t0
        del batch
        inner = trainer.train_step
        watch = SyncWatch(dev.type == "cuda")
        state = {"n": 0, "t0": None, "t1": None, "first": None}

        def step(b):
            n = state["n"]
            if n == 0:
                state["first"] = time.perf_counter()
            if n == warm:
                _sync(dev)
                watch.start()
                state["t0"] = time.perf_counter()
            if row.kind == "e2e":
                result = inner(b)
            else:  # loader: only the copy to the device
                b.to(dev, non_blocking=True)
                result = None
            state["n"] = n + 1
            if n == warm + a.e2e_steps - 1:
                watch.stop()
                _sync(dev)
                state["t1"] = time.perf_counter()
            return result

        trainer.train_step = step
        t_fit = time.perf_counter()
        try:
            trainer.fit()
        finally:
            watch.stop()
            shutil.rmtree(cfg.output.dir, ignore_errors=True)
        if state["t1"] is None:
            raise RuntimeError(f"fit ran {state['n']} steps, fewer than the {warm + a.e2e_steps} asked")
        dt = (state["t1"] - state["t0"]) / a.e2e_steps
        samples_needed = (warm + a.e2e_steps) * a.batch
        note = f"workers={workers}" + (f" ({n_workers})" if workers == "auto" else "")
        if len(train_set) < samples_needed:
            note += f"; {len(train_set)} samples < {samples_needed}: epochs restart inside the run"
        if getattr(cfg.data, "cache_dir", ""):
            note += f"; data.cache_dir (built in {data_s:.0f} s)"
        return {"warmup_s": warm_s, "steps_s": 1 / dt, "samples_s": a.batch / dt, "peak_gib": _peak_gib(dev),
                "syncs": watch.count, "syncs_per_step": None if watch.count is None else watch.count / a.e2e_steps,
                "sync_sites": watch.sites.most_common(4), "first_batch_s": state["first"] - t_fit,
                "amp_dtype": _dtype_label(getattr(trainer, "amp_dtype", None)), "how": how, "note": note}


# ------------------------------------------------------------------ plan, table

def plan(sizes: list[tuple[int, int]], compile_sizes: list[tuple[int, int]],
         compile_amps: tuple[str, ...] = ("auto", "off")) -> list[Row]:
    """Cheap rows first, then the compiled ones by value (the recipe's size and AMP first)."""
    s0 = sizes[0]
    rows = [Row("step", n, s, amp, False) for s in sizes for n in NETS for amp in ("off", "auto")]
    rows += [Row("loader", "baseline", s0, "auto", False), Row("e2e", "baseline", s0, "auto", False),
             Row("e2e", "dca", s0, "auto", False)]
    comp = [Row("step", n, s, amp, True) for amp in compile_amps for s in compile_sizes for n in NETS]
    # the recipe (baseline at the first size, AMP auto) and its reference, then the same fed by the loader
    first = [r for r in comp if r.size == s0 and r.amp == "auto" and r.net in ("baseline", "minimal")]
    rows += first + ([Row("e2e", "baseline", s0, "auto", True)] if comp else []) + [r for r in comp if r not in first]
    return rows


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def epoch20_hours(samples_s: float | None) -> float | None:
    return None if not samples_s else EPOCHS * KITTI_EPOCH / samples_s / 3600


def table(results: list[dict]) -> str:
    ref = {(r["size"], r["amp"], r["compile"]): r["samples_s"] for r in results
           if r.get("net") == "minimal" and r.get("kind") == "step" and r.get("status") == "ok"}
    head = (f"{'kind':<6} {'net':<8} {'size':>8} {'b':>3} {'amp':>4} {'comp':>4} {'warm s':>6} {'steps/s':>8} "
            f"{'samples/s':>9} {'x min':>5} {'peak GiB':>8} {'syncs/st':>8} {'20ep h':>6}  note")
    lines = [head, "-" * len(head)]
    for r in results:
        if r.get("status") != "ok":
            lines.append(f"{r['kind']:<6} {r['net']:<8} {r['size']:>8} {r['batch']:>3} {r['amp']:>4} "
                         f"{r['compile']:>4}  {r.get('status', '?')}: {r.get('note', '')}")
            continue
        x = ref.get((r["size"], r["amp"], r["compile"]))
        ratio = r["samples_s"] / x if x and r["net"] != "minimal" and r["kind"] == "step" else None
        notes = [r.get("note", ""), f"amp={r['amp_dtype']}" if r["amp"] == "auto" and r.get("amp_dtype") else "",
                 r.get("how", "")]
        if "graph_breaks" in r:
            notes.append(f"graphs {r.get('graphs')}, breaks {r['graph_breaks']}")
        if r.get("sync_sites"):
            notes.append("syncs at " + ", ".join(f"{s} x{c}" for s, c in r["sync_sites"][:2]))
        lines.append(
            f"{r['kind']:<6} {r['net']:<8} {r['size']:>8} {r['batch']:>3} {r['amp']:>4} {r['compile']:>4} "
            f"{_fmt(r.get('warmup_s'), '6.1f')} {_fmt(r['steps_s'], '8.2f')} {_fmt(r['samples_s'], '9.1f')} "
            f"{_fmt(ratio, '5.2f')} {_fmt(r.get('peak_gib'), '8.2f')} {_fmt(r.get('syncs_per_step'), '8.1f')} "
            f"{_fmt(epoch20_hours(r['samples_s']), '6.2f')}  " + "; ".join(n for n in notes if n))
    return "\n".join(lines)


def goals(results: list[dict], size0: str) -> str:
    ok = [r for r in results if r.get("status") == "ok"]
    e2e = [r for r in ok if r["kind"] == "e2e" and r["net"] == "baseline" and r["size"] == size0]
    out = [f"Monodepth2's published rate: 20 epochs x {KITTI_EPOCH} samples in 12 h on a Titan Xp = "
           f"{MONODEPTH2_RATE:.1f} samples/s; goal for e2e baseline {size0}: >= 12x = {E2E_GOAL:.0f} samples/s"]
    if e2e:
        best = max(e2e, key=lambda r: r["samples_s"])
        out.append(f"  e2e baseline {size0}: best {best['samples_s']:.1f} samples/s (compile {best['compile']}) = "
                   f"{best['samples_s'] / MONODEPTH2_RATE:.1f}x, 20 epochs in {epoch20_hours(best['samples_s']):.2f} h: "
                   f"{'met' if best['samples_s'] >= E2E_GOAL else 'NOT met'}")
    ref = {(r["size"], r["amp"], r["compile"]): r for r in ok if r["net"] == "minimal" and r["kind"] == "step"}
    for r in ok:
        m = ref.get((r["size"], r["amp"], r["compile"]))
        if r["kind"] == "step" and r["net"] == "baseline" and m:
            q = r["samples_s"] / m["samples_s"]
            out.append(f"  project step / minimal step, baseline {r['size']} amp {r['amp']} compile {r['compile']}: "
                       f"{q:.2f} (goal >= 1.5: {'met' if q >= 1.5 else 'NOT met'})")
    synced = [r for r in ok if r.get("syncs")]
    counted = [r for r in ok if r.get("syncs") is not None]
    if counted:
        out.append(f"  host-device syncs inside the timed steps: {len(synced)} of {len(counted)} rows have some "
                   f"(goal: none)" + ("" if not synced else "; e.g. " + ", ".join(
                       f"{s} x{c}" for s, c in synced[0]["sync_sites"][:3])))
    return "\n".join(out)


# ------------------------------------------------------------------ main

def _versions() -> str:
    out = []
    for name in ("numpy", "cv2", "kornia", "albumentations", "omegaconf", "timm", "numba"):
        try:
            out.append(f"{name} {importlib.import_module(name).__version__}")
        except Exception as e:  # noqa: BLE001 - reported, not fatal here
            out.append(f"{name} MISSING ({type(e).__name__})")
    return ", ".join(out)


def _load_results(path: Path) -> tuple[dict, list[str]]:
    done, started = {}, []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "start":
                started.append(ev["key"])
            elif ev.get("event") == "row":
                done[ev["key"]] = ev
    return done, [k for k in started if k not in done]


def _append(path: Path, event: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(event, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _parse_size(s: str) -> tuple[int, int]:
    w, h = s.lower().split("x")
    return int(w), int(h)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=None, help="WxH (default 640x192 1024x320)")
    ap.add_argument("--compile-sizes", nargs="+", default=None, help="WxH of the compiled rows (default --sizes)")
    ap.add_argument("--compile-amps", nargs="+", default=None, choices=["auto", "off"],
                    help="train.amp values of the compiled rows (default auto off)")
    ap.add_argument("--no-compile", action="store_true", help="leave out the compiled rows")
    ap.add_argument("--compile-backend", default=None,
                    help="torch.compile backend where the check compiles (default inductor; aot_eager with "
                         "--cpu-smoke: the same graph capture, forward and backward, without code generation)")
    ap.add_argument("--match", nargs="+", default=None,
                    help="run only the rows whose key (kind:net:WxH:amp:e|c) contains one of these")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's; 1 with --cpu-smoke)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default 12)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps per burst (default 3)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per burst (default 20)")
    ap.add_argument("--e2e-steps", type=int, default=None, help="timed loader-fed steps (default 40)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole check (default 450; $GPU_CHECK_DEADLINE, an absolute "
                         "time.time(), wins)")
    ap.add_argument("--margin", type=float, default=20.0, help="seconds kept free at the end")
    ap.add_argument("--out", default=os.environ.get("GPU_CHECK_OUT", "/tmp/gpu_check"),
                    help="where results.jsonl goes (default $GPU_CHECK_OUT or /tmp/gpu_check)")
    ap.add_argument("--work", default=os.environ.get("GPU_CHECK_WORK", "/tmp/gpu_check"),
                    help="scratch: frames, runs, caches (default $GPU_CHECK_WORK or /tmp/gpu_check)")
    ap.add_argument("--cpu-smoke", action="store_true", help="the same on the CPU: tiny sizes, 1-2 steps")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in results.jsonl")
    ap.add_argument("--table", action="store_true", help="print the table of results.jsonl and exit")
    args = ap.parse_args(argv)
    smoke = args.cpu_smoke
    d = dict(sizes=["192x64", "256x96"] if smoke else ["640x192", "1024x320"], batch=2 if smoke else 12,
             warmup=1 if smoke else 3, steps=2 if smoke else 20, e2e_steps=3 if smoke else 40,
             budget=1800.0 if smoke else 450.0)
    for k, v in d.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.compile_sizes is None:
        args.compile_sizes = args.sizes[:1] if smoke else args.sizes
    if args.compile_amps is None:
        args.compile_amps = ["auto"] if smoke else ["auto", "off"]
    if args.compile_backend is None:
        args.compile_backend = "aot_eager" if smoke else "inductor"
    if args.no_compile:
        args.compile_sizes, args.compile_amps = [], []
    if args.threads or smoke:  # a shared CPU: one thread per op avoids waiting on descheduled ones
        torch.set_num_threads(args.threads or 1)
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    try:
        sizes = [_parse_size(s) for s in args.sizes]
        compile_sizes = [_parse_size(s) for s in args.compile_sizes]
    except ValueError:
        print(f"error: --sizes/--compile-sizes: expected WxH (e.g. 640x192), got {args.sizes} {args.compile_sizes}",
              file=sys.stderr)
        return 2
    size0 = f"{sizes[0][0]}x{sizes[0][1]}"
    if args.table:
        done, crashed = _load_results(results_path)
        print(table(list(done.values())))
        print(goals(list(done.values()), size0))
        return 0
    if not smoke and not torch.cuda.is_available():
        print("error: no CUDA GPU visible (torch.cuda.is_available() is False); --cpu-smoke runs on the CPU",
              file=sys.stderr)
        return 2
    deadline = float(os.environ.get("GPU_CHECK_DEADLINE", "0")) or time.time() + args.budget
    device = torch.device("cpu" if smoke else "cuda")

    def on_alarm(signum, frame):
        raise BudgetExceeded()

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(deadline - time.time() - args.margin / 4)))

    if not args.resume and results_path.exists():
        results_path.unlink()
    done, crashed = _load_results(results_path)
    for key in crashed:
        kind, net, size, amp, comp = key.split(":")
        ev = {"event": "row", "key": key, "kind": kind, "net": net, "size": size, "batch": args.batch, "amp": amp,
              "compile": "on" if comp == "c" else "off", "status": "crashed",
              "note": "the process died in this row (see the log)"}
        _append(results_path, ev)
        done[key] = ev

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    n_workers = cores
    frames_needed = (2 * n_workers + 4 + args.e2e_steps + 2) * args.batch + 4
    t0 = time.time()
    frames = write_frames(work / "frames", frames_needed, cores)
    project = Project()
    print(f"python {platform.python_version()}, torch {torch.__version__}"
          + (f" (CUDA {torch.version.cuda}), {torch.cuda.get_device_name(0)}, capability "
             f"{'.'.join(map(str, torch.cuda.get_device_capability(0)))}, bf16 "
             f"{torch.cuda.is_bf16_supported()}" if device.type == "cuda" else ", CPU smoke run")
          + f"; {cores} cores, {os.cpu_count()} CPUs")
    with contextlib.suppress(OSError):
        shm = shutil.disk_usage("/dev/shm")
        print(f"/dev/shm {shm.total / 2 ** 30:.1f} GiB ({shm.free / 2 ** 30:.1f} free)")
    print(_versions())
    print(f"frames: {frames['frames']} synthetic 1242x375 PNG in the KITTI raw layout, {frames['mean_kb']:.0f} KB "
          f"each, {frames['decode_ms']:.1f} ms to decode on one thread (ready in {frames['seconds']:.1f} s)")
    check = Check(args, project, device, work / "frames", out, work, deadline)
    print(f"config keys: train.compile {'yes' if check.has_compile else 'no (compile = torch.compile(model))'}, "
          f"model.decoder {'yes' if check.has_decoder else 'no (dabnet rows skipped)'}, "
          f"train.num_workers={check.workers}")
    print("compiled rows: " + ("train.compile=true" if check.has_compile else
                                f"torch.compile(backend={args.compile_backend!r})")
          + f"; the minimal step: torch.compile(backend={args.compile_backend!r})")
    print(f"budget: {deadline - time.time():.0f} s left; batch {args.batch}, {args.warmup} warm-up + {args.steps} "
          f"timed steps per burst, e2e {args.e2e_steps} timed steps", flush=True)
    rows = plan(sizes, compile_sizes, tuple(args.compile_amps))
    if args.match:
        rows = [r for r in rows if any(m in r.key for m in args.match)]
    stopped = False
    for i, row in enumerate(rows, 1):
        if row.key in done:
            continue
        if stopped:
            rec = dataclasses.asdict(row)
            rec.update(size=f"{row.size[0]}x{row.size[1]}", batch=args.batch, compile="on" if row.compile else "off",
                       status="skipped", note="time budget reached")
            done[row.key] = rec
            continue
        _append(results_path, {"event": "start", "key": row.key})
        try:
            rec = check.run(row)
        except BudgetExceeded:
            rec = {"key": row.key, "kind": row.kind, "net": row.net, "size": f"{row.size[0]}x{row.size[1]}",
                   "batch": args.batch, "amp": row.amp, "compile": "on" if row.compile else "off",
                   "status": "stopped", "note": "stopped at the time budget"}
            stopped = True
        _append(results_path, {"event": "row", **rec})
        done[row.key] = rec
        el = time.time() - t0
        if rec.get("status") == "ok":
            print(f"[{i:2d}/{len(rows)} {el:5.0f} s] {row.key}: {rec['steps_s']:.2f} steps/s, "
                  f"{rec['samples_s']:.1f} samples/s, warm-up {rec['warmup_s']:.1f} s, peak "
                  f"{_fmt(rec.get('peak_gib'), '.2f')} GiB, syncs {_fmt(rec.get('syncs'), 'd')}"
                  + (f" {rec['sync_sites'][:3]}" if rec.get("sync_sites") else ""), flush=True)
        else:
            print(f"[{i:2d}/{len(rows)} {el:5.0f} s] {row.key}: {rec['status']}: {rec.get('note', '')}", flush=True)
    signal.alarm(0)
    ordered = [done[r.key] for r in rows if r.key in done]
    print()
    print(table(ordered))
    print(goals(ordered, size0))
    print(f"results: {results_path}; {time.time() - t0:.0f} s", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # loader and compile worker processes need no orderly shutdown


if __name__ == "__main__":
    sys.exit(main())
