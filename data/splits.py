"""Split lists: ``<date>/<drive> <frame> <l|r>`` lines (KITTI raw) and where to find them.

Built-in splits (copied from Monodepth2, see ``data/splits/README.md``): ``eigen`` (test),
``eigen_benchmark`` (test), ``eigen_zhou`` (train/val), ``odom``. A split may also be given as a
folder holding ``train_files.txt`` / ``val_files.txt`` and optionally ``test_files.txt``.

The KITTI raw archives the built-in splits need (``data/splits/kitti_archives_to_download.txt``)
are generated from the split lists: ``python -m data.splits > data/splits/kitti_archives_to_download.txt``.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common.errors import DataError

__all__ = ["SplitEntry", "BUILTIN_SPLITS_DIR", "read_split_file", "split_file", "builtin_splits",
           "missing_folders", "kitti_archive_urls", "builtin_raw_entries", "ARCHIVES_FILE"]

BUILTIN_SPLITS_DIR = Path(__file__).resolve().parent / "splits"
ARCHIVES_FILE = BUILTIN_SPLITS_DIR / "kitti_archives_to_download.txt"
KITTI_RAW_URL = "https://s3.eu-central-1.amazonaws.com/avg-kitti/raw_data"
_DRIVE = re.compile(r"(\d{4}_\d{2}_\d{2})/(\d{4}_\d{2}_\d{2}_drive_\d{4})_sync")


@dataclass(frozen=True)
class SplitEntry:
    """One line of a split file: ``folder`` is ``<date>/<drive>`` (or an odometry sequence)."""

    folder: str
    frame: int
    side: str  # "l" (image_02) or "r" (image_03)

    @property
    def date(self) -> str:
        return self.folder.split("/")[0]


def builtin_splits() -> list[str]:
    return sorted(p.name for p in BUILTIN_SPLITS_DIR.iterdir() if p.is_dir())


def split_lines(path: str | Path, what: str = "split file") -> Iterator[tuple[int, str, list[str]]]:
    """``(line number, raw line, whitespace-separated fields)`` of every line of a split list that is
    neither blank nor a ``#`` comment; a missing file raises FileNotFoundError naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield lineno, raw, line.split()


def read_split_file(path: str | Path) -> list[SplitEntry]:
    """Parse a split file; every malformed line is reported with its file and line number."""
    path = Path(path)
    entries = []
    for lineno, raw, parts in split_lines(path):
        if len(parts) not in (2, 3):
            raise DataError(f"{path}:{lineno}: expected '<folder> <frame> [l|r]', got {raw!r}")
        side = parts[2] if len(parts) == 3 else "l"
        if side not in ("l", "r"):
            raise DataError(f"{path}:{lineno}: side must be 'l' or 'r', got {side!r}")
        try:
            frame = int(parts[1])
        except ValueError:
            raise DataError(f"{path}:{lineno}: frame index must be an integer, got {parts[1]!r}") from None
        entries.append(SplitEntry(parts[0], frame, side))
    return entries


def split_file(split: str | Path, which: str) -> Path:
    """Path of ``<which>_files.txt`` (``which`` in train/val/test) for a split name or folder.

    A split may also be a path to a ``.txt`` file itself (returned as is).
    """
    candidate = Path(split)
    if candidate.suffix == ".txt":
        if not candidate.is_file():
            raise DataError(f"split file not found: {candidate}")
        return candidate
    folder = candidate if candidate.is_dir() else BUILTIN_SPLITS_DIR / str(split)
    if not folder.is_dir():
        raise DataError(
            f"unknown split {str(split)!r}: not a folder and not one of the built-in splits "
            f"{builtin_splits()}")
    path = folder / f"{which}_files.txt"
    if not path.is_file():
        have = sorted(p.name for p in folder.glob("*_files*.txt"))
        raise DataError(f"split {str(split)!r} has no {which}_files.txt in {folder} (found: {have})")
    return path


def missing_folders(entries: Iterable[SplitEntry], root: str | Path) -> list[str]:
    """The split's ``<date>/<drive>`` folders that ``root`` does not hold, in split order."""
    root = Path(root)
    folders = dict.fromkeys(e.folder for e in entries)
    return [f for f in folders if not (root / f).is_dir()]


def builtin_raw_entries() -> list[SplitEntry]:
    """Every line of the built-in KITTI raw splits (all but ``odom``, which is KITTI odometry)."""
    return [e for name in builtin_splits() if name != "odom"
            for f in sorted((BUILTIN_SPLITS_DIR / name).glob("*_files*.txt")) for e in read_split_file(f)]


def kitti_archive_urls(entries: Iterable[SplitEntry]) -> list[str]:
    """The official download URLs of the KITTI raw archives that hold ``entries``: each date's
    calibration zip (``<date>_calib.zip``), then each drive's ``<drive>_sync.zip``, sorted
    (Monodepth2's ``splits/kitti_archives_to_download.txt`` format; ``wget -i`` reads it)."""
    dates, drives = set(), set()
    for e in entries:
        m = _DRIVE.fullmatch(e.folder)
        if m is None:
            raise DataError(f"not a KITTI raw folder '<date>/<date>_drive_NNNN_sync': {e.folder!r}")
        dates.add(m.group(1))
        drives.add(m.group(2))
    calib = [f"{KITTI_RAW_URL}/{d}_calib.zip" for d in sorted(dates)]
    return calib + [f"{KITTI_RAW_URL}/{d}/{d}_sync.zip" for d in sorted(drives)]


if __name__ == "__main__":  # python -m data.splits > data/splits/kitti_archives_to_download.txt
    sys.stdout.write("".join(u + "\n" for u in kitti_archive_urls(builtin_raw_entries())))
