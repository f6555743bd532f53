"""One shape check for tensors, in the manner of kornia's ``KORNIA_CHECK_SHAPE``.

A pattern is a string of space-separated dimensions: a number must match exactly, a name matches
any size (unless it is bound by a keyword argument), and a leading ``*`` matches any number of
leading dimensions. ``|`` separates alternatives. The error message always reads
``"<name> must have shape (B, 3, H, W), got (1, 1, 64, 64)"``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["check_shape"]


def _matches(shape: tuple[int, ...], dims: list[str], sizes: dict[str, int]) -> bool:
    if dims and dims[0] == "*":
        dims = dims[1:]
        if len(shape) < len(dims):
            return False
        shape = shape[len(shape) - len(dims):]
    elif len(shape) != len(dims):
        return False
    for size, dim in zip(shape, dims):
        want = int(dim) if dim.isdigit() else sizes.get(dim)
        if want is not None and size != want:
            return False
    return True


def check_shape(x: Any, pattern: str, name: str = "tensor", **sizes: int) -> None:
    """Raise ``ValueError`` unless ``x`` has a ``.shape`` matching ``pattern``.

    ``check_shape(img, "B 3 H W", "image")``; ``check_shape(K, "* 3 3", "K")``;
    ``check_shape(boxes, "B 4", "boxes", B=batch_size)`` (a name bound to a size);
    ``check_shape(x, "B C H W | B F C H W", "images")`` (alternatives).
    """
    alternatives = [p.split() for p in pattern.split("|")]
    shape = getattr(x, "shape", None)
    if shape is not None and any(_matches(tuple(shape), dims, sizes) for dims in alternatives):
        return
    want = " or ".join("(" + ", ".join(str(sizes.get(d, d)) for d in dims) + ")" for dims in alternatives)
    got = tuple(shape) if shape is not None else type(x).__name__
    raise ValueError(f"{name} must have shape {want}, got {got}")
