"""Checkpoints: atomic writes, retention, and loading the networks back for inference.

A checkpoint is a plain dict readable with ``torch.load``: ``depth_net`` and ``pose_net`` are
plain state dicts; ``config`` is the resolved configuration as a dict; ``seed``, ``versions``
(library versions), ``step``, ``epoch`` and, for resuming, ``optimizer``, ``scheduler``,
``scaler``, ``rng`` and ``batch_in_epoch``.
"""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from common.atomic import atomic_write, atomic_write_text, fsync_dir

__all__ = ["atomic_torch_save", "atomic_write_text", "save_checkpoint", "library_versions",
           "load_checkpoint", "load_depth_net", "load_pose_net", "build_depth_net", "build_pose_net"]


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` through :func:`common.atomic.atomic_write` (temp file, fsync, rename)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def library_versions() -> dict:
    import kornia
    import numpy

    out = {"python": platform.python_version(), "torch": torch.__version__, "kornia": kornia.__version__,
           "numpy": numpy.__version__}
    for name in ("torchvision", "albumentations", "numba", "cv2"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # pragma: no cover - optional
            pass
    out["cuda"] = torch.version.cuda
    return out


def _clean_stale_temps(checkpoint_dir: Path) -> None:
    """Remove temp files left by a writer that was killed mid-write (never a finished checkpoint)."""
    for p in checkpoint_dir.glob(".*.tmp"):
        try:
            p.unlink()
        except OSError:
            pass


def save_checkpoint(state: dict, checkpoint_dir: str | Path, step: int, keep: int = 2) -> Path:
    """Write ``step_XXXXXXXX.pt`` and ``last.pt`` atomically; keep the newest ``keep`` step files.

    Order: the step file (temp + fsync + rename), then ``last.pt`` (a hard link renamed over the
    old one), then retention. A kill at any point leaves ``last.pt`` a complete checkpoint (the new
    or the previous one), and :func:`load_checkpoint` of the run folder picks the newest complete one.
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale_temps(checkpoint_dir)
    path = checkpoint_dir / f"step_{step:08d}.pt"
    atomic_torch_save(state, path)
    # last.pt: a hard link to the same bytes (atomic rename of a fresh link), else a second copy
    tmp = checkpoint_dir / f".last.pt.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.link(path, tmp)
        os.replace(tmp, checkpoint_dir / "last.pt")
        fsync_dir(checkpoint_dir)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_torch_save(state, checkpoint_dir / "last.pt")
    for old in _step_files(checkpoint_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def _step_files(checkpoint_dir: Path) -> list[Path]:
    """``step_XXXXXXXX.pt`` files, oldest first (numeric order)."""
    return sorted(p for p in checkpoint_dir.glob("step_*.pt") if re.fullmatch(r"step_\d{8}\.pt", p.name))


def _read(path: Path, map_location) -> dict:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise RuntimeError(f"checkpoint {path} could not be read ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or "depth_net" not in ckpt or "config" not in ckpt:
        raise RuntimeError(f"checkpoint {path} lacks 'depth_net'/'config': not written by this project?")
    return ckpt


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint file, or the newest complete checkpoint of a run folder (``RUN`` or
    ``RUN/checkpoints``): ``last.pt``, unless a newer ``step_*.pt`` exists (a run killed between
    writing the step file and relinking ``last.pt``) or ``last.pt`` is unreadable, in which case the
    newest readable step file is used."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return _read(path, map_location)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = folder / "last.pt"
    steps = _step_files(folder)
    if not last.is_file() and not steps:
        raise FileNotFoundError(f"checkpoint not found: {last}")
    errors = []
    ckpt, last_step = None, -1
    if last.is_file():
        try:
            ckpt = _read(last, map_location)
            last_step = int(ckpt.get("step", -1))
        except RuntimeError as e:
            errors.append(str(e))
    for p in reversed(steps):
        if ckpt is not None and int(p.name[5:13]) <= last_step:
            return ckpt
        try:
            return _read(p, map_location)
        except RuntimeError as e:
            errors.append(str(e))
    if ckpt is not None:
        return ckpt
    raise RuntimeError(f"no readable checkpoint in {folder}:\n  " + "\n  ".join(errors))


def build_depth_net(cfg):
    from depth.networks import DepthNet

    return DepthNet(cfg.model.num_layers, pretrained=False, scales=tuple(cfg.model.scales), dca=cfg.model.dca)


def build_pose_net(cfg):
    from depth.networks import PoseNet

    return PoseNet(cfg.model.num_layers, pretrained=False)


def load_depth_net(path: str | Path, map_location="cpu"):
    """``(model, cfg_dict)``: the depth network in eval mode; ``model(images)`` takes
    ``(B, 3, H, W)`` RGB in ``[0, 1]`` at ``cfg["data"]["height"] x cfg["data"]["width"]`` and
    returns the ``(B, 1, H, W)`` sigmoid (see :func:`depth.geometry.disp_to_depth`)."""
    from depth.config import from_dict

    ckpt = load_checkpoint(path, map_location)
    cfg = from_dict(ckpt["config"])
    model = build_depth_net(cfg)
    model.load_state_dict(ckpt["depth_net"])
    model.eval()
    return model, ckpt["config"]


def load_pose_net(path: str | Path, map_location="cpu"):
    """``(pose_model, cfg_dict)``; ``pose_model(a, b)`` -> (axisangle, translation) of ``T_b_a``."""
    from depth.config import from_dict

    ckpt = load_checkpoint(path, map_location)
    cfg = from_dict(ckpt["config"])
    model = build_pose_net(cfg)
    model.load_state_dict(ckpt["pose_net"])
    model.eval()
    return model, ckpt["config"]
