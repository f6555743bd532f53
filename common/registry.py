"""Registries: names -> implementations for one config key, where the registered names are the
key's valid values (a typo gets one line with the closest names, :class:`common.errors.ConfigError`).

    DECODERS = Registry("model.decoder", "decoder", discover="depth.networks")
    register_decoder = DECODERS.register

    @register_decoder("mine")
    class MyDecoder(nn.Module): ...

``discover`` names a package whose modules are all imported before the first lookup, so an
implementation in a new file of that package registers itself without any other edit.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from common.errors import ConfigError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """The implementations of ``key`` (``what`` names one of them in messages)."""

    def __init__(self, key: str, what: str, discover: str | None = None):
        self.key, self.what, self.package = key, what, discover
        self._items: dict[str, T] = {}
        self._discovered = discover is None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated object as ``name`` (a name registered twice for two
        different objects is a ``ValueError``: a defect of the registering code)."""
        def add(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.key}: two {self.what}s are registered as {name!r}")
            self._items[name] = obj
            return obj
        return add

    def _discover(self) -> None:
        if not self._discovered:
            self._discovered = True
            package = importlib.import_module(self.package)
            for mod in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
                importlib.import_module(mod.name)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order: the valid values of :attr:`key`."""
        self._discover()
        return tuple(self._items)

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def check(self, name: str) -> str:
        """``name`` when it is registered, else :class:`ConfigError` naming the key, the closest
        registered names and all of them."""
        if name in self:
            return name
        close = difflib.get_close_matches(str(name), self.names(), n=2, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ConfigError(f"{self.key}: unknown {self.what} {name!r}; {hint}one of {' | '.join(self.names())}")

    def get(self, name: str) -> T:
        """The implementation registered as ``name`` (:meth:`check` first)."""
        return self._items[self.check(name)]
