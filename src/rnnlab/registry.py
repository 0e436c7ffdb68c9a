"""A small name -> object registry whose lookup errors name the bad value and the allowed ones (a leaf)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rnnlab.errors import ConfigError, not_allowed

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to builders. ``key`` is the config key users set, used in error messages."""

    def __init__(self, key: str):
        self.key = key
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.key}: {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        if name not in self._items:
            raise ConfigError(not_allowed(self.key, name, self._items))
        return self._items[name]

    def names(self) -> list[str]:
        """The registered names, sorted (for messages)."""
        return sorted(self._items)

    def __iter__(self) -> Iterator[str]:
        """The registered names in registration order."""
        return iter(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
