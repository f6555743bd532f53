"""Opening NumPy array files (``.npy`` / ``.npz``) with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["open_array_file"]


def open_array_file(path: str | Path, what: str) -> np.ndarray | np.lib.npyio.NpzFile:
    """``np.load(path, allow_pickle=False)``: an array, or an ``NpzFile`` to use in a ``with``.

    ``what`` names the file in errors: ``FileNotFoundError("<what> not found: <path>")`` and
    ``ValueError("<what> <path> could not be read (<error>)")``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{what} {path} could not be read ({type(e).__name__}: {e})") from None
