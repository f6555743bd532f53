"""Coloured point clouds as PLY files (Stanford polygon format), readable by standard viewers
(MeshLab, CloudCompare, Open3D, Blender).

One ``vertex`` element with ``float x, y, z`` and ``uchar red, green, blue`` per point; binary
little-endian (default, 15 bytes a point) or ASCII. Coordinates are written as given (this project
writes camera-frame points: x right, y down, z forward, :mod:`depth.geometry`). Files are written
atomically (temporary file, then rename). :func:`read_ply` reads back this layout and any PLY whose
first element is ``vertex`` with numeric ``x, y, z`` (and optionally ``red, green, blue``).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from common.errors import DataError
from common.atomic import atomic_write

__all__ = ["write_ply", "read_ply"]

_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None, *, binary: bool = True,
              comments: tuple[str, ...] | list[str] = ()) -> None:
    """Write ``points`` ``(N, 3)`` (float32 in the file) and ``colors`` ``(N, 3)`` uint8 RGB (or
    ``None``: no colour properties) to ``path``; ``comments`` become ``comment`` header lines."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    n = len(pts)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        col = np.asarray(colors)
        if col.shape != (n, 3):
            raise ValueError(f"colors must be (N, 3) for {n} points, got {col.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(n, dtype=fields)
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if colors is not None:
        c = np.clip(col, 0, 255).astype(np.uint8)
        rec["red"], rec["green"], rec["blue"] = c[:, 0], c[:, 1], c[:, 2]
    head = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    for c in comments:
        if "\n" in c or "\r" in c:
            raise ValueError(f"a PLY comment must be one line, got {c!r}")
        head.append(f"comment {c}")
    head.append(f"element vertex {n}")
    head += [f"property float {k}" for k in ("x", "y", "z")]
    if colors is not None:
        head += [f"property uchar {k}" for k in ("red", "green", "blue")]
    header = ("\n".join(head) + "\nend_header\n").encode("ascii")

    def write(f):
        f.write(header)
        if binary:
            f.write(rec.tobytes())
        else:
            buf = io.StringIO()
            fmt = "%.9g %.9g %.9g" + (" %d %d %d" if colors is not None else "")
            cols = [rec[k].astype(np.float64) for k in ("x", "y", "z")]
            if colors is not None:
                cols += [rec[k] for k in ("red", "green", "blue")]
            np.savetxt(buf, np.column_stack(cols) if n else np.zeros((0, len(cols))), fmt=fmt)
            f.write(buf.getvalue().encode("ascii"))

    atomic_write(path, write)


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """``(points (N, 3) float32, colors (N, 3) uint8 or None, comments)`` of a PLY file's first
    element (``vertex``). A missing file or a malformed header/body is an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"PLY file not found: {path}")
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{path} is not a PLY file (no 'ply' magic or no end_header)")
    nl = data.find(b"\n", end)
    body = data[nl + 1:] if nl >= 0 else b""
    lines = data[:end].decode("ascii", "replace").splitlines()
    fmt, comments, elements = None, [], []
    for ln in lines[1:]:
        parts = ln.strip().split()
        if not parts:
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "comment":
            comments.append(ln.strip()[len("comment "):])
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise DataError(f"{path}: property before any element")
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], None))
            else:
                if parts[1] not in _TYPES:
                    raise DataError(f"{path}: unknown PLY property type {parts[1]!r}")
                elements[-1][2].append((parts[2], _TYPES[parts[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{path}: unknown PLY format {fmt!r}")
    if not elements or elements[0][0] != "vertex":
        raise DataError(f"{path}: the first PLY element must be 'vertex'")
    _, n, props = elements[0]
    names = [p for p, _ in props]
    if any(t is None for _, t in props) or not {"x", "y", "z"} <= set(names):
        raise DataError(f"{path}: vertex needs scalar x, y, z properties, got {names}")
    if fmt == "ascii":
        rows = body.decode("ascii", "replace").split("\n")
        try:
            arr = np.array([r.split()[:len(props)] for r in rows[:n]], dtype=np.float64)
            arr = arr.reshape(n, len(props))
        except ValueError:
            raise DataError(f"{path}: malformed ASCII vertex rows (expected {n} rows of {len(props)} "
                             f"numbers)") from None
        get = {p: arr[:, k] for k, p in enumerate(names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(p, order + t) for p, t in props])
        if len(body) < n * dt.itemsize:
            raise DataError(f"{path} is truncated: {len(body)} bytes for {n} vertices of {dt.itemsize} "
                             f"bytes")
        rec = np.frombuffer(body, dtype=dt, count=n)
        get = {p: rec[p] for p in names}
    pts = np.stack([get["x"], get["y"], get["z"]], 1).astype(np.float32)
    cols = None
    if {"red", "green", "blue"} <= set(names):
        cols = np.stack([get["red"], get["green"], get["blue"]], 1).astype(np.uint8)
    return pts, cols, comments
