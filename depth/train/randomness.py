"""The run's randomness: the global generators' seeding, the per-step streams, and their state as
plain values (a checkpoint stores it and loads with ``weights_only=True``).

Exact resume rests on these: the randomness of step ``s`` on rank ``r`` is a function of
``(seed, s, r)`` (:func:`stream_seed`); the global generators' states travel in the checkpoint
(:func:`rng_states`) for whatever else draws from them.
"""
from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["RANDOM_STREAMS", "seed_everything", "stream_seed", "step_seed", "rng_states", "set_rng_states"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


RANDOM_STREAMS = ("global", "zoom", "automask")


def stream_seed(seed: int, step: int, rank: int, stream: str) -> int:
    """The seed of one random consumer at optimiser step ``step`` on rank ``rank``.

    Each consumer has its own stream, derived with ``numpy.random.SeedSequence`` from
    ``(seed, step, rank, stream)``: ``global`` seeds torch's global generator (dropout, e.g. the
    DCA's ``Dropout2d``), ``zoom`` the zoom-imitation draws, ``automask`` the auto-masking tie-break
    noise. Streams never share a seed, so the zoom draws do not correlate with dropout masks and do
    not change when a network with or without dropout is trained. Returns a 63-bit integer.
    """
    if stream not in RANDOM_STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; one of {RANDOM_STREAMS}")
    words = np.random.SeedSequence([seed % 2 ** 63, step, rank, RANDOM_STREAMS.index(stream)]).generate_state(2)
    return (int(words[0]) & 0x7FFF_FFFF) << 32 | int(words[1])


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """The seed of torch's global generator at optimiser step ``step`` on rank ``rank`` (dropout)."""
    return stream_seed(seed, step, rank, "global")


def rng_states() -> dict:
    """The global generators' states as plain values (a checkpoint loads with weights_only=True):
    Python's ``random`` as ``[version, [625 ints], gauss]``, NumPy's legacy generator as a dict with
    its MT19937 key as an int64 tensor, torch's (and CUDA's) as byte tensors."""
    version, internal, gauss = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": {"bit_generator": str(name), "key": torch.from_numpy(key.astype(np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(rng: dict) -> None:
    """Restore :func:`rng_states`; also reads the form older checkpoints stored (``random.getstate()``
    and ``np.random.get_state()`` tuples, the key an array or, read back, a list)."""
    if "python" not in rng:
        return
    version, internal, gauss = rng["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss))
    n = rng["numpy"]
    if isinstance(n, dict):
        n = (n["bit_generator"], n["key"], n["pos"], n["has_gauss"], n["cached_gaussian"])
    name, key, pos, has_gauss, cached = n
    key = key.cpu().numpy() if isinstance(key, torch.Tensor) else key
    np.random.set_state((name, np.asarray(key, dtype=np.int64).astype(np.uint32), int(pos), int(has_gauss),
                         float(cached)))
    torch.set_rng_state(rng["torch"].cpu())
    if rng.get("cuda") is not None and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        except (RuntimeError, IndexError):  # another GPU count: per-step seeding covers it
            pass
