"""Checkpoint files: atomic writes, retention, and reading back the newest complete one.

File I/O only; turning a checkpoint into networks is :func:`depth.model.load_model`.

A checkpoint is a plain dict readable with ``torch.load(path, weights_only=True)``: ``depth_net``
and ``pose_net`` are plain state dicts; ``config`` is the resolved configuration as a dict;
``seed``, ``versions`` (library versions), ``step``, ``epoch`` and, for resuming, ``optimizer``,
``scheduler``, ``scaler``, ``rng`` (the Python, NumPy and torch generator states as tensors, lists
and numbers) and ``batch_in_epoch``. Nothing in it is a Python object other than tensors, dicts,
lists, tuples, numbers, strings and ``None``; :func:`save_checkpoint` refuses anything else.

Every file is read with ``weights_only=True`` (:func:`safe_torch_load`), so loading never runs
code: a file whose pickle names any other Python object is refused (:class:`CheckpointRefused`,
naming the file and the object), whether it is a checkpoint, a run folder's file or a Monodepth2
``.pth``. Checkpoints written before the RNG states were stored as plain values hold a NumPy
array (the NumPy generator key) and ``torch.__version__``'s string class; exactly those globals
(:data:`LEGACY_GLOBALS`) are allowed for project checkpoints, and the values are turned into
plain ones as they are read.
"""
from __future__ import annotations

import os
import pickle
import platform
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import kornia
import numpy
import torch
from torch.torch_version import TorchVersion

from common.errors import CheckpointError, CheckpointRefused
from common.atomic import atomic_write, fsync_dir

__all__ = ["atomic_torch_save", "save_checkpoint", "library_versions", "load_checkpoint", "find_checkpoint",
           "LoadedCheckpoint", "CheckpointError", "CheckpointRefused", "safe_torch_load", "plain_values",
           "LEGACY_GLOBALS", "step_files", "step_of"]


# The globals that checkpoints of this project written before the RNG states were stored as plain
# values need (np.random.get_state()'s uint32 key array, torch.__version__ in ``versions``):
# ``"module.name": object``. NumPy 1 names the array rebuilder numpy.core.multiarray._reconstruct.
LEGACY_GLOBALS: dict[str, object] = {
    "numpy._core.multiarray._reconstruct": numpy._core.multiarray._reconstruct,
    "numpy.core.multiarray._reconstruct": numpy._core.multiarray._reconstruct,
    "numpy.ndarray": numpy.ndarray,
    "numpy.dtype": numpy.dtype,
    "numpy.dtypes.UInt32DType": type(numpy.dtype(numpy.uint32)),
    "torch.torch_version.TorchVersion": TorchVersion,
}

_WEIGHTS_ONLY = "Weights only load failed"


def _unsafe_globals(path: Path, message: str) -> list[str]:
    """The globals a refused file names: all of them for a zip checkpoint, else the one in torch's message."""
    try:
        found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint (a legacy torch.save or a bare pickle)
        found = []
    if not found:
        found = re.findall(r"GLOBAL ([\w.]+)", message)
        found += re.findall(r"but got <class '([\w.]+)'>", message)
    return list(dict.fromkeys(found))


def _reason(message: str) -> str:
    """The specific line of torch's weights-only error (``Unsupported operand 103``), without the advice."""
    body = message.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
    lines = [ln.strip() for ln in body.splitlines() if ln.strip() and _WEIGHTS_ONLY not in ln]
    return (lines[-1] if lines else "not a torch checkpoint") + " (not a torch checkpoint?)"


def _refused(path: Path, needs: list[str]) -> CheckpointRefused:
    what = ", ".join(needs[:3]) + (f" and {len(needs) - 3} more" if len(needs) > 3 else "") if needs else \
        "Python objects other than tensors and plain values"
    return CheckpointRefused(f"{path} refused: loading it would build {what}, which can run code "
                             f"(only tensors, dicts, lists, numbers and strings are loaded; weights_only=True)")


