"""Opening NumPy array files (``.npy`` / ``.npz``) with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import DataError

__all__ = ["open_array_file"]


def open_array_file(path: str | Path, what: str) -> np.ndarray | np.lib.npyio.NpzFile:
    """``np.load(path, allow_pickle=False)``: an array, or an ``NpzFile`` to use in a ``with``.

    ``what`` names the file in errors (:class:`common.errors.DataError`): ``"<what> not found:
    <path>"`` and ``"<what> <path> could not be read (<error>)"``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:  # numpy's errors for a file that is not an array file
        raise DataError(f"{what} {path} could not be read ({type(e).__name__}: {e})") from None
