"""Atomic file writes: a temp file in the target folder, fsync, then rename over the target.

A crash at any point leaves either the old file or the new one, never half of one. This package
imports neither ``depth`` nor ``data``, so both may use it (``data/`` never imports ``depth/``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Callable

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "atomic_write_dir", "fsync_dir"]


def fsync_dir(path: str | Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO], None], binary: bool = True, fsync: bool = True) -> None:
    """Call ``write(f)`` on a temp file next to ``path``, then fsync and rename it to ``path``
    (mode 0644). On any error the temp file is removed and ``path`` is untouched.

    ``fsync=False`` skips both fsyncs: the rename is still atomic (readers never see half a file)
    but a power cut may lose the write -- right for caches that are rebuilt when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        if fsync:
            fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    atomic_write(path, lambda f: f.write(text), binary=False, fsync=fsync)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_dir(path: str | Path, write: Callable[[Path], None]) -> None:
    """Create the folder ``path`` whole or not at all: ``write(tmp)`` fills a temp folder next to
    ``path`` (its files fsynced by ``write``, e.g. through :func:`atomic_write`), which is then
    renamed to ``path``. ``path`` must not exist or be an empty folder (``FileExistsError``
    otherwise, before ``write`` runs). On any error the temp folder is removed and ``path`` is
    untouched."""
    path = Path(path)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)
        fsync_dir(tmp)
        os.replace(tmp, path)  # POSIX: atomic, also over an empty folder
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
