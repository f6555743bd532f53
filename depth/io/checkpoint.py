"""Checkpoint files: atomic writes, retention, and reading back the newest complete one.

File I/O only; turning a checkpoint into networks is :func:`depth.model.load_model`.

A checkpoint is a plain dict readable with ``torch.load``: ``depth_net`` and ``pose_net`` are
plain state dicts; ``config`` is the resolved configuration as a dict; ``seed``, ``versions``
(library versions), ``step``, ``epoch`` and, for resuming, ``optimizer``, ``scheduler``,
``scaler``, ``rng`` and ``batch_in_epoch``.
"""
from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import kornia
import numpy
import torch

from common.atomic import atomic_write, fsync_dir

__all__ = ["atomic_torch_save", "save_checkpoint", "library_versions", "load_checkpoint", "find_checkpoint",
           "LoadedCheckpoint", "CheckpointError", "step_files", "step_of"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or was not written by this project (the message names it)."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint dict, the file it was read from, and the files of the run folder that were
    skipped because they could not be read (``"path (reason)"``)."""

    state: dict
    path: Path
    skipped: list[str] = field(default_factory=list)


def atomic_torch_save(obj, path: str | Path) -> None:
    """``torch.save`` through :func:`common.atomic.atomic_write` (temp file, fsync, rename)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def library_versions() -> dict:
    """Versions of Python and the libraries a run depends on (stored with every checkpoint)."""
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
    for old in step_files(checkpoint_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def step_files(checkpoint_dir: str | Path) -> list[Path]:
    """``step_XXXXXXXX.pt`` files, oldest first (numeric order)."""
    return sorted(p for p in checkpoint_dir.glob("step_*.pt") if re.fullmatch(r"step_\d{8}\.pt", p.name))


def _read(path: Path, map_location) -> dict:
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0].split(". ")[0].rstrip(".")  # torch's run to a paragraph
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or "depth_net" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"checkpoint {path} lacks 'depth_net'/'config': not written by this project?")
    return ckpt


def step_of(path: Path) -> int:
    """The step of a ``step_XXXXXXXX.pt`` file."""
    return int(Path(path).name[5:13])


def find_checkpoint(path: str | Path, map_location="cpu") -> LoadedCheckpoint:
    """:func:`load_checkpoint` that also says which file it read and which it skipped."""
    path = Path(path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        return LoadedCheckpoint(_read(path, map_location), path)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = folder / "last.pt"
    steps = step_files(folder)
    if not last.is_file() and not steps:
        raise FileNotFoundError(f"checkpoint not found: {last}")
    errors: list[str] = []
    found: LoadedCheckpoint | None = None
    last_step = -1
    if last.is_file():
        try:
            found = LoadedCheckpoint(_read(last, map_location), last)
            last_step = int(found.state.get("step", -1))
        except CheckpointError as e:
            errors.append(str(e))
    for p in reversed(steps):
        if found is not None and step_of(p) <= last_step:
            break
        try:
            found = LoadedCheckpoint(_read(p, map_location), p)
            break
        except CheckpointError as e:
            errors.append(str(e))
    if found is None:
        raise CheckpointError(f"no readable checkpoint in {folder}:\n  " + "\n  ".join(errors))
    found.skipped = errors
    return found


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint file, or the newest complete checkpoint of a run folder (``RUN`` or
    ``RUN/checkpoints``): ``last.pt``, unless a newer ``step_*.pt`` exists (a run killed between
    writing the step file and relinking ``last.pt``) or ``last.pt`` is unreadable, in which case the
    newest readable step file is used. Raises ``FileNotFoundError`` or :class:`CheckpointError`."""
    return find_checkpoint(path, map_location).state
