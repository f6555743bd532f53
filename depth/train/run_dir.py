"""Run folders: which checkpoints a run writing into a folder would mix with its own, the check
that stops it (``output.overwrite``, ``--resume``), and the clean-up ``output.overwrite`` asks for.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from common.errors import RunExistsError
from common.atomic import atomic_write_text
from depth.config import Config, ConfigError, from_dict, to_dict
from depth.io.checkpoint import LoadedCheckpoint, find_checkpoint, library_versions, step_files, step_of

__all__ = ["RunExistsError", "run_dir_of", "conflicting_checkpoints", "check_run_dir", "clear_checkpoints",
           "open_run_dir", "config_differences", "auto_resume"]

# keys a restarted run may change without changing what it computes
RESTART_KEYS = ("train.resume", "train.progress", "train.num_workers", "output.dir", "output.overwrite")


def run_dir_of(path: str | Path) -> Path:
    """The run folder of a ``--resume`` argument: ``RUN``, ``RUN/checkpoints`` or a checkpoint
    file in either (``RUN/checkpoints/step_*.pt`` -> ``RUN``)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    return folder.parent if folder.name == "checkpoints" else folder


def conflicting_checkpoints(run_dir: str | Path, start_step: int | None = None) -> list[Path]:
    """Checkpoint files in ``run_dir`` that a run writing there would leave mixed with its own:
    for a new run (``start_step`` None) every ``step_*.pt`` and ``last.pt``; for a run resumed at
    ``start_step``, the step files of later steps (of another continuation)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    steps = step_files(folder)
    if start_step is not None:
        return [p for p in steps if step_of(p) > start_step]
    last = folder / "last.pt"
    return steps + ([last] if last.is_file() else [])


def check_run_dir(run_dir: str | Path, start_step: int | None = None, overwrite: bool = False) -> None:
    """Raise :class:`RunExistsError` when ``run_dir`` holds checkpoints the run would mix with its
    own (:func:`conflicting_checkpoints`), unless ``overwrite``."""
    found = conflicting_checkpoints(run_dir, start_step)
    if not found or overwrite:
        return
    run_dir = Path(run_dir)
    what = (f"holds the checkpoints of an earlier run ({', '.join(p.name for p in found[:3])}"
            f"{', ...' if len(found) > 3 else ''})" if start_step is None else
            f"holds checkpoints later than step {start_step} ({', '.join(p.name for p in found[:3])})")
    raise RunExistsError(
        f"run folder {run_dir} {what}: continue it with `python train.py --resume {run_dir}`, train into "
        f"a new folder with output.dir={_free_name(run_dir)}, or replace it with output.overwrite=true")


def _free_name(run_dir: Path) -> Path:
    for k in range(2, 1000):
        candidate = run_dir.with_name(f"{run_dir.name}-{k}")
        if not candidate.exists():
            return candidate
    return run_dir.with_name(f"{run_dir.name}-new")


def clear_checkpoints(run_dir: str | Path, start_step: int | None = None) -> list[Path]:
    """Remove what :func:`conflicting_checkpoints` lists (``output.overwrite=true``); for a new
    run also the earlier run's ``metrics.json`` and TensorBoard logs. Returns the removed paths."""
    run_dir = Path(run_dir)
    removed = conflicting_checkpoints(run_dir, start_step)
    for p in removed:
        p.unlink(missing_ok=True)
    if start_step is None:
        for extra in (run_dir / "metrics.json", run_dir / "tensorboard"):
            if extra.is_dir():
                shutil.rmtree(extra)
                removed.append(extra)
            elif extra.is_file():
                extra.unlink()
                removed.append(extra)
    return removed


def open_run_dir(run_dir: str | Path, cfg: Config, start_step: int | None, checked: bool, is_main: bool) -> None:
    """Claim ``run_dir`` for a run starting at ``start_step`` (None: a new run): check it
    (:func:`check_run_dir`, unless the caller ``checked`` already), clear what ``output.overwrite``
    replaces, and write the run's ``config.yaml`` and ``versions.json`` (rank 0, atomically)."""
    if not checked:
        check_run_dir(run_dir, start_step, cfg.output.overwrite)
    if not is_main:
        return
    if cfg.output.overwrite:
        clear_checkpoints(run_dir, start_step)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))
    atomic_write_text(run_dir / "versions.json", json.dumps(library_versions(), indent=2))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_differences(cfg: Config, saved: dict, ignore: tuple[str, ...] = RESTART_KEYS) -> list[str]:
    """``key: saved -> now`` for every config key (dotted) where ``cfg`` differs from a checkpoint's
    saved config (read as :func:`depth.config.from_dict` reads it), except ``ignore``."""
    now, then = _flat(to_dict(cfg)), _flat(to_dict(from_dict(saved)))
    return [f"{k}: {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(then))
            if k not in ignore and now.get(k) != then.get(k)]


def auto_resume(cfg: Config) -> LoadedCheckpoint | None:
    """``train.resume=auto``: the newest complete checkpoint of ``output.dir`` when it holds any
    (:func:`depth.io.checkpoint.find_checkpoint`), None for an empty or missing folder (a new run).
    Raises :class:`depth.config.ConfigError` naming the differing keys when the checkpoint was
    written with another config (only :data:`RESTART_KEYS` may differ)."""
    if not conflicting_checkpoints(cfg.output.dir):
        return None
    found = find_checkpoint(cfg.output.dir)
    diff = config_differences(cfg, found.state["config"])
    if diff:
        shown = "; ".join(diff[:6]) + (f"; ... ({len(diff)} keys)" if len(diff) > 6 else "")
        raise ConfigError(f"train.resume=auto: {found.path} was written with another config ({shown}): "
                          f"train into another output.dir, or continue it with `python train.py --resume "
                          f"{cfg.output.dir}` and the overrides you mean")
    return found