def safe_torch_load(path: str | Path, map_location="cpu", legacy: bool = False):
    """``torch.load(path, weights_only=True)``; a file that needs other globals raises
    :class:`CheckpointRefused` naming the file and the globals. ``legacy``: also allow exactly
    :data:`LEGACY_GLOBALS` (old project checkpoints) and return the content as :func:`plain_values`.
    Other read errors (truncated, not a torch file) propagate as torch raises them."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if _WEIGHTS_ONLY not in str(e):
            raise
        needs = _unsafe_globals(path, str(e))
        if not needs:  # not a pickle of objects at all (garbage, a bare pickle): unreadable, say why
            raise pickle.UnpicklingError(_reason(str(e))) from None
    if not (legacy and needs and set(needs) <= set(LEGACY_GLOBALS)):
        raise _refused(path, needs)
    allowed = [(obj, name) for name, obj in LEGACY_GLOBALS.items()]
    try:
        with torch.serialization.safe_globals(allowed):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if _WEIGHTS_ONLY not in str(e):
            raise
        raise _refused(path, [n for n in _unsafe_globals(path, str(e)) if n not in LEGACY_GLOBALS]) from None
    return plain_values(obj)


_LEAVES = (bool, int, float, str, bytes, type(None), torch.device, torch.dtype, torch.Size)


def plain_values(obj, where: str = "checkpoint", strict: bool = False):
    """``obj`` with what ``weights_only=True`` cannot read turned into plain values: NumPy arrays
    into lists, NumPy scalars and subclasses of ``str``/``int``/``float`` (``torch.__version__``)
    into the plain type, OmegaConf containers into dicts/lists. ``strict``: a NumPy array or any
    other object raises ``TypeError`` naming its key (``where``) instead (a defect of the writer)."""
    t = type(obj)
    if isinstance(obj, torch.Tensor) or t in _LEAVES:
        return obj
    if isinstance(obj, dict):  # OrderedDict (state dicts) stays an OrderedDict
        out = obj.__class__() if t in (dict, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = plain_values(v, f"{where}[{k!r}]", strict)
        return out
    if t in (list, tuple):
        return t(plain_values(v, f"{where}[{i}]", strict) for i, v in enumerate(obj))
    if isinstance(obj, numpy.generic):
        return obj.item()
    for base in (bool, int, float, str):
        if isinstance(obj, base):
            return base(obj)
    if not strict and isinstance(obj, numpy.ndarray):
        return obj.tolist()
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
        if isinstance(obj, DictConfig | ListConfig):
            return plain_values(OmegaConf.to_container(obj, resolve=True), where, strict)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if strict:
        raise TypeError(f"{where} is a {t.__module__}.{t.__qualname__}: checkpoints hold only tensors and "
                        f"plain values (weights_only=True loading)")
    raise CheckpointError(f"{where} holds a {t.__module__}.{t.__qualname__}, not a plain value")


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
    out = {"python": platform.python_version(), "torch": str(torch.__version__), "kornia": str(kornia.__version__),
           "numpy": str(numpy.__version__)}
    for name in ("torchvision", "albumentations", "numba", "cv2"):
        try:
            out[name] = str(__import__(name).__version__)
        except Exception:  # pragma: no cover - optional
            pass
    out["cuda"] = None if torch.version.cuda is None else str(torch.version.cuda)
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
    ``state`` must hold only tensors and plain values (``TypeError`` naming the key otherwise), so
    the file loads with ``torch.load(path, weights_only=True)``.
    """
    state = plain_values(state, strict=True)
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
        ckpt = safe_torch_load(path, map_location=map_location, legacy=True)
    except CheckpointRefused as e:
        raise CheckpointRefused(f"checkpoint {e}") from None
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
            raise CheckpointError(f"checkpoint not found: {path}")
        return LoadedCheckpoint(_read(path, map_location), path)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = folder / "last.pt"
    steps = step_files(folder)
    if not last.is_file() and not steps:
        raise CheckpointError(f"no checkpoint in {folder} (looked for last.pt and step_*.pt): nothing to "
                                f"resume there; a fresh run into it is `python train.py --config PRESET "
                                f"output.dir={path}`")
    errors: list[str] = []
    found: LoadedCheckpoint | None = None
    last_step = -1
    if last.is_file():
        try:
            found = LoadedCheckpoint(_read(last, map_location), last)
            last_step = int(found.state.get("step", -1))
        except CheckpointRefused:
            raise  # never fall back past a file that would run code: it says something is wrong
        except CheckpointError as e:
            errors.append(str(e))
    for p in reversed(steps):
        if found is not None and step_of(p) <= last_step:
            break
        try:
            found = LoadedCheckpoint(_read(p, map_location), p)
            break
        except CheckpointRefused:
            raise  # never fall back past a file that would run code: it says something is wrong
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
    newest readable step file is used. Raises :class:`CheckpointError` (missing, unreadable or refused)."""
    return find_checkpoint(path, map_location).state
